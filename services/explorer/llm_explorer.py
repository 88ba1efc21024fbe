"""The LLM explorer (AgentEvolver §3.3), pure parts: the prompt's fields from the environment
profile, the tools and the walk so far, and the reply parsed into one call. The explorer wraps
it as run_walk's `choose`; a step whose reply is unusable falls back to the schema planner."""

from __future__ import annotations

import json
from collections.abc import Sequence

from evolver.agent.exploration import ChooseCall
from evolver.algorithms.questioning import Walk, short_description
from evolver.envs.base import Call, Tool
from evolver.envs.profile import render_profile
from evolver.models.roles import RoleCaller, RoleCounters
from evolver.models.toolcall import parse_turn
from evolver.v1 import environment_pb2 as env_pb

RESULT_CHARS = 300
MAX_TOOLS_SHOWN = 40


def render_tools(tools: Sequence[Tool]) -> str:
    lines = []
    for t in tools[:MAX_TOOLS_SHOWN]:
        args = ", ".join(t.parameters.get("properties", {}))
        lines.append(f"- {t.name}({args}): {short_description(t)}")
    return "\n".join(lines)


def render_walk(walk: Walk) -> str:
    if not walk.steps:
        return "(nothing yet)"
    lines = []
    for i, s in enumerate(walk.steps, 1):
        status = "ERROR" if s.is_error else "ok"
        lines.append(f"{i}. {s.call.name}({json.dumps(s.call.arguments)}) -> {status}: {s.content[:RESULT_CHARS]}")
    return "\n".join(lines)


def prompt_fields(profile: env_pb.EnvironmentProfile, tools: Sequence[Tool], question: str, walk: Walk,
                  index: int) -> dict[str, object]:
    return {"profile": render_profile(profile), "tools": render_tools(tools), "question": question or "(none)",
            "n": len(walk.steps), "walk": render_walk(walk), "next": index + 1}


def parse_call(reply: str, tools: Sequence[Tool], index: int) -> Call | None:
    """The reply's first call, if it names a tool of this environment with an arguments object;
    an identical repeat of the walk's last call counts as unusable too (the prompt forbids it)."""
    parsed = parse_turn(reply, allow_text_around_calls=True)
    if not parsed.calls:
        return None
    call = parsed.calls[0]
    if call.name not in {t.name for t in tools} or not isinstance(call.arguments, dict):
        return None
    return Call(call.name, call.arguments, f"walk_{index}")


def llm_chooser(llm: RoleCaller, counters: RoleCounters, profile: env_pb.EnvironmentProfile) -> ChooseCall:
    async def choose(tools: Sequence[Tool], question: str, walk: Walk, index: int) -> Call | None:
        call = await llm.ask(counters, lambda reply: parse_call(reply, tools, index),
                             **prompt_fields(profile, tools, question, walk, index))
        if call is not None and walk.steps and (walk.steps[-1].call.name, walk.steps[-1].call.arguments) == (
                call.name, call.arguments):
            call = None  # an identical repeat: the planner chooses instead
            counters.parse_failures += 1
        if call is None:
            counters.fallbacks += 1
        return call
    choose.prompt_version = llm.prompt_version  # recorded on the walks it chose
    return choose
