"""Retrieval request rules (pure)."""

from __future__ import annotations

from evolver.errors import Validator

MAX_K = 50


def validate_retrieve(query: str, k: int) -> None:
    v = Validator()
    v.check(bool(query.strip()), "query", "must be a non-empty task query")
    v.check(1 <= k <= MAX_K, "k", f"must be between 1 and {MAX_K}, got {k}")
    v.raise_if_any()
