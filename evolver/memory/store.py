"""One small repository interface for experiences, several Qdrant backends:
  EdgeStore     qdrant-edge-py: Qdrant's own engine in-process (the embedded default)
  ClientStore   qdrant-client: a Qdrant server (url=...) in production, or local mode
                (location=":memory:") for tiny tests
Point ids are derived from experience ids, so upserts are idempotent."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Protocol, Sequence

from evolver.memory.experiences import Experience


def open_store(memory, state_dir: str | Path, folder: str, collection: str, dim: int):
    """The store a service's settings name: the embedded engine under state_dir/folder, or the
    `collection` on the Qdrant server at memory.qdrant_url (memory: config.MemorySettings)."""
    if memory.backend == "qdrant":
        return ClientStore(dim, url=memory.qdrant_url, collection=collection)
    return EdgeStore(Path(state_dir) / folder, dim)


def point_id(experience_id: str) -> int:
    return int(hashlib.sha256(experience_id.encode()).hexdigest()[:15], 16)


class ExperienceStore(Protocol):
    def upsert(self, experiences: Sequence[Experience], vectors: Sequence[Sequence[float]]) -> None: ...
    def search(self, vector: Sequence[float], k: int, env_id: str = "", kind: str = "") -> list[tuple[Experience, float]]: ...
    def count(self, kind: str = "") -> int: ...


def _exp(payload: dict) -> Experience:
    # Fields added later (score) take their defaults in points stored before them.
    return Experience(**{k: payload[k] for k in Experience.__dataclass_fields__ if k in payload})


class EdgeStore:
    def __init__(self, path: Path | str, dim: int):
        import qdrant_edge as qe
        self.qe = qe
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            self.shard = qe.EdgeShard.load(str(path))
        else:
            path.mkdir(parents=True, exist_ok=True)
            self.shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)))
            for key in ("env_id", "kind"):
                self.shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))

    def upsert(self, experiences, vectors) -> None:
        qe = self.qe
        self.shard.update(qe.UpdateOperation.upsert_points(
            [qe.Point(point_id(e.experience_id), list(v), asdict(e)) for e, v in zip(experiences, vectors)]))
        self.shard.flush()

    def search(self, vector, k, env_id="", kind=""):
        qe = self.qe
        must = [qe.FieldCondition(key=key, match=qe.MatchValue(value)) for key, value in (("env_id", env_id), ("kind", kind)) if value]
        flt = qe.Filter(must=must) if must else None
        hits = self.shard.query(qe.QueryRequest(query=qe.Query.Nearest(list(vector)), filter=flt, limit=k,
                                                with_payload=True))
        return [(_exp(h.payload), float(h.score)) for h in hits]

    def count(self, kind=""):
        qe = self.qe
        flt = qe.Filter(must=[qe.FieldCondition(key="kind", match=qe.MatchValue(kind))]) if kind else None
        return int(self.shard.count(qe.CountRequest(filter=flt, exact=True)))

    def close(self) -> None:
        self.shard.close()


class ClientStore:
    def __init__(self, dim: int, *, url: str | None = None, location: str | None = None, api_key: str | None = None,
                 collection: str = "experiences"):
        from qdrant_client import QdrantClient, models
        self.COLLECTION = collection
        self.models = models
        self.client = QdrantClient(url=url, api_key=api_key) if url else QdrantClient(location=location or ":memory:")
        if not self.client.collection_exists(self.COLLECTION):
            self.client.create_collection(self.COLLECTION, vectors_config=models.VectorParams(
                size=dim, distance=models.Distance.COSINE))

    def upsert(self, experiences, vectors) -> None:
        m = self.models
        self.client.upsert(self.COLLECTION, [m.PointStruct(id=point_id(e.experience_id), vector=list(v), payload=asdict(e))
                                             for e, v in zip(experiences, vectors)])

    def search(self, vector, k, env_id="", kind=""):
        m = self.models
        must = [m.FieldCondition(key=key, match=m.MatchValue(value=value)) for key, value in (("env_id", env_id), ("kind", kind)) if value]
        flt = m.Filter(must=must) if must else None
        hits = self.client.query_points(self.COLLECTION, query=list(vector), query_filter=flt, limit=k,
                                        with_payload=True).points
        return [(_exp(h.payload), float(h.score)) for h in hits]

    def count(self, kind=""):
        m = self.models
        flt = m.Filter(must=[m.FieldCondition(key="kind", match=m.MatchValue(value=kind))]) if kind else None
        return self.client.count(self.COLLECTION, count_filter=flt, exact=True).count


def dedup_new(store: ExperienceStore, experiences: Sequence[Experience], vectors: Sequence[Sequence[float]],
              threshold: float = 0.9) -> tuple[list[Experience], list[list[float]]]:
    """Drops experiences whose vector is within cosine `threshold` of a stored one or of one
    kept earlier in this batch, comparing only the same kind in the same environment (a success
    and a failure lesson from one task say different things)."""
    keep_e, keep_v = [], []
    for e, v in zip(experiences, vectors):
        stored = store.search(v, 1, env_id=e.env_id, kind=e.kind)
        if stored and stored[0][1] >= threshold:
            continue
        if any(ke.kind == e.kind and ke.env_id == e.env_id and sum(a * b for a, b in zip(v, kv)) >= threshold
               for ke, kv in zip(keep_e, keep_v)):
            continue
        keep_e.append(e)
        keep_v.append(list(v))
    return keep_e, keep_v
