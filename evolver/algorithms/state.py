"""State comparisons on canonical JSON states: flattened (path, value) leaves, changes relative
to a starting state, and distances. Pure."""

from __future__ import annotations

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


def scalar_values(value: Any, limit: int = 200) -> list[Any]:
    """Scalars appearing in a value (JSON-parsed where it is a JSON string), for reuse as
    arguments and for 'information read' checks."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return [value] if value else []
    out: list[Any] = []

    def walk(v: Any) -> None:
        if len(out) >= limit:
            return
        if isinstance(v, dict):
            for k, x in v.items():
                out.append(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif v is not None and not isinstance(v, bool):
            out.append(v)
    walk(value)
    return out
