"""State comparisons on canonical JSON states: flattened (path, value) leaves, changes relative
to a starting state, and distances. Pure."""

from __future__ import annotations

import ast
import json
from typing import Any

Leaf = tuple[str, str]  # (path, canonical JSON of a scalar)


def leaves(state: Any, prefix: str = "") -> set[Leaf]:
    out: set[Leaf] = set()
    if isinstance(state, dict):
        if not state:
            out.add((prefix, "{}"))
        for k, v in state.items():
            out |= leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(state, list):
        if not state:
            out.add((prefix, "[]"))
        for i, v in enumerate(state):
            out |= leaves(v, f"{prefix}[{i}]")
    else:
        out.add((prefix, json.dumps(state, sort_keys=True)))
    return out


def changes(before: Any, after: Any) -> set[Leaf]:
    """Leaves that are new or different in `after` plus leaves removed from `before` (marked)."""
    b, a = leaves(before), leaves(after)
    return (a - b) | {(p, "<removed>") for p, _ in (b - a) if p not in {q for q, _ in a}}


def distance(state: Any, target: Any) -> int:
    return len(leaves(state) ^ leaves(target))


def scalar_values(value: Any, limit: int = 200, keys: bool = True) -> list[Any]:
    """Scalars appearing in a value (JSON-parsed where it is a JSON string), for reuse as
    arguments and for 'information read' checks; keys=False leaves out the field names (what
    a read told, not how it was laid out)."""
    if isinstance(value, str):
        parsed = parse_result(value)
        if parsed is None:
            return [value] if value else []
        value = parsed
    out: list[Any] = []

    def walk(v: Any) -> None:
        if len(out) >= limit:
            return
        if isinstance(v, dict):
            for k, x in v.items():
                if isinstance(k, str) and k.startswith("__"):
                    continue  # a serialisation marker ("__type__" in BFCL's state), not data
                if keys:
                    out.append(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif v is not None and not isinstance(v, bool):
            out.append(v)
    walk(value)
    return out


def parse_result(text: str) -> Any:
    """A tool result as data: JSON, or a Python literal (some environments print repr());
    None when it is neither. ast.literal_eval only: nothing is executed."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError, RecursionError):
        pass
    if len(text) > 100_000 or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


KEY_FIELD = "<key>"  # field_values' name for the keys of id-keyed maps, whatever the map is called


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") and len(name) > 3 else name


def field_values(value: Any, limit: int = 500) -> list[tuple[str, Any]]:
    """(field name, scalar) pairs in a value (JSON-parsed where it is a JSON string), so that
    an argument can be filled with what the environment itself returned for a field of that
    name. The keys of an id-keyed map count as ids: {"books": {"b1": {...}}} gives ("book_id",
    "b1") and ("books", "b1")."""
    if isinstance(value, str):
        value = parse_result(value)
        if value is None:
            return []
    out: list[tuple[str, Any]] = []

    def walk(name: str, v: Any) -> None:
        if len(out) >= limit:
            return
        if isinstance(v, dict):
            keyed = len(v) > 0 and all(isinstance(x, dict) for x in v.values())
            for k, x in v.items():
                if keyed:  # an id-keyed map: its keys are ids of the thing it holds
                    out.append((KEY_FIELD, k))
                    if name:
                        out.append((f"{_singular(name)}_id", k))
                        out.append((name, k))
                walk(str(k), x)
        elif isinstance(v, list):
            for x in v:
                walk(name, x)
        elif v is not None and not isinstance(v, bool) and name:
            out.append((name, v))
    walk("", value)
    return out
