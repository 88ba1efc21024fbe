"""Wiring: memory's store from settings, its servicer and handler."""

from __future__ import annotations

from evolver.memory.embeddings import MiniLMEmbedder
from evolver.memory.store import ExperienceStore, open_store
from evolver.models.roles import RoleCallers
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import memory_service_pb2_grpc as pb_grpc
from services.memory.handlers import handlers
from services.memory.memory import Memory
from services.memory.servicer import MemoryServicer


def open_experience_store(ctx: ServiceContext) -> ExperienceStore:
    return open_store(ctx.settings.memory, ctx.settings.state_dir, "memory/experiences", "experiences",
                      MiniLMEmbedder.dim)


async def build(ctx: ServiceContext) -> ServiceParts:
    roles = RoleCallers(ctx.settings, max_tokens={"experience_extractor": 384, "experience_validator": 256,
                                                  "experience_rewriter": 256})
    memory = Memory(open_experience_store(ctx), MiniLMEmbedder, ctx.settings.memory.dedup_threshold,
                    callers=lambda template: roles.get("experience_extractor", template))

    async def close() -> None:
        memory.close()

    return ServiceParts([Registration("evolver.v1.MemoryService", MemoryServicer(memory),
                                      pb_grpc.add_MemoryServiceServicer_to_server)],
                        handlers=handlers(memory, ctx.bus), close=close)
