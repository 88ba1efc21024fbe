"""Memory: experiences from completed training rollouts, stored in Qdrant, retrieved by task
query over gRPC."""

from __future__ import annotations

import asyncio

from evolver.bus import Delivery
from evolver.memory.experiences import FAILURE, SUCCESS, Experience, RuleExtractor
from evolver.memory.store import ExperienceStore, dedup_new, open_store
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import events_pb2
from evolver.v1 import experience_pb2 as exp_pb
from evolver.v1 import memory_service_pb2 as pb
from evolver.v1 import memory_service_pb2_grpc as pb_grpc
from services.memory.distill import trajectory_views
from services.memory.retrieval import validate_retrieve

KINDS = {SUCCESS: exp_pb.EXPERIENCE_KIND_SUCCESS, FAILURE: exp_pb.EXPERIENCE_KIND_FAILURE}


def to_pb(e: Experience) -> exp_pb.Experience:
    return exp_pb.Experience(experience_id=e.experience_id, kind=KINDS[e.kind], when_to_use=e.when_to_use,
                             content=e.content, env_id=e.env_id, source_task_id=e.source_task_id)


class Memory:
    """The store plus a lazily loaded embedder (the model loads on first use, not at start)."""

    def __init__(self, store: ExperienceStore, embedder_factory, dedup_threshold: float = 0.9):
        self.store = store
        self._factory = embedder_factory
        self._embedder = None
        self._lock = asyncio.Lock()
        self.dedup_threshold = dedup_threshold
        self.groups_processed = 0

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._embedder is None:
            self._embedder = await asyncio.to_thread(self._factory)
        return await asyncio.to_thread(self._embedder.embed, texts)

    async def add_group(self, event: events_pb2.RolloutCompleted) -> list[Experience]:
        views = trajectory_views(event)
        experiences = RuleExtractor().extract(event.task.env_id, event.task.task_id, views) if views else []
        async with self._lock:  # one writer: dedup sees everything stored before it
            kept: list[Experience] = []
            if experiences:
                vectors = await self.embed([f"{e.when_to_use} {e.content}" for e in experiences])
                kept, kept_vectors = dedup_new(self.store, experiences, vectors, self.dedup_threshold)
                if kept:
                    await asyncio.to_thread(self.store.upsert, kept, kept_vectors)
            self.groups_processed += 1
        return kept


class MemoryServicer(pb_grpc.MemoryServiceServicer):
    def __init__(self, memory: Memory | None = None):
        self.memory = memory

    async def Retrieve(self, request: pb.RetrieveRequest, context) -> pb.RetrieveResponse:
        validate_retrieve(request.query, request.k)
        if self.memory is None:
            return pb.RetrieveResponse()
        (vector,) = await self.memory.embed([request.query])
        hits = await asyncio.to_thread(self.memory.store.search, vector, request.k, request.env_id)
        return pb.RetrieveResponse(experiences=[exp_pb.RetrievedExperience(experience=to_pb(e), similarity=s)
                                                for e, s in hits])

    async def Stats(self, request: pb.StatsRequest, context) -> pb.StatsResponse:
        if self.memory is None:
            return pb.StatsResponse()
        store = self.memory.store
        return pb.StatsResponse(experiences=store.count(), success_experiences=store.count(SUCCESS),
                                failure_experiences=store.count(FAILURE),
                                groups_processed=self.memory.groups_processed)


def open_experience_store(ctx: ServiceContext) -> ExperienceStore:
    from evolver.memory.embeddings import MiniLMEmbedder
    return open_store(ctx.settings.memory, ctx.settings.state_dir, "memory/experiences", "experiences",
                      MiniLMEmbedder.dim)


async def build(ctx: ServiceContext) -> ServiceParts:
    from evolver.memory.embeddings import MiniLMEmbedder
    memory = Memory(open_experience_store(ctx), MiniLMEmbedder, ctx.settings.memory.dedup_threshold)

    async def on_rollout_completed(d: Delivery) -> None:
        event: events_pb2.RolloutCompleted = d.message  # type: ignore[assignment]
        kept = await memory.add_group(event)
        if kept:
            await ctx.bus.publish("experience.stored", events_pb2.ExperienceStored(
                source_group_id=event.group.group_id, experiences=[to_pb(e) for e in kept]),
                key=event.group.group_id)

    async def close() -> None:
        close_store = getattr(memory.store, "close", None)
        if close_store:
            close_store()

    return ServiceParts([Registration("evolver.v1.MemoryService", MemoryServicer(memory),
                                      pb_grpc.add_MemoryServiceServicer_to_server)],
                        handlers={"memory-rollout-completed": on_rollout_completed}, close=close)
