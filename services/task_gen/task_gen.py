"""task_gen's domain: the environment registry, self-questioning (a GenerateTasks request ->
explore.requested events; explore.completed -> verified tasks in the pool) and the curriculum
counters from training rollouts."""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Awaitable, Callable

from evolver.agent.exploration import MAX_STEPS_PER_WALK, MAX_WALKS
from evolver.envs.client import RemoteEnvironment
from evolver.errors import InvalidArgument, NotFound, Validator
from evolver.limits import EXPLORATIONS_MAX, ID_MAX_CHARS
from evolver.v1 import environment_pb2 as env_pb
from evolver.v1 import events_pb2, task_pb2
from services.task_gen.embedding_dedup import TaskVectorIndex
from services.task_gen.pool import TaskPool, TaskStatsBook
from services.task_gen.registry import EnvironmentRegistry
from services.task_gen.synthesis import FeasibilityRoles, TaskWriterRole, synthesize

log = logging.getLogger(__name__)
BUILTIN_IDS = {"bfcl"}
# (subject, message, key) -> published: the bus, wired in app.py.
Publish = Callable[[str, object, str], Awaitable[object]]


def check_generate(env_id: str, explorations: int, walks_per_exploration: int, max_steps_per_walk: int,
                   max_calls_per_task: int, task_writer: int = 0, explorer: int = 0, feasibility: int = 0) -> None:
    v = Validator()
    v.check(task_writer in task_pb2.TaskWriterKind.values(), "task_writer",
            f"must be a TaskWriterKind (got {str(task_writer)[:12]})")
    v.check(explorer in task_pb2.ExplorerKind.values(), "explorer", f"must be an ExplorerKind (got {str(explorer)[:12]})")
    v.check(feasibility in task_pb2.FeasibilityKind.values(), "feasibility",
            f"must be a FeasibilityKind (got {str(feasibility)[:12]})")
    v.check(bool(env_id), "env_id", "must name a registered environment")
    v.check(1 <= explorations <= EXPLORATIONS_MAX, "explorations", f"must be between 1 and {EXPLORATIONS_MAX}")
    v.check(1 <= walks_per_exploration <= MAX_WALKS, "walks_per_exploration", f"must be between 1 and {MAX_WALKS}")
    v.check(1 <= max_steps_per_walk <= MAX_STEPS_PER_WALK, "max_steps_per_walk",
            f"must be between 1 and {MAX_STEPS_PER_WALK}")
    v.check(0 <= max_calls_per_task <= 16, "max_calls_per_task", "must be between 0 (default) and 16")
    v.raise_if_any()


class TaskGen:
    def __init__(self, registry: EnvironmentRegistry, pool: TaskPool, stats: TaskStatsBook,
                 index: TaskVectorIndex, publish: Publish, task_writer: TaskWriterRole | None = None,
                 feasibility_roles: FeasibilityRoles | None = None):
        self.registry, self.pool, self.stats, self.index = registry, pool, stats, index
        self.publish = publish
        self.task_writer = task_writer
        self.feasibility_roles = feasibility_roles

    # --- environments --------------------------------------------------------------------------

    async def register(self, env_id: str, address: str, display_name: str,
                       profile: env_pb.EnvironmentProfile | None = None) -> env_pb.EnvironmentSpec:
        kind = env_pb.ENVIRONMENT_KIND_BUILTIN if env_id in BUILTIN_IDS else env_pb.ENVIRONMENT_KIND_USER
        return await self.registry.register(env_id, address, display_name, kind, profile)

    async def unregister(self, env_id: str) -> None:
        if not env_id:
            raise InvalidArgument("env_id", "must name a registered environment")
        await self.registry.unregister(env_id)

    async def environments(self) -> list[env_pb.EnvironmentSpec]:
        return await self.registry.list()

    # --- self-questioning ----------------------------------------------------------------------

    async def request_explorations(self, env_id: str, *, explorations: int, walks_per_exploration: int,
                                   max_steps_per_walk: int, max_calls_per_task: int, seed: int,
                                   requester_id: str = "", task_writer: int = 0, explorer: int = 0,
                                   feasibility: int = 0) -> list[str]:
        """One explore.requested per exploration, from the environment's train seed tasks in turn;
        an environment without any is explored from its default initial state (no human-written
        task is needed)."""
        check_generate(env_id, explorations, walks_per_exploration, max_steps_per_walk, max_calls_per_task, task_writer,
                       explorer, feasibility)
        spec = await self.registry.get(env_id)
        async with RemoteEnvironment(spec.address) as env:
            seeds = await env.seed_tasks("train")  # never evaluation tasks (spec B3)
        ids = []
        # Ids carry who asked: a second run on the same environment and seed must not be dropped
        # as a duplicate of the first run's requests.
        key = requester_id or f"gen-{uuid.uuid4().hex[:12]}"
        for i in range(explorations):
            seed_task_id = seeds[(seed + i) % len(seeds)].seed_task_id if seeds else ""  # "": the default state
            rid = f"{key}.{env_id}.{seed}.{i}"
            if len(rid) > ID_MAX_CHARS:  # still unique per (requester, env, seed, i)
                rid = "x" + hashlib.sha256(rid.encode()).hexdigest()[:40]
            await self.publish("explore.requested", events_pb2.ExploreRequested(
                request_id=rid, env_id=env_id, seed_task_id=seed_task_id,
                walks=walks_per_exploration, max_steps_per_walk=max_steps_per_walk,
                seed=seed + i, max_calls_per_task=max_calls_per_task, task_writer=task_writer,
                explorer=explorer, feasibility=feasibility), rid)
            ids.append(rid)
        return ids

    async def accept_exploration(self, event: events_pb2.ExploreCompleted) -> events_pb2.TasksAccepted:
        """Verified tasks from an exploration's walks, put in the pool."""
        spec = await self.registry.get(event.env_id)
        # Near-duplicates within this environment only: the same words mean another task in another
        # environment (its pool is its own; the embedding index is per environment too).
        existing = [t for t in await self.pool.all() if t.env_id == event.env_id]
        async with RemoteEnvironment(spec.address) as env:
            made = await synthesize(env, event, [t.query for t in existing],
                                    embedding_filter=lambda tasks: self.index.filter_new(event.env_id, tasks),
                                    task_writer=self.task_writer, profile=spec.profile,
                                    feasibility_roles=self.feasibility_roles)
        accepted, reasons = made.accepted, made.reasons
        for task in accepted:
            await self.pool.put(task)  # idempotent: ids are content-derived
        log.info("exploration %s: %d tasks accepted, %d rejected", event.request_id, len(accepted), len(reasons))
        return events_pb2.TasksAccepted(env_id=event.env_id, tasks=accepted, explore_request_id=event.request_id,
                                        candidates=len(accepted) + len(reasons), rejection_reasons=reasons[:100],
                                        role_usage=[*event.role_usage, *made.role_usage])

    # --- the pool and the curriculum -----------------------------------------------------------

    async def record_group(self, event: events_pb2.RolloutCompleted) -> None:
        if event.evaluation or event.demonstration:
            return  # evaluation attempts and demonstrations never steer the training curriculum
        valid = [t for t in event.group.trajectories if not t.infra_failure.reason]
        await self.stats.record(event.group.group_id, event.group.task_id, len(valid),
                                sum(1 for t in valid if t.reward.success))

    async def tasks(self, env_id: str = "", source: int = 0, split: str = "") -> list[tuple[task_pb2.Task, task_pb2.TaskStats]]:
        tasks = [t for t in await self.pool.all()
                 if (not env_id or t.env_id == env_id) and (not source or t.source == source)
                 and (not split or t.split == split)]
        stats = await self.stats.totals()
        return [(t, stats.get(t.task_id, task_pb2.TaskStats(task_id=t.task_id))) for t in tasks]

    async def task(self, task_id: str) -> tuple[task_pb2.Task, task_pb2.TaskStats]:
        if not task_id:
            raise InvalidArgument("task_id", "must be non-empty")
        task = await self.pool.get(task_id)
        if task is None:
            raise NotFound(f"task {task_id!r} is not in the pool")
        stats = await self.stats.totals()
        return task, stats.get(task.task_id, task_pb2.TaskStats(task_id=task.task_id))

    def close(self) -> None:
        close_store = getattr(self.index.store, "close", None)
        if close_store:
            close_store()
