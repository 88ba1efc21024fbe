"""Embedding near-duplicate filter for synthetic tasks: all-MiniLM-L6-v2 vectors of the task
queries in a Qdrant collection (the same store interface memory uses; kind "task").

Lexical Jaccard catches reworded copies; this catches the same request phrased with different
words. Template queries that differ only in argument values sit close together, so the default
threshold is high (0.98): only near-identical meanings are dropped."""

from __future__ import annotations

import asyncio
from typing import Sequence

from evolver.memory.experiences import Experience
from evolver.memory.store import ExperienceStore, dedup_new

TASK_KIND = "task"
DEFAULT_THRESHOLD = 0.98


class TaskVectorIndex:
    def __init__(self, store: ExperienceStore, embedder_factory, threshold: float = DEFAULT_THRESHOLD):
        self.store, self._factory, self.threshold = store, embedder_factory, threshold
        self._embedder = None
        self._lock = asyncio.Lock()

    async def filter_new(self, env_id: str, tasks: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """tasks: (task_id, query). Returns (kept ids, rejection reasons); kept ones are indexed."""
        if not tasks:
            return [], []
        async with self._lock:
            if self._embedder is None:
                self._embedder = await asyncio.to_thread(self._factory)
            vectors = await asyncio.to_thread(self._embedder.embed, [q for _, q in tasks])
            items = [Experience(tid, TASK_KIND, q, "", env_id, tid) for tid, q in tasks]
            kept, kept_vectors = dedup_new(self.store, items, vectors, self.threshold)
            if kept:
                await asyncio.to_thread(self.store.upsert, kept, kept_vectors)
        kept_ids = {e.experience_id for e in kept}
        reasons = [f"embedding near-duplicate (cosine >= {self.threshold})" for tid, _ in tasks if tid not in kept_ids]
        return [tid for tid, _ in tasks if tid in kept_ids], reasons
