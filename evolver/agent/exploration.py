"""Schema-guided exploration walks through the Environment protocol (the explorer runs these;
no environment is special-cased), and Walk <-> protobuf."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from evolver.agent.episode import keeping_alive
from evolver.algorithms.questioning import Walk, WalkPlanner, WalkStep
from evolver.algorithms.state import field_values, scalar_values
from evolver.envs.base import Call, Tool, state_hash
from evolver.envs.client import EnvironmentClient
from evolver.errors import FailedPrecondition
from evolver.limits import STEPS_PER_WALK_MAX, WALKS_MAX
from evolver.v1 import events_pb2, trajectory_pb2

# Bounds on one exploration request, enforced where it is asked for (task_gen) and where it runs
# (explorer); the numbers live with every other bound in evolver.limits.
MAX_WALKS, MAX_STEPS_PER_WALK = WALKS_MAX, STEPS_PER_WALK_MAX


# Chooses a walk's next call from the walk so far (the LLM explorer), or None to let the schema
# planner choose: (tools, user question, walk so far, step index) -> call.
ChooseCall = Callable[[Sequence[Tool], str, Walk, int], Awaitable[Call | None]]


async def visible_state(episode) -> tuple[dict[str, Any], str] | None:
    """The episode's state and hash, or None when the environment does not expose its state
    (state_visible false: GetState is FAILED_PRECONDITION). Exploration, task checks and
    rewards then rely on what the calls returned and on the LLM roles."""
    try:
        return await episode.state()
    except FailedPrecondition:
        return None


async def run_walk(env: EnvironmentClient, *, walk_id: str, seed: int, max_steps: int,
                   seed_task_id: str = "", initial_state: dict[str, Any] | None = None,
                   toolsets: list[str] | None = None, use_returned_fields: bool = True,
                   choose: ChooseCall | None = None) -> Walk:
    """A walk of up to max_steps calls: each chosen by `choose` (the LLM explorer) when given
    and it answers, else by the schema planner."""
    if not seed_task_id and initial_state is None:
        initial_state = {}  # the environment's default initial state (the proto's contract for "{}")
    episode = await env.create(seed_task_id=seed_task_id or None, initial_state=initial_state,
                               toolsets=toolsets or [])
    try:
        state, h = await visible_state(episode) or ({}, "")
        planner = WalkPlanner(episode.tools, state, seed=seed, use_returned_fields=use_returned_fields)
        walk = Walk(walk_id, state)
        planner.seen_states.add(h)
        for i in range(max_steps):
            call = (await keeping_alive(episode, choose(episode.tools, episode.user_message, walk, i)) if choose else None) \
                or planner.next_call(i)
            out = await episode.step([call])
            if not out.results:  # the episode ended without running the call
                break
            result = out.results[0]
            new_state, new_hash = await visible_state(episode) or ({}, "")  # opaque: no change is seen
            planner.observe_state(new_state)  # ids the call created (a new loan) become arguments
            step = WalkStep(call, result.content, result.is_error, new_hash, bool(new_hash) and new_hash != h,
                            [] if result.is_error else scalar_values(result.content),
                            [] if result.is_error else field_values(result.content))
            planner.observe(step)
            walk.steps.append(step)
            h = new_hash
            if out.done:
                break
        return walk
    finally:
        await episode.release()


def walk_to_pb(walk: Walk) -> events_pb2.Walk:
    steps = []
    for i, s in enumerate(walk.steps):
        kind = trajectory_pb2.OBSERVATION_KIND_TOOL_ERROR if s.is_error else trajectory_pb2.OBSERVATION_KIND_RESULT
        steps.append(trajectory_pb2.Step(
            index=i, tool_calls=[trajectory_pb2.ToolCall(call_id=s.call.call_id, name=s.call.name,
                                                         arguments_json=json.dumps(s.call.arguments))],
            observations=[trajectory_pb2.Observation(call_id=s.call.call_id, kind=kind, content=s.content)],
            state_hash_after=s.state_hash))
    return events_pb2.Walk(walk_id=walk.walk_id, steps=steps, initial_state_json=json.dumps(walk.initial_state),
                           prompt_version=walk.prompt_version)


def walk_from_pb(w: events_pb2.Walk) -> Walk:
    walk = Walk(w.walk_id, json.loads(w.initial_state_json or "{}"), prompt_version=w.prompt_version)
    previous = state_hash(walk.initial_state)  # the server hashes the same canonical JSON
    for s in w.steps:
        call, obs = s.tool_calls[0], s.observations[0]
        is_error = obs.kind != trajectory_pb2.OBSERVATION_KIND_RESULT
        # An opaque environment's steps carry no hash: no change is seen.
        changed = bool(s.state_hash_after) and s.state_hash_after != previous
        walk.steps.append(WalkStep(Call(call.name, json.loads(call.arguments_json or "{}"), call.call_id), obs.content,
                                   is_error, s.state_hash_after, changed,
                                   [] if is_error else scalar_values(obs.content),
                                   [] if is_error else field_values(obs.content)))
        previous = s.state_hash_after
    return walk
