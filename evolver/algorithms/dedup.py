"""Near-duplicate detection for synthetic tasks (spec §3.5): lower-cased, whitespace-split word
sets; Jaccard >= 0.8 against any kept query is a duplicate. Candidates are considered in
descending confidence, and ones without a reference solution are dropped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

JACCARD_THRESHOLD = 0.8


def words(query: str) -> frozenset[str]:
    return frozenset(query.lower().strip().split())


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Candidate:
    key: str
    query: str
    confidence: float = 1.0
    has_reference: bool = True


def lexical_filter(candidates: Sequence[Candidate], kept_queries: Sequence[str] = (),
                   threshold: float = JACCARD_THRESHOLD) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """(kept, rejected-with-reason). Stable: equal confidences keep input order."""
    pool = [words(q) for q in kept_queries]
    kept, rejected = [], []
    for c in sorted(candidates, key=lambda c: -c.confidence):
        if not c.has_reference:
            rejected.append((c, "no reference solution"))
            continue
        w = words(c.query)
        best = max((jaccard(w, p) for p in pool), default=0.0)
        if best >= threshold:
            rejected.append((c, f"lexical near-duplicate (Jaccard {best:.2f})"))
            continue
        pool.append(w)
        kept.append(c)
    return kept, rejected
