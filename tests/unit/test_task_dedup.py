"""Embedding near-duplicates of synthetic tasks: real all-MiniLM-L6-v2 vectors in embedded Qdrant."""

from __future__ import annotations

import asyncio

from evolver.memory.embeddings import MiniLMEmbedder
from evolver.memory.store import EdgeStore
from services.task_gen.embedding_dedup import TaskVectorIndex
from services.task_gen.synthesis import split_for


def test_embedding_filter_drops_same_meaning_keeps_different_and_persists(tmp_path):
    index = TaskVectorIndex(EdgeStore(tmp_path / "v", MiniLMEmbedder.dim), MiniLMEmbedder, threshold=0.9)
    kept, reasons = asyncio.run(index.filter_new("bfcl", [
        ("a", "Please create a new directory called reports."),
        ("b", "Please create a new directory called reports!"),  # same meaning, new words
        ("c", "Post a tweet saying hello to my followers."),
    ]))
    assert kept == ["a", "c"] and len(reasons) == 1 and "embedding near-duplicate" in reasons[0]
    # later batches are compared with what is stored, not only with each other
    kept2, _ = asyncio.run(index.filter_new("bfcl", [("d", "Please create a new directory called reports."),
                                                      ("e", "What is the current stock price of NVDA?")]))
    assert kept2 == ["e"]
    # another environment's tasks are not duplicates of these
    kept3, _ = asyncio.run(index.filter_new("other", [("f", "Please create a new directory called reports.")]))
    assert kept3 == ["f"]
    index.store.close()


def test_heldout_split_is_stable_and_about_a_fifth():
    ids = [f"syn-{i:05d}" for i in range(2000)]
    splits = [split_for(i) for i in ids]
    assert splits == [split_for(i) for i in ids]
    assert 0.15 < splits.count("heldout") / len(ids) < 0.25
