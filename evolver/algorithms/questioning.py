"""Self-questioning without an LLM: schema-guided exploration walks, candidate tasks cut from
walks, template queries, unique task ids with provenance, and feasibility by replay.

The walk planner fills tool arguments from the JSON schema's types and from values seen in
earlier observations and in the initial state, and prefers tools whose calls have reached
unseen states (a per-tool novelty bandit over state hashes). The template writer is the seam
where the LLM task writer plugs in (TaskWriter)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from evolver.algorithms.state import changes, scalar_values
from evolver.envs.base import Call, Tool

GENERATOR_VERSION = "schema-walk/1"


@dataclass
class WalkStep:
    call: Call
    content: str
    is_error: bool
    state_hash: str
    changed_state: bool
    new_values: list[Any] = field(default_factory=list)


@dataclass
class Walk:
    walk_id: str
    initial_state: dict[str, Any]
    steps: list[WalkStep] = field(default_factory=list)


class WalkPlanner:
    def __init__(self, tools: Sequence[Tool], initial_state: Any, seed: int, optional_arg_p: float = 0.3):
        self.tools = list(tools)
        self.rng = random.Random(seed)
        self.optional_arg_p = optional_arg_p
        self.pool: list[Any] = [v for v in scalar_values(initial_state, limit=500) if not isinstance(v, float)]
        self.calls: dict[str, int] = {}
        self.novel: dict[str, int] = {}
        self.seen_states: set[str] = set()

    def observe(self, step: WalkStep) -> None:
        name = step.call.name
        self.calls[name] = self.calls.get(name, 0) + 1
        if step.state_hash and step.state_hash not in self.seen_states:
            self.seen_states.add(step.state_hash)
            self.novel[name] = self.novel.get(name, 0) + 1
        if not step.is_error:
            for v in step.new_values:
                if v not in self.pool:
                    self.pool.append(v)

    def _score(self, tool: Tool) -> float:
        # Optimistic novelty: untried tools first, then tools that keep finding new states.
        return (self.novel.get(tool.name, 0) + 1) / (self.calls.get(tool.name, 0) + 1)

    def next_call(self, index: int) -> Call:
        weights = [self._score(t) ** 2 for t in self.tools]
        tool = self.rng.choices(self.tools, weights=weights, k=1)[0]
        return Call(tool.name, self._arguments(tool.parameters), f"walk_{index}")

    def _arguments(self, schema: dict) -> dict[str, Any]:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        args = {}
        for name, sub in props.items():
            if name in required or self.rng.random() < self.optional_arg_p:
                args[name] = self._value(name, sub)
        return args

    def _value(self, name: str, schema: dict) -> Any:
        kind = schema.get("type")
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        strings = [v for v in self.pool if isinstance(v, str) and 0 < len(v) <= 80]
        numbers = [v for v in self.pool if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if kind == "string":
            related = [s for s in strings if _related(name, s)]
            if related and self.rng.random() < 0.7:
                return self.rng.choice(related)
            return self.rng.choice(strings) if strings and self.rng.random() < 0.8 else f"{name}_{self.rng.randint(1, 99)}"
        if kind == "integer":
            ints = [int(v) for v in numbers if float(v).is_integer()]
            return self.rng.choice(ints) if ints and self.rng.random() < 0.6 else self.rng.randint(0, 10)
        if kind == "number":
            return float(self.rng.choice(numbers)) if numbers and self.rng.random() < 0.6 else round(self.rng.uniform(0, 100), 2)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "array":
            item = schema.get("items", {"type": "string"})
            return [self._value(name, item)]
        if kind == "object":
            return {}
        return self.rng.choice(strings) if strings else name


def _related(param: str, value: str) -> bool:
    # file_name -> values with an extension; *_id -> short tokens; dir/folder -> no extension.
    if "file" in param:
        return "." in value and " " not in value
    if "dir" in param or "folder" in param:
        return "." not in value and " " not in value and len(value) < 40
    if param.endswith("id"):
        return " " not in value and len(value) < 24
    return True


def _short_description(tool: Tool) -> str:
    text = tool.description.split("Tool description:", 1)[-1].strip()
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    return first[:1].lower() + first[1:] if first else tool.name


class TaskWriter(Protocol):
    """Turns a call sequence into a natural-language request. The template writer below is the
    LLM-free default; an LLM task writer implements the same method."""

    def write(self, calls: Sequence[Call], tools: dict[str, Tool], expected_facts: Sequence[str]) -> str: ...


class TemplateWriter:
    def write(self, calls: Sequence[Call], tools: dict[str, Tool], expected_facts: Sequence[str]) -> str:
        parts = []
        for c in calls:
            desc = _short_description(tools[c.name]) if c.name in tools else c.name
            args = ", ".join(f"{k} {json.dumps(v)}" for k, v in c.arguments.items())
            parts.append(f"{desc} ({c.name}{' with ' + args if args else ''})")
        text = "Please " + "; then ".join(parts) + "."
        if expected_facts:
            text += " Tell me what you find."
        return text


@dataclass
class Candidate:
    task_id: str
    query: str
    calls: list[Call]
    expected_facts: list[str]
    walk_id: str


def task_id_for(env_id: str, origin: str, walk_id: str, calls: Sequence[Call]) -> str:
    """Unique per (environment, starting state, walk, call sequence, generator): never a seed's id
    (spec B5: reusing it merged GRPO groups of sibling tasks)."""
    blob = json.dumps([env_id, origin, walk_id, GENERATOR_VERSION, [(c.name, c.arguments) for c in calls]], sort_keys=True)
    return "syn-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


def candidates_from_walk(walk: Walk, tools: Sequence[Tool], env_id: str, origin: str, *, max_len: int = 4,
                         writer: TaskWriter | None = None) -> list[Candidate]:
    """Contiguous runs of successful calls that end in a call that changed state or read
    information; every run start, up to max_len calls."""
    writer = writer or TemplateWriter()
    by_name = {t.name: t for t in tools}
    out, seen = [], set()
    steps = walk.steps
    for start in range(len(steps)):
        for end in range(start, min(len(steps), start + max_len)):
            if steps[end].is_error:
                break
            last = steps[end]
            reads = [v for v in last.new_values if isinstance(v, (str, int)) and len(str(v)) > 1]
            if not (last.changed_state or reads):
                continue
            calls = [s.call for s in steps[start:end + 1]]
            facts = [] if last.changed_state else [str(v) for v in reads[:2]]
            key = json.dumps([(c.name, c.arguments) for c in calls], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            tid = task_id_for(env_id, origin, walk.walk_id, calls)
            out.append(Candidate(tid, writer.write(calls, by_name, facts),
                                 [Call(c.name, c.arguments, f"ref_{i}") for i, c in enumerate(calls)], facts, walk.walk_id))
    return out


@dataclass
class Verdict:
    accepted: bool
    reason: str
    reference_end_state: dict[str, Any] | None = None


def check_replay(initial: dict[str, Any], end: dict[str, Any], results: Sequence[tuple[str, bool]],
                 expected_facts: Sequence[str]) -> Verdict:
    """Feasibility from a replay of the reference solution in a fresh instance: every call
    succeeds, and the replay changes state or returns the information the task asks for."""
    failed = [i for i, (_, err) in enumerate(results) if err]
    if failed:
        return Verdict(False, f"reference call {failed[0]} failed on replay: {results[failed[0]][0][:200]}")
    changed = bool(changes(initial, end))
    text = " ".join(c.lower() for c, _ in results)
    has_facts = bool(expected_facts) and all(str(f).lower() in text for f in expected_facts)
    if not changed and not has_facts:
        return Verdict(False, "trivial: the replay neither changed state nor returned the requested information")
    return Verdict(True, "replayed", end)
