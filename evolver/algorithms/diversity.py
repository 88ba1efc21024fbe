"""How varied a pool of self-made task queries is (pure): distinct word 3-grams over all 3-grams
of the distinct queries, and the spread of their embeddings (mean pairwise cosine distance)."""

from __future__ import annotations

import itertools
import math
from typing import Sequence


def trigram_ratio(queries: Sequence[str]) -> float:
    distinct = sorted(set(queries))
    grams = [tuple(q.lower().split()[i:i + 3]) for q in distinct for i in range(len(q.split()) - 2)]
    return len(set(grams)) / len(grams) if grams else 0.0


def embedding_spread(vectors: Sequence[Sequence[float]]) -> float:
    """Mean pairwise cosine distance (0: all the same direction)."""
    if len(vectors) < 2:
        return 0.0

    def unit(v):
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]
    us = [unit(v) for v in vectors]
    sims = [sum(a * b for a, b in zip(u, w)) for u, w in itertools.combinations(us, 2)]
    return 1.0 - sum(sims) / len(sims)
