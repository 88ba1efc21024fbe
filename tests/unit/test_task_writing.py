"""Self-made tasks read like a person's requests: over pools generated from BFCL and from the
example environment (walks through the same client surface the explorer uses), no query names
a tool or an argument key or carries JSON, and the pool is varied. Exploration fills ids with
ids the environment returned."""

from __future__ import annotations

import re

import pytest

from evolver.agent.exploration import run_walk
from evolver.algorithms.questioning import NaturalWriter, WalkPlanner, candidates_from_walk, names_code
from evolver.algorithms.state import field_values
from evolver.envs.base import Call, Tool
from evolver.envs.bfcl import BfclEnvironment
from evolver.envs.local import InProcessEnvironment
from examples.inventory_env.environment import InventoryEnvironment


def code_like(query: str, tools: list[Tool]) -> list[str]:
    """This test's own reading of 'gives the answer away' (independent of names_code): a
    snake_case tool name or key anywhere; any name followed by ( = : or quoted; a JSON object."""
    low = query.lower()
    bad = [m for m in ("{", "}", '":') if m in query]
    for name in {t.name for t in tools} | {k for t in tools for k in t.parameters.get("properties", {})}:
        n = name.lower()
        if ("_" in n and n in low) or re.search(rf"\b{re.escape(n)}\s*[(=:]", low) or re.search(rf"[\"'`]{re.escape(n)}[\"'`]", low):
            bad.append(name)
    return bad


async def pool(env, seeds: list[str], walks: int = 4, steps: int = 6, max_len: int = 3) -> tuple[list[str], list[Tool]]:
    tools, _ = await env.tools()
    queries = []
    for seed_task in seeds:
        for i in range(walks):
            walk = await run_walk(env, walk_id=f"{seed_task}/w{i}", seed=i, max_steps=steps, seed_task_id=seed_task)
            queries += [c.query for c in candidates_from_walk(walk, tools, "env", seed_task, max_len=max_len)]
    return queries, tools


@pytest.mark.parametrize("make,seeds", [
    (BfclEnvironment, ["multi_turn_base_0", "multi_turn_base_3", "multi_turn_base_17", "multi_turn_base_60"]),
    (InventoryEnvironment, ["inv-0", "inv-1"]),
])
async def test_no_query_gives_the_answer_away_and_the_pool_is_varied(make, seeds):
    env = InProcessEnvironment(make())
    queries, tools = await pool(env, seeds)
    assert len(set(queries)) >= 4
    offenders = {q: code_like(q, tools) for q in queries if code_like(q, tools)}
    assert not offenders, list(offenders.items())[:3]
    assert not any(names_code(q, tools) for q in queries)  # the writer's own check agrees
    distinct = sorted(set(queries))  # the pool keeps one of each (lexical dedup)
    grams = [tuple(q.lower().split()[i:i + 3]) for q in distinct for i in range(len(q.split()) - 2)]
    assert len(set(grams)) / len(grams) > 0.3  # not one template with the values swapped (BFCL: ~0.4)
    assert len({q.split()[0] for q in distinct}) >= 2  # varied openings


def test_the_check_catches_what_the_old_template_wrote():
    tools = [Tool("mkdir", "Create a new directory.", {"type": "object", "properties": {"dir_name": {"type": "string"}}}),
             Tool("ls", "List the contents.", {"type": "object", "properties": {"a": {"type": "boolean"}}})]
    old = 'Please create a new directory (mkdir with dir_name "reports").'
    assert set(names_code(old, tools)) == {"mkdir", "dir_name"} and code_like(old, tools)
    assert names_code("Please list everything with ls.", tools) == ["ls"]  # not an ordinary word here
    new = NaturalWriter().write([Call("mkdir", {"dir_name": "reports"})], {t.name: t for t in tools}, [])
    assert "reports" in new and not names_code(new, tools) and not code_like(new, tools)


def test_ids_come_from_what_the_environment_returned():
    state = {"books": {"b1": {"title": "Dune"}, "b2": {"title": "Emma"}}, "loans": {"l1": {"book_id": "b2"}}}
    pairs = field_values(state)
    assert ("book_id", "b1") in pairs and ("loan_id", "l1") in pairs and ("book_id", "b2") in pairs
    tools = [Tool("return_book", "Return a loan.", {"type": "object", "properties": {"loan_id": {"type": "string"}},
                                                    "required": ["loan_id"]}),
             Tool("borrow_book", "Borrow a book.", {"type": "object", "properties": {"book_id": {"type": "string"}},
                                                    "required": ["book_id"]})]
    planner = WalkPlanner(tools, state, seed=0)
    calls = [planner.next_call(i) for i in range(40)]
    loans = [c.arguments["loan_id"] for c in calls if c.name == "return_book"]
    books = [c.arguments["book_id"] for c in calls if c.name == "borrow_book"]
    assert loans and sum(v == "l1" for v in loans) >= 0.7 * len(loans)
    assert books and sum(v in ("b1", "b2") for v in books) >= 0.7 * len(books)


def test_rejections_are_counted_per_reason():
    from evolver.algorithms.questioning import rejection_kind
    from evolver.cli.run_events import RunEvents
    from evolver.v1 import events_pb2
    ev = RunEvents(accepted=[events_pb2.TasksAccepted(rejection_reasons=[
        "reference call 2 failed on replay: Error: no such file", "reference call 0 failed on replay: x",
        "lexical near-duplicate (Jaccard 0.91)", "query names a tool or argument key (ls)"])])
    assert ev.rejections() == {"reference call failed on replay": 2, "lexical near-duplicate": 1,
                               "query names a tool or argument key": 1}
    assert ev.summary()["rejected: reference call failed on replay"] == 2
    assert rejection_kind("trivial: the replay neither changed state") == "trivial"


def test_query_diversity_measures():
    from evolver.algorithms.diversity import embedding_spread, trigram_ratio
    assert trigram_ratio(["a b c d", "a b c d"]) == 1.0  # duplicates count once
    assert trigram_ratio(["please do x now", "please do y now"]) == 1.0
    assert trigram_ratio(["please do the thing", "please do the other"]) == 0.75
    assert embedding_spread([[1, 0], [2, 0]]) == 0.0 and embedding_spread([[1, 0], [0, 1]]) == 1.0
