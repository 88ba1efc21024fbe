"""Experiences: extraction (pure), real MiniLM embeddings, embedded Qdrant (edge) and
qdrant-client local mode behind one interface."""

import pytest

from evolver.memory.embeddings import MiniLMEmbedder
from evolver.memory.experiences import FAILURE, SUCCESS, CallOutcome, RuleExtractor, TrajectoryView, render_block
from evolver.memory.store import ClientStore, EdgeStore, dedup_new

MV_FAIL = CallOutcome("mv", {"source": "r.pdf", "destination": "temp"}, '{"error": "mv: no such directory temp"}', True)
MKDIR = CallOutcome("mkdir", {"dir_name": "temp"}, "None", False)
MV_OK = CallOutcome("mv", {"source": "r.pdf", "destination": "temp"}, "None", False)


def test_success_and_failure_experiences():
    group = [TrajectoryView("Move r.pdf into temp", True, [MV_FAIL, MKDIR, MV_OK]),
             TrajectoryView("Move r.pdf into temp", False, [MV_FAIL])]
    exps = RuleExtractor().extract("bfcl", "syn-1", group)
    kinds = sorted(e.kind for e in exps)
    assert kinds == [FAILURE, SUCCESS]
    failure = next(e for e in exps if e.kind == FAILURE)
    assert failure.content == ('mv failed: mv: no such directory temp -> mkdir(dir_name="temp") first, '
                               'then mv(source="r.pdf", destination="temp")')
    assert failure.when_to_use == "Move r.pdf into temp"  # keyed on the task query (B4)
    success = next(e for e in exps if e.kind == SUCCESS)
    assert "mkdir" in success.content and "failed" not in success.content
    assert RuleExtractor().extract("bfcl", "syn-1", group) == exps  # deterministic ids
    assert render_block(exps).startswith("Experience from similar tasks:")


@pytest.fixture(scope="module")
def embedder():
    return MiniLMEmbedder()


@pytest.mark.parametrize("make_store", [lambda tmp: EdgeStore(tmp / "edge", 384), lambda tmp: ClientStore(384)],
                         ids=["qdrant-edge", "qdrant-client-local"])
def test_store_retrieves_by_task_query_and_dedups(make_store, tmp_path, embedder):
    store = make_store(tmp_path)
    group = [TrajectoryView("Move final_report.pdf into the temp folder", True, [MV_FAIL, MKDIR, MV_OK])]
    other = [TrajectoryView("Post a tweet about quarterly earnings", True,
                            [CallOutcome("post_tweet", {"content": "Q3 up"}, "{}", False)])]
    exps = RuleExtractor().extract("bfcl", "t1", group) + RuleExtractor().extract("bfcl", "t2", other)
    vecs = embedder.embed([e.when_to_use + " " + e.content for e in exps])
    kept, kv = dedup_new(store, exps, vecs)
    store.upsert(kept, kv)
    assert store.count() == 3 and store.count(FAILURE) == 1
    again, _ = dedup_new(store, exps, vecs)  # everything is now a near-duplicate
    assert again == []
    hits = store.search(embedder.embed(["move a pdf file to a tmp directory"])[0], 2)
    assert all(e.source_task_id == "t1" for e, _ in hits)
    assert hits[0][1] > 0.3
    assert store.search(embedder.embed(["tweet"])[0], 5, env_id="other-env") == []


def test_near_duplicates_of_the_same_kind_are_dropped(tmp_path, embedder):
    store = ClientStore(384)
    a = RuleExtractor().extract("bfcl", "t1", [TrajectoryView("Move r.pdf into temp", True, [MKDIR, MV_OK])])
    b = RuleExtractor().extract("bfcl", "t2", [TrajectoryView("Move r.pdf into the temp", True, [MKDIR, MV_OK])])
    vecs = embedder.embed([e.when_to_use + " " + e.content for e in a + b])
    kept, _ = dedup_new(store, a + b, vecs)
    assert [e.source_task_id for e in kept] == ["t1"]
