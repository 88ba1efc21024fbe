"""The task pool and the curriculum counters, both in NATS KV (durable: not process memory)."""

from __future__ import annotations

from services.task_gen.registry import KeyValue
from evolver.v1 import task_pb2


class TaskPool:
    """Accepted tasks in NATS KV (durable: not process memory)."""

    def __init__(self, kv: KeyValue):
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

    def __init__(self, kv: KeyValue):
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
