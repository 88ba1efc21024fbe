"""An environment's profile (AgentEvolver's env profile, spec §3.1): entities with attributes
and operations, and task preferences. Derived from the tool schemas when the registrant gives
none; checked (bounded, every bad field named) when it does; rendered as Markdown for the LLM
roles' prompts. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from evolver.envs.base import Tool
from evolver.errors import Validator
from evolver.v1 import environment_pb2 as env_pb

MAX_ENTITIES, MAX_OPERATIONS, MAX_ATTRIBUTES = 64, 256, 256
NAME_CHARS, TEXT_CHARS = 128, 2000
DIFFICULTY = {1: "Easy: one entity or attribute, no dependencies between operations",
              2: "Medium: several operations, independent of each other",
              3: "Hard: operations that depend on earlier results or need conditions checked first"}


def _first_sentence(text: str, limit: int = 160) -> str:
    text = " ".join(text.split("Tool description:", 1)[-1].split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first[:limit]


def derive_profile(tools: Sequence[Tool], display_name: str = "") -> env_pb.EnvironmentProfile:
    """Entities = the tools' toolsets (one entity for an environment without groups), their
    operations = the tools, their attributes = the tools' parameters with descriptions."""
    groups: dict[str, list[Tool]] = {}
    for t in tools:
        groups.setdefault(t.toolset or display_name or "environment", []).append(t)
    entities = []
    for name, members in list(groups.items())[:MAX_ENTITIES]:
        e = env_pb.ProfileEntity(name=name[:NAME_CHARS],
                                 description=f"{len(members)} operations: " + ", ".join(t.name for t in members[:8]))
        for t in members[:MAX_OPERATIONS]:
            e.operations.add(name=t.name[:NAME_CHARS], description=_first_sentence(t.description))
            for key, sub in (t.parameters.get("properties") or {}).items():
                if len(e.attributes) < MAX_ATTRIBUTES and key not in e.attributes and isinstance(sub, dict):
                    e.attributes[key[:NAME_CHARS]] = _first_sentence(str(sub.get("description", "")), 120)
        entities.append(e)
    return env_pb.EnvironmentProfile(
        name="a user", background=f"someone using {display_name or 'this environment'} through its tools",
        entities=entities, source="derived",
        task_preference=env_pb.TaskPreference(num_entities=min(2, len(entities)) or 1, num_operations=3,
                                              relation_difficulty=2))


def check_profile(p: env_pb.EnvironmentProfile, v: Validator, prefix: str = "profile") -> None:
    """Bounds on a user-supplied profile; each violation names its field."""
    v.check(len(p.name) <= NAME_CHARS, f"{prefix}.name", f"must be at most {NAME_CHARS} characters")
    v.check(len(p.background) <= TEXT_CHARS, f"{prefix}.background", f"must be at most {TEXT_CHARS} characters")
    v.check(len(p.entities) <= MAX_ENTITIES, f"{prefix}.entities", f"at most {MAX_ENTITIES}")
    for i, e in enumerate(p.entities[:MAX_ENTITIES]):
        f = f"{prefix}.entities[{i}]"
        v.check(0 < len(e.name) <= NAME_CHARS, f"{f}.name", f"must be 1 to {NAME_CHARS} characters")
        v.check(len(e.description) <= TEXT_CHARS, f"{f}.description", f"must be at most {TEXT_CHARS} characters")
        v.check(len(e.attributes) <= MAX_ATTRIBUTES, f"{f}.attributes", f"at most {MAX_ATTRIBUTES}")
        v.check(all(len(k) <= NAME_CHARS and len(x) <= TEXT_CHARS for k, x in e.attributes.items()),
                f"{f}.attributes", f"names at most {NAME_CHARS}, descriptions at most {TEXT_CHARS} characters")
        v.check(len(e.operations) <= MAX_OPERATIONS, f"{f}.operations", f"at most {MAX_OPERATIONS}")
        v.check(all(0 < len(o.name) <= NAME_CHARS and len(o.description) <= TEXT_CHARS for o in e.operations),
                f"{f}.operations", f"names 1 to {NAME_CHARS}, descriptions at most {TEXT_CHARS} characters")
    tp = p.task_preference
    v.check(0 <= tp.num_entities <= MAX_ENTITIES, f"{prefix}.task_preference.num_entities",
            f"must be between 0 and {MAX_ENTITIES}")
    v.check(0 <= tp.num_operations <= 64, f"{prefix}.task_preference.num_operations", "must be between 0 and 64")
    v.check(tp.relation_difficulty in (0, 1, 2, 3), f"{prefix}.task_preference.relation_difficulty",
            "must be 1, 2 or 3 (0 = unspecified)")


def render_profile(p: env_pb.EnvironmentProfile, operations: set[str] | None = None) -> str:
    """Markdown for a prompt. operations: show only these operations' entities (a walk's), so
    a large environment does not flood the prompt."""
    lines = [f"User: {p.name or 'a user'}" + (f" ({p.background})" if p.background else "")]
    for e in p.entities:
        ops = [o for o in e.operations if operations is None or o.name in operations]
        if operations is not None and not ops:
            continue
        lines.append(f"- {e.name}: {e.description}")
        if e.attributes:
            attrs = list(e.attributes.items())[:12]
            lines.append("  attributes: " + "; ".join(f"{k} ({d})" if d else k for k, d in attrs))
        lines.append("  operations: " + "; ".join(f"{o.name}: {o.description}" if o.description else o.name
                                                  for o in ops[:16]))
    tp = p.task_preference
    if tp.relation_difficulty or tp.num_entities or tp.num_operations:
        lines.append(f"Task preference: about {tp.num_entities or 1} entities and {tp.num_operations or 1} operations "
                     f"per task; {DIFFICULTY.get(tp.relation_difficulty, 'any difficulty')}.")
    return "\n".join(lines)
