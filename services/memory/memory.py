"""Memory's domain: experiences distilled from completed training rollouts, kept in a vector
store (Qdrant) and retrieved by task query. The embedding model loads on first use, not at
start."""

from __future__ import annotations

import asyncio

from evolver.errors import FailedPrecondition
from evolver.memory.experiences import COMPARATIVE, FAILURE, SUCCESS, Experience, RuleExtractor
from evolver.models.roles import RoleCounters
from evolver.memory.store import ExperienceStore, dedup_new
from evolver.v1 import events_pb2
from evolver.v1 import experience_pb2 as exp_pb
from services.memory.distill import trajectory_views
from services.memory.llm_distill import Callers, llm_experiences, rewrite
from services.memory.retrieval import validate_retrieve

KINDS = {SUCCESS: exp_pb.EXPERIENCE_KIND_SUCCESS, FAILURE: exp_pb.EXPERIENCE_KIND_FAILURE,
         COMPARATIVE: exp_pb.EXPERIENCE_KIND_COMPARATIVE}


def embedding_text(e: Experience, key: int, task_query: str) -> str:
    """What an experience is embedded by: its retrieval key (navigating.embedding_key)."""
    if key == exp_pb.EXPERIENCE_KEY_WHEN_TO_USE:
        return e.when_to_use
    if key == exp_pb.EXPERIENCE_KEY_TASK_QUERY:
        return task_query or e.when_to_use
    return f"{e.when_to_use} {e.content}"


def to_pb(e: Experience) -> exp_pb.Experience:
    return exp_pb.Experience(experience_id=e.experience_id, kind=KINDS[e.kind], when_to_use=e.when_to_use,
                             content=e.content, env_id=e.env_id, source_task_id=e.source_task_id, score=e.score,
                             prompt_version=e.prompt_version)


class Memory:
    def __init__(self, store: ExperienceStore, embedder_factory, dedup_threshold: float = 0.9,
                 callers: Callers | None = None):
        self.store = store
        self.callers = callers  # the experience_extractor role's callers, per template
        self._factory = embedder_factory
        self._embedder = None
        self._lock = asyncio.Lock()
        self.dedup_threshold = dedup_threshold
        self.groups_processed = 0

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._embedder is None:
            self._embedder = await asyncio.to_thread(self._factory)
        return await asyncio.to_thread(self._embedder.embed, texts)

    async def distil(self, event: events_pb2.RolloutCompleted, views) -> tuple[list[Experience], list]:
        """The group's experiences by the run's extractor kind, and the LLM role's usage."""
        kind = event.experience_extractor
        rules = RuleExtractor().extract(event.task.env_id, event.task.task_id, views)
        if kind not in (exp_pb.EXPERIENCE_EXTRACTOR_KIND_LLM, exp_pb.EXPERIENCE_EXTRACTOR_KIND_HYBRID):
            return rules, []
        if self.callers is None:
            raise FailedPrecondition("LLM experience extraction was asked for, but no experience_extractor role "
                                     "is configured")
        counters = RoleCounters("experience_extractor")
        found = await llm_experiences(self.callers, counters, event.task.env_id, event.task.task_id,
                                      event.task.query, views)
        if found is None:  # no usable extraction: the rules' experiences
            counters.fallbacks += 1
            return rules, [counters.to_pb()]
        both = found + rules if kind == exp_pb.EXPERIENCE_EXTRACTOR_KIND_HYBRID else found
        return both, [counters.to_pb()]

    async def add_group(self, event: events_pb2.RolloutCompleted) -> list[Experience]:
        kept, _ = await self.add_group_counted(event)
        return kept

    async def add_group_counted(self, event: events_pb2.RolloutCompleted) -> tuple[list[Experience], list]:
        """Distils a training group into experiences; keeps those not near-duplicates of stored
        ones. Also returns what the LLM roles cost."""
        views = trajectory_views(event)
        experiences, usage = await self.distil(event, views) if views else ([], [])
        async with self._lock:  # one writer: dedup sees everything stored before it
            kept: list[Experience] = []
            if experiences:
                vectors = await self.embed([embedding_text(e, event.experience_key, event.task.query)
                                            for e in experiences])
                kept, kept_vectors = dedup_new(self.store, experiences, vectors, self.dedup_threshold)
                if kept:
                    await asyncio.to_thread(self.store.upsert, kept, kept_vectors)
            self.groups_processed += 1
        return kept, usage

    async def retrieve(self, query: str, k: int, env_id: str = "") -> list[tuple[Experience, float]]:
        validate_retrieve(query, k)
        (vector,) = await self.embed([query])
        return await asyncio.to_thread(self.store.search, vector, k, env_id)

    async def rewrite(self, query: str, hits: list[tuple[Experience, float]]) -> tuple[str, list]:
        """The retrieved experiences rewritten for this query into one block ("" when the
        rewrite failed or nothing was retrieved), and the role's usage."""
        if not hits:
            return "", []
        if self.callers is None:
            raise FailedPrecondition("an experience rewrite was asked for, but no experience_extractor role is configured")
        counters = RoleCounters("experience_extractor")
        text = await rewrite(self.callers, counters, query, [e for e, _ in hits])
        if text is None:
            counters.fallbacks += 1
        return text or "", [counters.to_pb()]

    def counts(self) -> dict[str, int]:
        return {"experiences": self.store.count(), "success_experiences": self.store.count(SUCCESS),
                "failure_experiences": self.store.count(FAILURE), "groups_processed": self.groups_processed}

    def close(self) -> None:
        close_store = getattr(self.store, "close", None)
        if close_store:
            close_store()
