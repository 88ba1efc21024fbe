"""The LLM feasibility check (AgentEvolver §3.5.2): an agent (the explorer role, with the solver
template) attempts a candidate task in a fresh instance with the candidate's solution as a tip;
the judge role gives a verdict; a task that passes gets its reference from the replay that
succeeded. For environments whose state cannot be compared this is the check; with state it can
be added to the replay check (hybrid). Parsing is pure; the calls are counted per role."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from evolver.algorithms.questioning import Candidate
from evolver.envs.base import Call, Tool
from evolver.models.roles import RoleCaller, RoleCounters
from evolver.models.toolcall import parse_turn, render_tool_results, system_prompt

STEP_CHARS = 200  # each step in the verdict prompt, as AgentEvolver's judge saw it
MAX_REPLAY_STEPS = 6
_VERDICT = re.compile(r"success\s*[:=]\s*\**\s*(true|false|yes|no)\b", re.IGNORECASE)
_GOOD = ("success", "completed", "accomplished", "correct")
_BAD = ("fail", "error", "incorrect", "not ", "missing")


@dataclass
class Replay:
    calls: list[Call] = field(default_factory=list)  # the successful calls, in order
    steps: list[str] = field(default_factory=list)  # "name(args) -> result" per call, for the verdict
    final: str = ""
    end_state: dict | None = None
    answered: bool = False  # the solver role replied at all


def parse_verdict(reply: str) -> bool | None:
    """The explicit "Success: true/false"; failing that, which of success and failure words
    dominate (AgentEvolver's fallback); None when the reply says neither."""
    m = _VERDICT.search(reply)
    if m:
        return m.group(1).lower() in ("true", "yes")
    low = reply.lower()
    good, bad = sum(low.count(w) for w in _GOOD), sum(low.count(w) for w in _BAD)
    return None if good == bad else good > bad


def tip(c: Candidate) -> str:
    return "\n".join(f"{i}. {x.name}({json.dumps(x.arguments)})" for i, x in enumerate(c.calls, 1))


async def replay_with_tip(solver: RoleCaller, counters: RoleCounters, episode, tools: list[Tool],
                          c: Candidate) -> Replay:
    """Up to MAX_REPLAY_STEPS turns of the solver role in the episode (chat turns: its replies
    and the tool results)."""
    out, history = Replay(), []
    for _ in range(MAX_REPLAY_STEPS):
        reply = await solver.ask(counters, lambda text: text or None, history=history,
                                 tools=system_prompt(tools), query=c.query, tip=tip(c))
        if reply is None:
            break
        out.answered = True
        parsed = parse_turn(reply, allow_text_around_calls=True)
        history.append({"role": "assistant", "content": reply})
        if not parsed.calls:
            out.final = parsed.text
            break
        step = await episode.step(parsed.calls)
        for call, r in zip(parsed.calls, step.results):
            out.steps.append(f"{call.name}({json.dumps(call.arguments)})"[:STEP_CHARS // 2] + " -> "
                             + ("ERROR: " if r.is_error else "") + r.content[:STEP_CHARS // 2])
            if not r.is_error:
                out.calls.append(Call(call.name, call.arguments, f"ref_{len(out.calls)}"))
        out.final = step.results[-1].content if step.results else out.final
        history.append({"role": "user", "content": render_tool_results([(x.name, r.content) for x, r in
                                                                        zip(parsed.calls, step.results)])})
        if step.done:
            break
    return out


async def judge_replay(judge: RoleCaller, counters: RoleCounters, c: Candidate, replay: Replay) -> bool | None:
    return await judge.ask(counters, parse_verdict, query=c.query,
                           steps="\n".join(f"{i}. {s}" for i, s in enumerate(replay.steps, 1)) or "(no calls)",
                           final=replay.final[:STEP_CHARS * 2] or "(none)")
