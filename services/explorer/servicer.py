"""Explorer: runs agents against environments through the Environment protocol.

- explore.requested -> exploration walks -> explore.completed (self-questioning's raw material)
- rollout.requested -> one GRPO group with the policy -> rollout.completed (self-navigating:
  a share of the group gets experiences from memory injected)

Every environment, built-in or a user's, is reached the same way: by its registered address."""

from __future__ import annotations

import logging

import grpc

from evolver.bus import Delivery, topology
from evolver.envs.client import RemoteEnvironment, domain_error
from evolver.envs.registry import environment_spec
from evolver.errors import FailedPrecondition, InvalidArgument, NotFound, PoisonMessage, Validator
from evolver.exploration import MAX_STEPS_PER_WALK, MAX_WALKS, run_walk, walk_to_pb
from evolver.limits import GROUP_SIZE_MAX
from evolver.policy_store import PolicySwitcher
from evolver.rollout import RolloutOptions, run_group
from evolver.rpc import Registration, channel, stub
from evolver.service import ServiceContext, ServiceParts, endpoint
from evolver.v1 import events_pb2
from evolver.v1 import explorer_service_pb2 as pb
from evolver.v1 import explorer_service_pb2_grpc as pb_grpc
from evolver.v1 import memory_service_pb2 as mem_pb
from evolver.v1 import memory_service_pb2_grpc as mem_grpc
from evolver.v1 import trajectory_pb2 as tpb
from services.explorer.policy import LazyPolicy

log = logging.getLogger(__name__)
MAX_GROUP = GROUP_SIZE_MAX


def rollout_options(req: events_pb2.RolloutRequested) -> RolloutOptions:
    v = Validator()
    # The job id becomes the group id, the rollout.completed message id and a KV key: without
    # one a whole group would run and then fail at publish, again on every retry.
    v.check(bool(req.job_id), "job_id", "must be non-empty")
    v.check(1 <= req.group_size <= MAX_GROUP, "group_size", f"must be between 1 and {MAX_GROUP}")
    v.check(0.0 <= req.guided_share <= 1.0, "guided_share", "must be between 0 and 1")
    v.check(req.temperature >= 0.0, "temperature", "must be >= 0")
    v.check(req.max_steps >= 0 and req.max_new_tokens >= 0, "max_steps", "bounds must be >= 0")
    v.check(bool(req.task.task_id and req.task.env_id), "task", "must carry task_id and env_id")
    v.raise_if_any()
    return RolloutOptions(group_size=req.group_size, guided_share=req.guided_share, temperature=req.temperature,
                          max_steps=req.max_steps or 6, max_new_tokens=req.max_new_tokens or 96,
                          keep_experience=req.keep_experience, max_tools_shown=req.max_tools_shown,
                          first_turn_prefix=req.first_turn_prefix,
                          allow_text_around_calls=req.allow_text_around_calls, seed=req.train_step)


def check_explore(req: events_pb2.ExploreRequested) -> None:
    """The bounds an exploration request must meet, whether it came by RPC or on the bus."""
    v = Validator()
    v.check(bool(req.env_id), "env_id", "must name a registered environment")
    v.check(1 <= req.walks <= MAX_WALKS, "walks", f"must be between 1 and {MAX_WALKS}")
    v.check(1 <= req.max_steps_per_walk <= MAX_STEPS_PER_WALK, "max_steps_per_walk",
            f"must be between 1 and {MAX_STEPS_PER_WALK}")
    v.raise_if_any()


class ExplorerServicer(pb_grpc.ExplorerServiceServicer):
    def __init__(self, rollout=None, walks=None):
        self._rollout, self._walks = rollout, walks

    async def Explore(self, request: pb.ExploreRequest, context) -> pb.ExploreResponse:
        req = events_pb2.ExploreRequested(request_id=f"rpc.{request.env_id}.{request.seed}", env_id=request.env_id,
                                          seed_task_id=request.seed_task_id, walks=request.walks,
                                          max_steps_per_walk=request.max_steps_per_walk, seed=request.seed)
        check_explore(req)
        try:
            return pb.ExploreResponse(walks=await self._walks(req))
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "seed_task_id") from None

    async def Rollout(self, request: pb.RolloutRequest, context) -> pb.RolloutResponse:
        if not request.task.task_id:
            raise InvalidArgument("task.task_id", "must be non-empty")
        req = events_pb2.RolloutRequested(job_id=f"rpc.{request.task.task_id}", task=request.task,
                                          group_size=request.group_size, guided_share=request.guided_share,
                                          temperature=request.temperature)
        try:
            return pb.RolloutResponse(group=await self._rollout(req))
        except grpc.aio.AioRpcError as e:  # the environment refused the task (unknown seed task, ...)
            raise domain_error(e, "task") from None


async def build(ctx: ServiceContext) -> ServiceParts:
    registry = await ctx.bus.kv(topology.ENVIRONMENTS_BUCKET)
    policy = LazyPolicy(ctx.settings)
    switcher: PolicySwitcher | None = None

    async def experiences_for(req: events_pb2.RolloutRequested) -> list[tuple[str, str]]:
        if req.guided_share <= 0 or req.evaluation or req.experience_top_k <= 0:
            return []
        async with channel(await endpoint(ctx, "memory")) as ch:
            r = await stub(mem_grpc.MemoryServiceStub, ch, 30.0).Retrieve(
                mem_pb.RetrieveRequest(query=req.task.query, k=req.experience_top_k, env_id=req.task.env_id))
        return [(x.experience.experience_id, f"{x.experience.when_to_use}: {x.experience.content}")
                for x in r.experiences]

    async def rollout(req: events_pb2.RolloutRequested) -> tpb.RolloutGroup:
        nonlocal switcher
        opts = rollout_options(req)
        backend = await policy.get()
        if switcher is None:
            switcher = PolicySwitcher(ctx.bus, backend)
        await switcher.ensure(req.run_id, req.policy_version)
        experiences = await experiences_for(req)
        async with RemoteEnvironment((await environment_spec(registry, req.task.env_id)).address) as env:
            trajectories = await run_group(backend, env, req.task, opts, group_id=req.job_id, experiences=experiences)
        return tpb.RolloutGroup(group_id=req.job_id, run_id=req.run_id, train_step=req.train_step,
                                task_id=req.task.task_id, trajectories=trajectories)

    async def on_rollout(d: Delivery) -> None:
        req: events_pb2.RolloutRequested = d.message  # type: ignore[assignment]
        try:
            group = await rollout(req)
        except (InvalidArgument, NotFound, FailedPrecondition) as e:
            raise PoisonMessage(str(e)) from None
        except grpc.aio.AioRpcError as e:
            error = domain_error(e, "task")
            if isinstance(error, (InvalidArgument, NotFound, FailedPrecondition)):
                raise PoisonMessage(str(error)) from None
            raise error from None
        await ctx.bus.publish("rollout.completed", events_pb2.RolloutCompleted(
            group=group, evaluation=req.evaluation, task=req.task, attribute=req.attribute), key=req.job_id)

    async def walks_for(req: events_pb2.ExploreRequested) -> list:
        walks = []
        async with RemoteEnvironment((await environment_spec(registry, req.env_id)).address) as env:
            for i in range(req.walks):
                walk = await run_walk(env, walk_id=f"{req.request_id}/w{i}", seed=req.seed * 1000 + i,
                                      max_steps=req.max_steps_per_walk, seed_task_id=req.seed_task_id)
                walks.append(walk_to_pb(walk))
        return walks

    async def on_explore(d: Delivery) -> None:
        req: events_pb2.ExploreRequested = d.message  # type: ignore[assignment]
        try:
            check_explore(req)
            walks = await walks_for(req)
        except (InvalidArgument, NotFound) as e:
            raise PoisonMessage(str(e)) from None
        except grpc.aio.AioRpcError as e:
            error = domain_error(e, "seed_task_id")
            if isinstance(error, (InvalidArgument, NotFound, FailedPrecondition)):
                raise PoisonMessage(str(error)) from None
            raise error from None
        await ctx.bus.publish("explore.completed", events_pb2.ExploreCompleted(
            request_id=req.request_id, env_id=req.env_id, seed_task_id=req.seed_task_id, walks=walks,
            max_calls_per_task=req.max_calls_per_task),
            key=req.request_id)

    return ServiceParts([Registration("evolver.v1.ExplorerService", ExplorerServicer(rollout, walks_for),
                                      pb_grpc.add_ExplorerServiceServicer_to_server)],
                        handlers={"explorer-explore-requested": on_explore,
                                  "explorer-rollout-requested": on_rollout})
