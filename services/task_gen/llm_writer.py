"""The LLM task writer (AgentEvolver §3.4), pure parts: an exploration walk rendered as the
prompt's numbered log, and the reply parsed into tasks. Each task names the walk steps that
solve it, so its reference solution is calls already seen to succeed, replay-verified like any
other; every block of a reply becomes its own task (AgentEvolver kept only the last, B20)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from evolver.algorithms.questioning import Walk
from evolver.envs.profile import render_profile
from evolver.v1 import environment_pb2 as env_pb

PART_CHARS = 600  # an observation in the log is trimmed to this
KNOWN_SHOWN = 12  # tasks already in the pool shown as "do not repeat"
MAX_TASKS = 4  # asked for per walk
QUERY_CHARS = 600
_BLOCK = re.compile(r"<task>(.*?)</task>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class WrittenTask:
    query: str
    confidence: float
    steps: list[int]  # 0-based walk step indices, in order


def render_walk(walk: Walk) -> str:
    parts = []
    for i, s in enumerate(walk.steps, 1):
        obs = s.content if len(s.content) <= PART_CHARS else s.content[:PART_CHARS] + " ...[trimmed]"
        status = "ERROR" if s.is_error else "ok"
        parts.append(f">>> STEP {i} <<< ({status})\n<|ACTION|>{s.call.name}({json.dumps(s.call.arguments)})<|END|>\n"
                     f"<|OBSERVATION|>{obs}<|END|>")
    return "\n".join(parts)


def prompt_fields(walk: Walk, profile: env_pb.EnvironmentProfile, known: Sequence[str],
                  max_calls: int) -> dict[str, object]:
    """The environment profile (the entities the walk touched), the numbered log, the tasks
    already known."""
    used = {s.call.name for s in walk.steps}
    return {"profile": render_profile(profile, used), "n": len(walk.steps), "steps": render_walk(walk),
            "known": "\n".join(f"- {q}" for q in list(known)[:KNOWN_SHOWN]) or "(none)",
            "max_calls": max_calls, "max_tasks": MAX_TASKS}


def _steps(value) -> list[int] | None:
    if isinstance(value, str):  # "1, 2" or "steps 1 and 3": the numbers in order
        value = [int(x) for x in re.findall(r"\d+", value)]
    if not isinstance(value, list) or not value or not all(isinstance(x, int) and not isinstance(x, bool)
                                                           for x in value):
        return None
    return value


def parse_tasks(reply: str, walk: Walk, max_calls: int) -> tuple[list[WrittenTask], list[str]] | None:
    """(tasks, why blocks were dropped), or None when the reply holds no <task> block at all
    (empty, refused or off-format: the caller counts a parse failure)."""
    blocks = _BLOCK.findall(reply)
    if not blocks:
        return None
    tasks, dropped = [], []
    for raw in blocks:
        try:
            obj = json.loads(raw.strip())
        except (json.JSONDecodeError, RecursionError, ValueError):
            dropped.append("LLM task: not valid JSON")  # the other blocks still count
            continue
        if not isinstance(obj, dict):
            dropped.append("LLM task: not a JSON object")
            continue
        query = obj.get("query")
        steps = _steps(obj.get("action_sequence"))
        if not isinstance(query, str) or not query.strip() or len(query) > QUERY_CHARS:
            dropped.append("LLM task: no usable query")
            continue
        if steps is None or len(steps) > max_calls:
            dropped.append(f"LLM task: action_sequence must list 1 to {max_calls} step numbers")
            continue
        if any(not 1 <= k <= len(walk.steps) or walk.steps[k - 1].is_error for k in steps):
            dropped.append("LLM task: action_sequence names a missing or failed step")
            continue
        try:
            confidence = min(1.0, max(0.0, float(obj.get("confidence", 0.5))))
        except (TypeError, ValueError):
            confidence = 0.5
        tasks.append(WrittenTask(" ".join(query.split()), confidence, [k - 1 for k in steps]))
    return tasks, dropped
