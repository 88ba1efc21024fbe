"""The attributor's domain: per-step GOOD/BAD labels for a rollout group by state progress,
or by the step_attributor LLM role (a run's attributing.labeler: llm, or hybrid where the task has
no reference end state), falling back to the state-progress labels when its reply is unusable.

States come from replaying each trajectory's calls in fresh environment instances: the state
before each step, the end state, and counterfactual replays (each step dropped in turn) that
catch preconditions the visible state does not show. The labelling rules are in labeling.py."""

from __future__ import annotations

import asyncio
import json
from typing import Awaitable, Callable

from evolver.agent.rollout import create_episode
from evolver.algorithms.attribution import needed_steps
from evolver.envs.client import RemoteEnvironment
from evolver.errors import FailedPrecondition, InvalidArgument, Validator
from evolver.models.roles import RoleCaller, RoleCounters
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import llm_role_pb2
from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb
from services.attributor import llm_labels
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


async def verifiable_labels(env: RemoteEnvironment, task: task_pb2.Task, traj: tpb.Trajectory,
                            reference) -> tuple[list[tuple[bool, str]], int]:
    """State-progress labels (error-only ones where the task has no reference end state)."""
    if reference is None:
        return error_only_labels(traj), apb.ATTRIBUTION_METHOD_UNSPECIFIED
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
    return label_steps(traj, states, reference, list(task.expected_answer_facts), needed), \
        apb.ATTRIBUTION_METHOD_STATE_PROGRESS


def _labels_pb(labels: list[bool]) -> list[int]:
    return [apb.STEP_LABEL_GOOD if good else apb.STEP_LABEL_BAD for good in labels]


async def attribute_group(env: RemoteEnvironment, task: task_pb2.Task, group: tpb.RolloutGroup, *,
                          labeler: int = apb.STEP_LABELER_STATE_PROGRESS, skip: int = apb.STEP_LABEL_SKIP_UNSPECIFIED,
                          llm: RoleCaller | None = None,
                          counters: RoleCounters | None = None) -> list[apb.StepAttribution]:
    reference = json.loads(task.reference_end_state_json) if task.reference_end_state_json else None
    valid = [t for t in group.trajectories if not t.infra_failure.reason]  # the rest: not the policy's doing
    verifiable = [await verifiable_labels(env, task, t, reference) for t in valid]
    out = [apb.StepAttribution(trajectory_id=t.trajectory_id, method=method, labels=_labels_pb([g for g, _ in labels]),
                               reasons=[why for _, why in labels]) for t, (labels, method) in zip(valid, verifiable)]
    if not llm_labels.uses_llm(labeler, reference is not None):
        return out
    if llm is None or counters is None:
        raise FailedPrecondition("the LLM step labeller was asked for, but no step_attributor role is configured")
    rewards = [t.reward.score for t in valid]

    async def relabel(traj: tpb.Trajectory, a: apb.StepAttribution) -> None:
        verified = list(a.labels)
        why = llm_labels.skip_reason(skip, rewards, traj.reward.score)
        if why:
            counters.skipped += 1
            good = traj.reward.score > llm_labels.SUCCESS_THRESHOLD
            labels, reasons = [good] * len(traj.steps), [f"skipped ({why}): the outcome's sign"] * len(traj.steps)
        else:
            n = len(traj.steps)
            labels = await llm.ask(counters, lambda reply: llm_labels.parse_labels(reply, n),
                                   max_tokens=llm_labels.reply_tokens(n), **llm_labels.prompt_fields(task.query, traj))
            if labels is None:  # unparseable or failed: the verifiable labels stand, counted
                counters.fallbacks += 1
                return
            reasons = ["LLM judgment"] * n
        del a.labels[:], a.reasons[:]
        a.labels.extend(_labels_pb(labels))
        a.reasons.extend(reasons)
        a.method, a.prompt_version = apb.ATTRIBUTION_METHOD_LLM_JUDGE, llm.prompt_version
        if reference is not None:
            a.state_progress_labels.extend(verified)

    await asyncio.gather(*(relabel(t, a) for t, a in zip(valid, out)))
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


# The step_attributor role's caller, built on first use (the local model loads only then).
StepAttributorRole = Callable[[], Awaitable[RoleCaller]]


class Attributor:
    def __init__(self, locate: Locate, step_attributor: StepAttributorRole | None = None):
        self.locate = locate
        self.step_attributor = step_attributor

    async def attribute(self, task: task_pb2.Task, group: tpb.RolloutGroup, *,
                        labeler: int = apb.STEP_LABELER_STATE_PROGRESS, skip: int = apb.STEP_LABEL_SKIP_UNSPECIFIED,
                        ) -> tuple[list[apb.StepAttribution], list[llm_role_pb2.RoleUsage]]:
        """Labels for every trajectory of a group that the policy is to blame for, and what the
        LLM role cost (empty when it was not called)."""
        problem = reference_problem(task)
        if problem:
            raise InvalidArgument("task.reference_end_state_json", problem)
        llm, counters = None, None
        if llm_labels.uses_llm(labeler, bool(task.reference_end_state_json)):
            if self.step_attributor is None:
                raise FailedPrecondition("this attributor has no step_attributor role (llm_roles)")
            llm, counters = await self.step_attributor(), RoleCounters("step_attributor")
        try:
            async with RemoteEnvironment(await self.locate(task.env_id)) as env:
                out = await attribute_group(env, task, group, labeler=labeler, skip=skip, llm=llm, counters=counters)
        except InvalidArgument as e:
            raise InvalidArgument("task", str(e)[:300]) from None
        return out, [counters.to_pb()] if counters else []

    async def attribute_one(self, task: task_pb2.Task, trajectory: tpb.Trajectory) -> apb.StepAttribution:
        check_attribute_request(task, trajectory)
        (attribution,), _ = await self.attribute(task, tpb.RolloutGroup(trajectories=[trajectory]))
        return attribution
