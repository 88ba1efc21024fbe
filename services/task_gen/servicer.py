"""TaskGen: the environment registry, self-questioning (GenerateTasks -> explore.requested;
explore.completed -> verified tasks), and the task pool in NATS KV."""

from __future__ import annotations

import hashlib
import logging
import uuid

from evolver.bus import Delivery, topology
from evolver.envs.client import RemoteEnvironment, check_conformance
from evolver.exploration import MAX_STEPS_PER_WALK, MAX_WALKS
from evolver.limits import EXPLORATIONS_MAX, ID_MAX_CHARS
from evolver.errors import FailedPrecondition, InvalidArgument, NotFound, PoisonMessage, Validator
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import environment_pb2 as env_pb
from evolver.v1 import events_pb2, task_pb2
from evolver.v1 import task_gen_service_pb2 as pb
from evolver.v1 import task_gen_service_pb2_grpc as pb_grpc
from evolver.memory.embeddings import MiniLMEmbedder
from evolver.memory.store import open_store
from services.task_gen.embedding_dedup import TaskVectorIndex
from services.task_gen.registry import EnvironmentRegistry
from services.task_gen.synthesis import synthesize

log = logging.getLogger(__name__)
BUILTIN_IDS = {"bfcl"}


class TaskPool:
    """Accepted tasks in NATS KV (durable: not process memory)."""

    def __init__(self, kv):
        self.kv = kv

    async def put(self, task: task_pb2.Task) -> None:
        await self.kv.put(task.task_id, task.SerializeToString())

    async def get(self, task_id: str) -> task_pb2.Task | None:
        raw = await self.kv.get(task_id)
        return task_pb2.Task.FromString(raw) if raw is not None else None

    async def all(self) -> list[task_pb2.Task]:
        return [t for t in [await self.get(k) for k in await self.kv.keys()] if t is not None]


class TaskStatsBook:
    """Curriculum counters, one KV entry per rollout group (so a redelivered group counts once);
    per-task totals are summed on read."""

    def __init__(self, kv):
        self.kv = kv

    async def record(self, group_id: str, task_id: str, attempts: int, successes: int) -> None:
        await self.kv.put(group_id, task_pb2.TaskStats(task_id=task_id, attempts=attempts,
                                                       successes=successes).SerializeToString())

    async def totals(self) -> dict[str, task_pb2.TaskStats]:
        out: dict[str, task_pb2.TaskStats] = {}
        for key in await self.kv.keys():
            raw = await self.kv.get(key)
            if raw is None:
                continue
            s = task_pb2.TaskStats.FromString(raw)
            t = out.setdefault(s.task_id, task_pb2.TaskStats(task_id=s.task_id))
            t.attempts += s.attempts
            t.successes += s.successes
        return out


class TaskGenServicer(pb_grpc.TaskGenServiceServicer):
    def __init__(self, registry: EnvironmentRegistry, pool: TaskPool | None = None, bus=None,
                 stats: TaskStatsBook | None = None):
        self.registry, self.pool, self.bus, self.stats = registry, pool, bus, stats

    async def _stats(self) -> dict[str, task_pb2.TaskStats]:
        return await self.stats.totals() if self.stats else {}

    async def RegisterEnvironment(self, request: pb.RegisterEnvironmentRequest, context) -> pb.RegisterEnvironmentResponse:
        kind = env_pb.ENVIRONMENT_KIND_BUILTIN if request.env_id in BUILTIN_IDS else env_pb.ENVIRONMENT_KIND_USER
        spec = await self.registry.register(request.env_id, request.address, request.display_name, kind)
        return pb.RegisterEnvironmentResponse(environment=spec)

    async def UnregisterEnvironment(self, request: pb.UnregisterEnvironmentRequest,
                                    context) -> pb.UnregisterEnvironmentResponse:
        if not request.env_id:
            raise InvalidArgument("env_id", "must name a registered environment")
        await self.registry.unregister(request.env_id)
        return pb.UnregisterEnvironmentResponse()

    async def ListEnvironments(self, request: pb.ListEnvironmentsRequest, context) -> pb.ListEnvironmentsResponse:
        return pb.ListEnvironmentsResponse(environments=await self.registry.list())

    async def GenerateTasks(self, request: pb.GenerateTasksRequest, context) -> pb.GenerateTasksResponse:
        v = Validator()
        v.check(bool(request.env_id), "env_id", "must name a registered environment")
        v.check(1 <= request.explorations <= EXPLORATIONS_MAX, "explorations",
                f"must be between 1 and {EXPLORATIONS_MAX}")
        v.check(1 <= request.walks_per_exploration <= MAX_WALKS, "walks_per_exploration",
                f"must be between 1 and {MAX_WALKS}")
        v.check(1 <= request.max_steps_per_walk <= MAX_STEPS_PER_WALK, "max_steps_per_walk",
                f"must be between 1 and {MAX_STEPS_PER_WALK}")
        v.check(0 <= request.max_calls_per_task <= 16, "max_calls_per_task", "must be between 0 (default) and 16")
        v.raise_if_any()
        spec = await self.registry.get(request.env_id)
        async with RemoteEnvironment(spec.address) as env:
            seeds = await env.seed_tasks("train")  # never evaluation tasks (spec B3)
        if not seeds:
            raise FailedPrecondition(f"environment {request.env_id} has no train seed tasks to explore from")
        ids = []
        # Ids carry who asked: a second run on the same environment and seed must not be dropped
        # as a duplicate of the first run's requests.
        key = request.requester_id or f"gen-{uuid.uuid4().hex[:12]}"
        for i in range(request.explorations):
            seed = seeds[(request.seed + i) % len(seeds)]
            rid = f"{key}.{request.env_id}.{request.seed}.{i}"
            if len(rid) > ID_MAX_CHARS:  # still unique per (requester, env, seed, i)
                rid = "x" + hashlib.sha256(rid.encode()).hexdigest()[:40]
            await self.bus.publish("explore.requested", events_pb2.ExploreRequested(
                request_id=rid, env_id=request.env_id, seed_task_id=seed.seed_task_id,
                walks=request.walks_per_exploration, max_steps_per_walk=request.max_steps_per_walk,
                seed=request.seed + i, max_calls_per_task=request.max_calls_per_task), key=rid)
            ids.append(rid)
        return pb.GenerateTasksResponse(explore_request_ids=ids)

    async def ListTasks(self, request: pb.ListTasksRequest, context) -> pb.ListTasksResponse:
        tasks = [t for t in await self.pool.all()
                 if (not request.env_id or t.env_id == request.env_id)
                 and (not request.source or t.source == request.source)
                 and (not request.split or t.split == request.split)]
        stats = await self._stats()
        return pb.ListTasksResponse(tasks=tasks, stats=[stats.get(t.task_id, task_pb2.TaskStats(task_id=t.task_id))
                                                        for t in tasks])

    async def GetTask(self, request: pb.GetTaskRequest, context) -> pb.GetTaskResponse:
        if not request.task_id:
            raise InvalidArgument("task_id", "must be non-empty")
        task = await self.pool.get(request.task_id) if self.pool else None
        if task is None:
            raise NotFound(f"task {request.task_id!r} is not in the pool")
        stats = await self._stats()
        return pb.GetTaskResponse(task=task, stats=stats.get(task.task_id, task_pb2.TaskStats(task_id=task.task_id)))


async def build(ctx: ServiceContext) -> ServiceParts:
    registry = EnvironmentRegistry(await ctx.bus.kv(topology.ENVIRONMENTS_BUCKET), check_conformance)
    pool = TaskPool(await ctx.bus.kv(topology.TASKS_BUCKET))
    stats = TaskStatsBook(await ctx.bus.kv(topology.TASK_STATS_BUCKET))
    index = TaskVectorIndex(open_task_store(ctx), MiniLMEmbedder)

    async def on_explore_completed(d: Delivery) -> None:
        event: events_pb2.ExploreCompleted = d.message  # type: ignore[assignment]
        try:
            spec = await registry.get(event.env_id)
        except NotFound as e:
            raise PoisonMessage(str(e)) from None
        existing = await pool.all()
        async with RemoteEnvironment(spec.address) as env:
            accepted, reasons = await synthesize(env, event, [t.query for t in existing],
                                                 embedding_filter=lambda tasks: index.filter_new(event.env_id, tasks))
        for task in accepted:
            await pool.put(task)  # idempotent: ids are content-derived
        log.info("exploration %s: %d tasks accepted, %d rejected", event.request_id, len(accepted), len(reasons))
        await ctx.bus.publish("tasks.accepted", events_pb2.TasksAccepted(
            env_id=event.env_id, tasks=accepted, explore_request_id=event.request_id,
            candidates=len(accepted) + len(reasons), rejection_reasons=reasons[:100]), key=event.request_id)

    async def on_rollout_completed(d: Delivery) -> None:
        event: events_pb2.RolloutCompleted = d.message  # type: ignore[assignment]
        if event.evaluation:
            return  # evaluation attempts never steer the training curriculum
        valid = [t for t in event.group.trajectories if not t.infra_failure.reason]
        await stats.record(event.group.group_id, event.group.task_id, len(valid),
                           sum(1 for t in valid if t.reward.success))

    async def close() -> None:
        close_store = getattr(index.store, "close", None)
        if close_store:
            close_store()

    return ServiceParts([Registration("evolver.v1.TaskGenService", TaskGenServicer(registry, pool, ctx.bus, stats),
                                      pb_grpc.add_TaskGenServiceServicer_to_server)],
                        handlers={"task-gen-explore-completed": on_explore_completed,
                                  "task-gen-rollout-completed": on_rollout_completed}, close=close)


def open_task_store(ctx: ServiceContext):
    return open_store(ctx.settings.memory, ctx.settings.state_dir, "task_gen/task_vectors", "task_queries",
                      MiniLMEmbedder.dim)
