"""Memory's domain: experiences distilled from completed training rollouts, kept in a vector
store (Qdrant) and retrieved by task query. The embedding model loads on first use, not at
start."""

from __future__ import annotations

import asyncio

from evolver.memory.experiences import FAILURE, SUCCESS, Experience, RuleExtractor
from evolver.memory.store import ExperienceStore, dedup_new
from evolver.v1 import events_pb2
from evolver.v1 import experience_pb2 as exp_pb
from services.memory.distill import trajectory_views
from services.memory.retrieval import validate_retrieve

KINDS = {SUCCESS: exp_pb.EXPERIENCE_KIND_SUCCESS, FAILURE: exp_pb.EXPERIENCE_KIND_FAILURE}


def to_pb(e: Experience) -> exp_pb.Experience:
    return exp_pb.Experience(experience_id=e.experience_id, kind=KINDS[e.kind], when_to_use=e.when_to_use,
                             content=e.content, env_id=e.env_id, source_task_id=e.source_task_id)


class Memory:
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
        """Distils a training group into experiences; keeps those not near-duplicates of stored ones."""
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

    async def retrieve(self, query: str, k: int, env_id: str = "") -> list[tuple[Experience, float]]:
        validate_retrieve(query, k)
        (vector,) = await self.embed([query])
        return await asyncio.to_thread(self.store.search, vector, k, env_id)

    def counts(self) -> dict[str, int]:
        return {"experiences": self.store.count(), "success_experiences": self.store.count(SUCCESS),
                "failure_experiences": self.store.count(FAILURE), "groups_processed": self.groups_processed}

    def close(self) -> None:
        close_store = getattr(self.store, "close", None)
        if close_store:
            close_store()
