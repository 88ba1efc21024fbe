"""Wiring: the attributor's registry lookup, its servicer and handler."""

from __future__ import annotations

from evolver.bus import topology
from evolver.envs.registry import environment_spec
from evolver.models.roles import RoleCallers
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import attributor_service_pb2_grpc as pb_grpc
from services.attributor.attribution import Attributor
from services.attributor.handlers import handlers

# The ceiling; each call asks for what its trajectory's steps need (llm_labels.reply_tokens).
STEP_ATTRIBUTOR_MAX_TOKENS = 1024
from services.attributor.servicer import AttributorServicer


async def build(ctx: ServiceContext) -> ServiceParts:
    registry = await ctx.bus.kv(topology.ENVIRONMENTS_BUCKET)

    async def locate(env_id: str) -> str:
        return (await environment_spec(registry, env_id)).address

    roles = RoleCallers(ctx.settings, max_tokens={"step_attributor": STEP_ATTRIBUTOR_MAX_TOKENS})
    attributor = Attributor(locate, lambda: roles.get("step_attributor"))
    return ServiceParts([Registration("evolver.v1.AttributorService", AttributorServicer(attributor),
                                      pb_grpc.add_AttributorServiceServicer_to_server)],
                        handlers=handlers(attributor, ctx.bus))
