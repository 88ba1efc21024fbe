"""The attributor's domain: per-step GOOD/BAD labels for a rollout group by state progress.

States come from replaying each trajectory's calls in fresh environment instances: the state
before each step, the end state, and counterfactual replays (each step dropped in turn) that
catch preconditions the visible state does not show. The labelling rules are in labeling.py."""

from __future__ import annotations

import json
from typing import Awaitable, Callable

from evolver.agent.rollout import create_episode
from evolver.algorithms.attribution import needed_steps
from evolver.envs.client import RemoteEnvironment
from evolver.errors import InvalidArgument, Validator
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb
from services.attributor.labeling import error_only_labels, label_steps, replay_calls

# Counterfactual replays cost one replay per step; beyond this many steps labels use state alone.
MAX_COUNTERFACTUAL_STEPS = 8
# env_id -> the environment server's address (the registry).
Locate = Callable[[str], Awaitable[str]]


def reference_problem(task: task_pb2.Task) -> str | None:
    """Why a task's reference end state is unusable, or None."""
    if not task.reference_end_state_json:
        return None
    try:
        value = json.loads(task.reference_end_state_json)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        return f"not valid JSON ({type(e).__name__})"
    return None if isinstance(value, dict) else "must be a JSON object"


async def replay(env: RemoteEnvironment, task: task_pb2.Task, calls: list[list[tpb.ToolCall]],
                 keep: list[int] | None = None) -> tuple[list, list[bool]]:
    """States (before each kept step, then the end) and, per kept step, whether every call failed."""
    keep = list(range(len(calls))) if keep is None else keep
    episode = await create_episode(env, task)
    try:
        states, failed = [(await episode.state())[0]], []
        for k in keep:
            if calls[k]:
                r = await episode.step_raw(calls[k])
                failed.append(all(o.kind != tpb.OBSERVATION_KIND_RESULT for o in r.observations))
            else:
                failed.append(False)
            states.append((await episode.state())[0])
        return states, failed
    finally:
        await episode.release()


async def attribute_group(env: RemoteEnvironment, task: task_pb2.Task,
                          group: tpb.RolloutGroup) -> list[apb.StepAttribution]:
    out = []
    reference = json.loads(task.reference_end_state_json) if task.reference_end_state_json else None
    for traj in group.trajectories:
        if traj.infra_failure.reason:
            continue  # not the policy's behaviour: no labels, no advantage
        if reference is None:
            labels, method = error_only_labels(traj), apb.ATTRIBUTION_METHOD_UNSPECIFIED
        else:
            calls = replay_calls(traj)
            n = len(calls)
            states, failed = await replay(env, task, calls)
            needed = None
            if n <= MAX_COUNTERFACTUAL_STEPS:
                # needed_steps is pure: it reads the full replay and one replay per dropped step,
                # all computed here up front.
                ends = {tuple(range(n)): (states[-1], failed)}
                for k in range(n):
                    keep = [i for i in range(n) if i != k]
                    s, f = await replay(env, task, calls, keep)
                    ends[tuple(keep)] = (s[-1], f)
                needed = needed_steps(lambda keep: ends[tuple(keep)], n, reference)
            labels = label_steps(traj, states, reference, list(task.expected_answer_facts), needed)
            method = apb.ATTRIBUTION_METHOD_STATE_PROGRESS
        out.append(apb.StepAttribution(
            trajectory_id=traj.trajectory_id, method=method,
            labels=[apb.STEP_LABEL_GOOD if good else apb.STEP_LABEL_BAD for good, _ in labels],
            reasons=[why for _, why in labels]))
    return out


def check_attribute_request(task: task_pb2.Task, trajectory: tpb.Trajectory) -> None:
    v = Validator()
    v.check(bool(task.env_id), "task.env_id", "must name a registered environment")
    v.check(len(trajectory.steps) > 0, "trajectory.steps", "must hold at least one step")
    v.check(not trajectory.infra_failure.reason, "trajectory.infra_failure",
            "an infrastructure-failed attempt is not the policy's behaviour: it gets no labels")
    problem = reference_problem(task)
    v.check(problem is None, "task.reference_end_state_json", problem or "")
    v.raise_if_any()


class Attributor:
    def __init__(self, locate: Locate):
        self.locate = locate

    async def attribute(self, task: task_pb2.Task, group: tpb.RolloutGroup) -> list[apb.StepAttribution]:
        """Labels for every trajectory of a group that the policy is to blame for."""
        problem = reference_problem(task)
        if problem:
            raise InvalidArgument("task.reference_end_state_json", problem)
        try:
            async with RemoteEnvironment(await self.locate(task.env_id)) as env:
                return await attribute_group(env, task, group)
        except InvalidArgument as e:
            raise InvalidArgument("task", str(e)[:300]) from None

    async def attribute_one(self, task: task_pb2.Task, trajectory: tpb.Trajectory) -> apb.StepAttribution:
        check_attribute_request(task, trajectory)
        (attribution,) = await self.attribute(task, tpb.RolloutGroup(trajectories=[trajectory]))
        return attribution
