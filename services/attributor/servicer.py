"""Attributor: rollout.completed -> per-step GOOD/BAD labels by state progress -> rollout.attributed.

States come from replaying each trajectory's calls in fresh environment instances: the state
before each step, the end state, and counterfactual replays (each step dropped in turn) that
catch preconditions the visible state does not show. Evaluation groups and runs with
attribution off pass through unlabelled, so the trainer has one input stream."""

from __future__ import annotations

import json
import logging

from evolver.bus import Delivery, topology
from evolver.envs.client import RemoteEnvironment
from evolver.envs.registry import environment_spec
import grpc

from evolver.envs.client import domain_error
from evolver.errors import NotFound, PoisonMessage, Validator
from evolver.rollout import create_episode
from evolver.algorithms.attribution import needed_steps
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import attributor_service_pb2 as pb
from evolver.v1 import attributor_service_pb2_grpc as pb_grpc
from evolver.v1 import events_pb2, task_pb2
from evolver.v1 import trajectory_pb2 as tpb
from services.attributor.labeling import error_only_labels, label_steps, replay_calls

log = logging.getLogger(__name__)
# Counterfactual replays cost one replay per step; beyond this many steps labels use state alone.
MAX_COUNTERFACTUAL_STEPS = 8


class AttributorServicer(pb_grpc.AttributorServiceServicer):
    def __init__(self, registry=None):
        self.registry = registry

    async def Attribute(self, request: pb.AttributeRequest, context) -> pb.AttributeResponse:
        v = Validator()
        v.check(bool(request.task.env_id), "task.env_id", "must name a registered environment")
        v.check(len(request.trajectory.steps) > 0, "trajectory.steps", "must hold at least one step")
        v.check(not request.trajectory.infra_failure.reason, "trajectory.infra_failure",
                "an infrastructure-failed attempt is not the policy's behaviour: it gets no labels")
        v.check(reference_problem(request.task) is None, "task.reference_end_state_json",
                reference_problem(request.task) or "")
        v.raise_if_any()
        spec = await environment_spec(self.registry, request.task.env_id)
        try:
            async with RemoteEnvironment(spec.address) as env:
                (attribution,) = await attribute_group(env, request.task,
                                                       tpb.RolloutGroup(trajectories=[request.trajectory]))
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "task") from None
        return pb.AttributeResponse(attribution=attribution)


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


async def build(ctx: ServiceContext) -> ServiceParts:
    registry = await ctx.bus.kv(topology.ENVIRONMENTS_BUCKET)

    async def on_rollout_completed(d: Delivery) -> None:
        event: events_pb2.RolloutCompleted = d.message  # type: ignore[assignment]
        attributions = []
        if event.attribute and not event.evaluation:
            problem = reference_problem(event.task)
            if problem:
                raise PoisonMessage(f"task.reference_end_state_json: {problem}")
            try:
                spec = await environment_spec(registry, event.task.env_id)
            except NotFound as e:
                raise PoisonMessage(str(e)) from None
            async with RemoteEnvironment(spec.address) as env:
                attributions = await attribute_group(env, event.task, event.group)
        await ctx.bus.publish("rollout.attributed", events_pb2.RolloutAttributed(
            group=event.group, attributions=attributions, evaluation=event.evaluation, task=event.task),
            key=event.group.group_id)

    return ServiceParts([Registration("evolver.v1.AttributorService", AttributorServicer(registry),
                                      pb_grpc.add_AttributorServiceServicer_to_server)],
                        handlers={"attributor-rollout-completed": on_rollout_completed})
