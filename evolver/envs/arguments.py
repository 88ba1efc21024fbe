"""Checks tool-call arguments against a tool's JSON Schema before anything runs. Pure; covers
the subset tool schemas use (object, required, properties, types, enum, items), so the
environment never sees an argument of the wrong shape."""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else list(expected)
    for name in names:
        kinds = _TYPES.get(name)
        if kinds is None:
            return True  # unknown type keyword: accept rather than reject valid calls
        # bool is an int in Python; JSON Schema keeps them apart.
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, kinds):
            return True
    return False


def check_value(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    expected = schema.get("type")
    if expected is not None and not _type_ok(value, expected):
        return [f"{path}: expected {expected}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: must be one of {schema['enum']}")
    if isinstance(value, (list, tuple)) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors.extend(check_value(item, schema["items"], f"{path}[{i}]"))
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        errors.extend(check_object(value, schema, path, allow_extra=schema.get("additionalProperties", True) is not False))
    return errors


def check_object(args: dict[str, Any], schema: dict[str, Any], path: str = "", *, allow_extra: bool = False) -> list[str]:
    """Errors for an arguments object: missing required keys, unknown keys, wrong types."""
    props: dict[str, Any] = schema.get("properties") or {}
    prefix = f"{path}." if path else ""
    errors = [f"missing required argument '{prefix}{k}'" for k in schema.get("required", []) if k not in args]
    for key, value in args.items():
        if key not in props:
            if not allow_extra:
                errors.append(f"unknown argument '{prefix}{key}' (expected one of: {', '.join(sorted(props)) or 'none'})")
            continue
        errors.extend(check_value(value, props[key], f"argument '{prefix}{key}'"))
    return errors


def schema_problems(schema: Any) -> list[str]:
    """Why a tool's parameter schema is not a usable JSON Schema object (empty when fine)."""
    if not isinstance(schema, dict):
        return ["parameters schema must be a JSON object"]
    problems = []
    if schema.get("type") != "object":
        problems.append("parameters schema must have type 'object'")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        problems.append("'properties' must be an object")
        props = {}
    for name, sub in props.items():
        if not isinstance(sub, dict):
            problems.append(f"property '{name}' must be a schema object")
        elif "type" in sub and not all(t in _TYPES for t in ([sub["type"]] if isinstance(sub["type"], str) else sub["type"])):
            problems.append(f"property '{name}' has unknown type {sub['type']!r}")
    for req in schema.get("required", []):
        if req not in props:
            problems.append(f"required '{req}' is not a declared property")
    return problems
