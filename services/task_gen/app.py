"""Wiring: task_gen's registry, pool, counters and task index from settings and the bus, its
servicer and handlers."""

from __future__ import annotations

from evolver.bus import topology
from evolver.envs.client import check_conformance
from evolver.memory.embeddings import MiniLMEmbedder
from evolver.memory.store import open_store
from evolver.models.roles import RoleCallers
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import task_gen_service_pb2_grpc as pb_grpc
from services.task_gen.embedding_dedup import TaskVectorIndex
from services.task_gen.handlers import handlers
from services.task_gen.pool import TaskPool, TaskStatsBook
from services.task_gen.registry import EnvironmentRegistry
from services.task_gen.servicer import TaskGenServicer
from services.task_gen.task_gen import TaskGen


# Up to four <task> blocks of about 60 tokens each, with room to spare.
TASK_WRITER_MAX_TOKENS = 320


def open_task_store(ctx: ServiceContext):
    return open_store(ctx.settings.memory, ctx.settings.state_dir, "task_gen/task_vectors", "task_queries",
                      MiniLMEmbedder.dim)


async def build(ctx: ServiceContext) -> ServiceParts:
    async def publish(subject: str, message, key: str):
        return await ctx.bus.publish(subject, message, key=key)

    # Per template: what its reply format needs (a slow local model pays for every token).
    roles = RoleCallers(ctx.settings, max_tokens={"task_writer": TASK_WRITER_MAX_TOKENS, "solver": 192,
                                                  "feasibility": 64})
    task_gen = TaskGen(EnvironmentRegistry(await ctx.bus.kv(topology.ENVIRONMENTS_BUCKET), check_conformance),
                       TaskPool(await ctx.bus.kv(topology.TASKS_BUCKET)),
                       TaskStatsBook(await ctx.bus.kv(topology.TASK_STATS_BUCKET)),
                       TaskVectorIndex(open_task_store(ctx), MiniLMEmbedder), publish,
                       task_writer=lambda: roles.get("task_writer"),
                       feasibility_roles=lambda role, template: roles.get(role, template))

    async def close() -> None:
        task_gen.close()

    return ServiceParts([Registration("evolver.v1.TaskGenService", TaskGenServicer(task_gen),
                                      pb_grpc.add_TaskGenServiceServicer_to_server)],
                        handlers=handlers(task_gen, ctx.bus), close=close)
