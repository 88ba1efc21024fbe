"""The eight BFCL multi-turn API classes and their tools (from bfcl_eval's function docs)."""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
from typing import Any

from evolver.envs.base import Tool

CLASSES = ("GorillaFileSystem", "MathAPI", "MessageAPI", "TwitterAPI", "TicketAPI", "TradingBot", "TravelAPI",
           "VehicleControlAPI")

# BFCL's doc dialect -> JSON Schema.
_TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "any": None}


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, str):
            mapped = _TYPE_MAP.get(value, value)
            if mapped is not None:
                out["type"] = mapped
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: _to_json_schema(v) for k, v in value.items()}
        else:
            out[key] = _to_json_schema(value)
    return out


# Where BFCL's documented type refuses a call BFCL itself runs (its APIs do not check types):
# multi_turn_base_173's ground truth closes ticket 'ticket_001' with a string id.
SCHEMA_FIXES: dict[str, dict[str, list[str]]] = {"close_ticket": {"ticket_id": ["integer", "string"]}}


@functools.lru_cache(maxsize=None)
def _docs(class_name: str) -> tuple[Tool, ...]:
    from bfcl_eval.constants.eval_config import MULTI_TURN_FUNC_DOC_PATH
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING

    path = MULTI_TURN_FUNC_DOC_PATH / MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]
    tools = []
    for line in path.read_text().splitlines():
        if line.strip():
            doc = json.loads(line)
            schema = _to_json_schema(doc.get("parameters") or {"type": "dict", "properties": {}})
            schema.setdefault("type", "object")
            schema.setdefault("properties", {})
            for param, types in SCHEMA_FIXES.get(doc["name"], {}).items():
                schema["properties"][param]["type"] = types
            tools.append(Tool(doc["name"], doc.get("description", ""), schema, toolset=class_name))
    return tuple(tools)


def tools_for(classes: tuple[str, ...] | list[str]) -> list[Tool]:
    """Tools of the given classes; where two classes share a method name the later class wins,
    as in BFCL's own dispatch."""
    by_name: dict[str, Tool] = {}
    for c in classes:
        for tool in _docs(c):
            by_name[tool.name] = tool
    return list(by_name.values())


@functools.lru_cache(maxsize=None)
def _class(class_name: str) -> type:
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    if class_name not in CLASSES:
        raise KeyError(f"unknown BFCL class {class_name!r} (known: {', '.join(CLASSES)})")
    return getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[class_name]), class_name)


def instantiate(classes: list[str] | tuple[str, ...], initial_config: dict[str, Any], *,
                long_context: bool = False) -> dict[str, Any]:
    """Fresh, isolated instances loaded with (a deep copy of) the scenario. Nothing is cached
    between calls: BFCL's own runner keeps instances in module globals, which leaks state
    between concurrent episodes of the same task."""
    from bfcl_eval.constants.executable_backend_config import STATELESS_CLASSES

    instances = {}
    for name in classes:
        obj = _class(name)()
        if name not in STATELESS_CLASSES:
            obj._load_scenario(copy.deepcopy(initial_config.get(name, {})), long_context=long_context)
        instances[name] = obj
    return instances


def method_table(instances: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Public method name -> (class name, bound method); later classes win on clashes."""
    table: dict[str, tuple[str, Any]] = {}
    for class_name, obj in instances.items():
        for name, method in inspect.getmembers(obj, predicate=inspect.ismethod):
            if not name.startswith("_"):
                table[name] = (class_name, method)
    return table


def to_jsonable(value: Any, _path: frozenset[int] = frozenset()) -> Any:
    """Public state as JSON: objects become their public attributes (file-system nodes etc.).
    A reference back to an object on the current path (a directory's `parent`) becomes a
    marker instead of being followed, so cyclic structures serialise in linear time."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if id(value) in _path:
        return {"__ref__": type(value).__name__}
    path = _path | {id(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, path) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [to_jsonable(v, path) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if hasattr(value, "__dict__"):
        out = {"__type__": type(value).__name__}
        out.update({k: to_jsonable(v, path) for k, v in vars(value).items() if not k.startswith("_")})
        return out
    return str(value)


def snapshot(instances: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: to_jsonable(v) for k, v in vars(obj).items() if not k.startswith("_")}
            for name, obj in instances.items()}
