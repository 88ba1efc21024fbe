"""Experience extraction from one completed rollout group (pure, LLM-free).

success  from each successful trajectory: when to use = the task query; what worked = the
         sequence of successful calls.
failure  an error observation paired with the call that later fixed it: the failed call, the
         calls made in between, and the successful retry of the same tool, e.g.
         "mv failed: No such file or directory -> mkdir(dir_name=temp) first, then mv(...)".
The retrieval key is the task query (never the system prompt, spec B4). Only training tasks
feed memory (B3): callers pass evaluation groups nowhere near this. The ExperienceExtractor
protocol is the seam for the LLM extractor."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Protocol, Sequence

SUCCESS, FAILURE, COMPARATIVE = "success", "failure", "comparative"


@dataclass(frozen=True)
class CallOutcome:
    name: str
    arguments: dict
    content: str
    is_error: bool


@dataclass(frozen=True)
class TrajectoryView:
    query: str
    success: bool
    calls: Sequence[CallOutcome]  # in order, across the episode


@dataclass(frozen=True)
class Experience:
    experience_id: str
    kind: str
    when_to_use: str
    content: str
    env_id: str
    source_task_id: str
    score: float = 0.0  # the validator's, for LLM-extracted experiences
    prompt_version: str = ""  # the extraction prompt's, for LLM-extracted experiences


def _fmt(c: CallOutcome, limit: int = 60) -> str:
    args = ", ".join(f"{k}={json.dumps(v)[:limit]}" for k, v in c.arguments.items())
    return f"{c.name}({args})"


def _error_text(content: str, limit: int = 120) -> str:
    try:
        obj = json.loads(content)
        if isinstance(obj, dict) and "error" in obj:
            content = str(obj["error"])
    except (json.JSONDecodeError, ValueError):
        pass
    return content.replace("\n", " ")[:limit]


def experience_id(env_id: str, kind: str, when_to_use: str, content: str) -> str:
    return hashlib.sha256(json.dumps([env_id, kind, when_to_use, content]).encode()).hexdigest()[:32]


class ExperienceExtractor(Protocol):
    def extract(self, env_id: str, task_id: str, group: Sequence[TrajectoryView]) -> list[Experience]: ...


class RuleExtractor:
    def __init__(self, max_calls: int = 8):
        self.max_calls = max_calls

    def extract(self, env_id: str, task_id: str, group: Sequence[TrajectoryView]) -> list[Experience]:
        out: dict[str, Experience] = {}
        for t in group:
            if t.success:
                worked = [_fmt(c) for c in t.calls if not c.is_error][: self.max_calls]
                if worked:
                    content = "What worked: " + " -> ".join(worked)
                    self._add(out, env_id, task_id, SUCCESS, t.query, content)
            for i, c in enumerate(t.calls):
                if not c.is_error:
                    continue
                fix = next((j for j in range(i + 1, len(t.calls))
                            if t.calls[j].name == c.name and not t.calls[j].is_error), None)
                if fix is None:
                    continue
                between = [_fmt(b) for b in t.calls[i + 1:fix] if not b.is_error]
                content = (f"{c.name} failed: {_error_text(c.content)} -> "
                           + (f"{' then '.join(between)} first, then " if between else "retry as ")
                           + _fmt(t.calls[fix]))
                self._add(out, env_id, task_id, FAILURE, t.query, content)
        return list(out.values())

    @staticmethod
    def _add(out, env_id, task_id, kind, when, content) -> None:
        eid = experience_id(env_id, kind, when, content)
        out.setdefault(eid, Experience(eid, kind, when, content, env_id, task_id))


def render_block(experiences: Sequence[Experience]) -> str:
    """The text injected (as the marked experience segment) into a guided rollout."""
    lines = [f"- [{e.kind}] {e.content}" for e in experiences]
    return "Experience from similar tasks:\n" + "\n".join(lines)
