"""Wiring: the explorer's collaborators from settings and the bus, its servicer and handlers."""

from __future__ import annotations

from evolver.bus import topology
from evolver.envs.registry import environment_spec
from evolver.models.policy_store import PolicySwitcher
from evolver.models.roles import RoleCallers
from evolver.rpc import Registration, channel, stub
from evolver.service import ServiceContext, ServiceParts, endpoint
from evolver.v1 import explorer_service_pb2_grpc as pb_grpc
from evolver.v1 import memory_service_pb2 as mem_pb
from evolver.v1 import memory_service_pb2_grpc as mem_grpc
from services.explorer.explorer import Explorer, Retrieved
from services.explorer.handlers import handlers
from services.explorer.policy import LazyPolicy
from services.explorer.servicer import ExplorerServicer

# A short paragraph of reasoning and the <reward> line.
JUDGE_MAX_TOKENS = 256
# A line of reasoning and one call.
EXPLORER_MAX_TOKENS = 128


async def build(ctx: ServiceContext) -> ServiceParts:
    registry = await ctx.bus.kv(topology.ENVIRONMENTS_BUCKET)

    async def locate(env_id: str) -> str:
        return (await environment_spec(registry, env_id)).address

    async def profile_of(env_id: str):
        return (await environment_spec(registry, env_id)).profile

    async def retrieve(query: str, k: int, env_id: str, rewrite: bool = False) -> Retrieved:
        async with channel(await endpoint(ctx, "memory")) as ch:
            # A rewrite is an LLM call in memory: it gets the role's time, not a lookup's.
            r = await stub(mem_grpc.MemoryServiceStub, ch, 300.0 if rewrite else 30.0).Retrieve(
                mem_pb.RetrieveRequest(query=query, k=k, env_id=env_id, rewrite=rewrite))
        return Retrieved([(x.experience.experience_id, f"{x.experience.when_to_use}: {x.experience.content}")
                          for x in r.experiences], r.rewritten_context, list(r.role_usage))

    roles = RoleCallers(ctx.settings, max_tokens={"judge": JUDGE_MAX_TOKENS, "explorer": EXPLORER_MAX_TOKENS})
    explorer = Explorer(LazyPolicy(ctx.settings), locate, retrieve,
                        switcher_factory=lambda backend: PolicySwitcher(ctx.bus, backend),
                        judge=lambda: roles.get("judge"), explorer_role=lambda: roles.get("explorer"),
                        profile_of=profile_of)
    return ServiceParts([Registration("evolver.v1.ExplorerService", ExplorerServicer(explorer),
                                      pb_grpc.add_ExplorerServiceServicer_to_server)],
                        handlers=handlers(explorer, ctx.bus))
