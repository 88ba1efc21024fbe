"""ReMe-style experiences with the experience_extractor LLM role (spec §4.5): extraction
(success, failure, and comparative when a group has both), validation (kept if valid and
score >= 0.5), and the retrieval rewrite. Prompt fields and reply parsing are pure; the calls
go through RoleCaller (counted, a span each). Bounded per group: at most one success, one
failure and one comparative extraction call, then one validation call."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence

from evolver.memory.experiences import COMPARATIVE, FAILURE, SUCCESS, Experience, TrajectoryView, experience_id
from evolver.models.roles import RoleCaller, RoleCounters

MIN_SCORE = 0.5  # ReMe's memory_validation_op threshold
MAX_PER_CALL = 3
TEXT_CHARS = 400
MODES = {
    SUCCESS: "The attempt below succeeded: extract what made it work.",
    FAILURE: "The attempt below failed: extract what went wrong and what to do instead.",
    COMPARATIVE: "Two attempts below, the better one first: extract what the better one did that the worse did not.",
}
# template name -> its caller (all under the experience_extractor role)
Callers = Callable[[str], Awaitable[RoleCaller]]
_JSON_LIST = re.compile(r"\[.*\]", re.DOTALL)
_CONTEXT = re.compile(r"<context>(.*?)</context>", re.DOTALL | re.IGNORECASE)


def render_attempt(v: TrajectoryView, label: str = "") -> str:
    lines = [f"{label}outcome: {'success' if v.success else 'failure'}"]
    for i, c in enumerate(v.calls[:12], 1):
        status = "ERROR" if c.is_error else "ok"
        lines.append(f"{i}. {c.name}({json.dumps(c.arguments)[:200]}) -> {status}: {c.content[:200]}")
    if not v.calls:
        lines.append("(no tool calls)")
    return "\n".join(lines)


def extraction_jobs(views: Sequence[TrajectoryView]) -> list[tuple[str, str]]:
    """(kind, rendered attempts) for each extraction call the group warrants."""
    good = next((v for v in views if v.success), None)
    bad = next((v for v in views if not v.success), None)
    jobs = []
    if good:
        jobs.append((SUCCESS, render_attempt(good)))
    if bad:
        jobs.append((FAILURE, render_attempt(bad)))
    if good and bad:
        jobs.append((COMPARATIVE, render_attempt(good, "BETTER ") + "\n\n" + render_attempt(bad, "WORSE ")))
    return jobs


def _json_list(reply: str):
    m = _JSON_LIST.search(reply)
    if not m:
        return None
    try:
        value = json.loads(m.group(0))
    except (json.JSONDecodeError, RecursionError, ValueError):
        return None
    return value if isinstance(value, list) else None


def parse_experiences(reply: str) -> list[tuple[str, str]] | None:
    """(when_to_use, experience) pairs; None when the reply holds no usable list."""
    items = _json_list(reply)
    if items is None:
        return None
    out = []
    for x in items[:MAX_PER_CALL]:
        if isinstance(x, dict):
            when, text = x.get("when_to_use") or x.get("condition"), x.get("experience") or x.get("content")
            if isinstance(when, str) and isinstance(text, str) and when.strip() and text.strip():
                out.append((" ".join(when.split())[:TEXT_CHARS], " ".join(text.split())[:TEXT_CHARS]))
    return out or None


def parse_validation(reply: str, n: int) -> dict[int, float] | None:
    """index (0-based) -> score, for the experiences judged valid; None when unusable."""
    items = _json_list(reply)
    if items is None:
        return None
    out = {}
    for x in items:
        if not isinstance(x, dict) or not isinstance(x.get("index"), int):
            continue
        i = x["index"] - 1
        try:
            score = float(x.get("score", 0))
        except (TypeError, ValueError):
            continue
        if 0 <= i < n and x.get("is_valid") is True:
            out[i] = score
    return out


def parse_context(reply: str) -> str | None:
    m = _CONTEXT.search(reply)
    text = m.group(1).strip() if m else ""
    return text[:2000] or None


async def llm_experiences(callers: Callers, counters: RoleCounters, env_id: str, task_id: str, query: str,
                          views: Sequence[TrajectoryView]) -> list[Experience] | None:
    """Validated experiences from one group; None when no extraction reply was usable (the
    caller falls back to the rules). An unusable validation reply keeps the extracted ones,
    unscored, counted as a fallback."""
    import asyncio
    extractor = await callers("experience_extractor")
    jobs = extraction_jobs(views)
    replies = await asyncio.gather(*(extractor.ask(counters, parse_experiences, mode=MODES[kind], task=query,
                                                   attempts=attempts) for kind, attempts in jobs))
    if all(r is None for r in replies):
        return None
    found: dict[str, Experience] = {}
    for (kind, _), pairs in zip(jobs, replies):
        for when, text in pairs or []:
            eid = experience_id(env_id, kind, when, text)
            found.setdefault(eid, Experience(eid, kind, when, text, env_id, task_id,
                                             prompt_version=extractor.prompt_version))
    candidates = list(found.values())
    validator = await callers("experience_validator")
    listing = "\n".join(f"{i}. [{e.kind}] when: {e.when_to_use} | experience: {e.content}"
                        for i, e in enumerate(candidates, 1))
    scores = await validator.ask(counters, lambda reply: parse_validation(reply, len(candidates)), task=query,
                                 experiences=listing)
    if scores is None:
        counters.fallbacks += 1
        return candidates
    return [Experience(e.experience_id, e.kind, e.when_to_use, e.content, e.env_id, e.source_task_id, scores[i],
                       e.prompt_version) for i, e in enumerate(candidates) if scores.get(i, 0.0) >= MIN_SCORE]


async def rewrite(callers: Callers, counters: RoleCounters, query: str,
                  experiences: Sequence[Experience]) -> str | None:
    rewriter = await callers("experience_rewriter")
    listing = "\n".join(f"Memory {i}: when to use: {e.when_to_use}\ncontent: {e.content}"
                        for i, e in enumerate(experiences, 1))
    return await rewriter.ask(counters, parse_context, task=query, experiences=listing)
