"""Explorer: exploration walks (explore.requested -> explore.completed) through the Environment
protocol, for any registered environment. Rollouts arrive with the training loop."""

from __future__ import annotations

from evolver.bus import Delivery, topology
from evolver.envs.client import RemoteEnvironment
from evolver.errors import PoisonMessage
from evolver.exploration import run_walk, walk_to_pb
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import environment_pb2 as env_pb
from evolver.v1 import events_pb2
from evolver.v1 import explorer_service_pb2_grpc as pb_grpc

MAX_WALKS, MAX_STEPS = 32, 64


class ExplorerServicer(pb_grpc.ExplorerServiceServicer):
    pass


async def build(ctx: ServiceContext) -> ServiceParts:
    registry = await ctx.bus.kv(topology.ENVIRONMENTS_BUCKET)

    async def on_explore(d: Delivery) -> None:
        req: events_pb2.ExploreRequested = d.message  # type: ignore[assignment]
        raw = await registry.get(req.env_id)
        if raw is None:
            raise PoisonMessage(f"environment {req.env_id!r} is not registered")
        if not (1 <= req.walks <= MAX_WALKS and 1 <= req.max_steps_per_walk <= MAX_STEPS):
            raise PoisonMessage(f"walks must be 1..{MAX_WALKS} and max_steps_per_walk 1..{MAX_STEPS}")
        spec = env_pb.EnvironmentSpec.FromString(raw)
        walks = []
        async with RemoteEnvironment(spec.address) as env:
            for i in range(req.walks):
                walk = await run_walk(env, walk_id=f"{req.request_id}/w{i}", seed=req.seed * 1000 + i,
                                      max_steps=req.max_steps_per_walk, seed_task_id=req.seed_task_id)
                walks.append(walk_to_pb(walk))
        await ctx.bus.publish("explore.completed", events_pb2.ExploreCompleted(
            request_id=req.request_id, env_id=req.env_id, seed_task_id=req.seed_task_id, walks=walks),
            key=req.request_id)

    return ServiceParts([Registration("evolver.v1.ExplorerService", ExplorerServicer(),
                                      pb_grpc.add_ExplorerServiceServicer_to_server)],
                        handlers={"explorer-explore-requested": on_explore})
