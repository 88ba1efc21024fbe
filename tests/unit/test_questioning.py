"""Self-questioning, rewards and state-progress attribution on the real BFCL environments
(in-process: these are the pure algorithms the services run over gRPC)."""

import json

import pytest

from evolver.algorithms.attribution import StepRecord, attribute, needed_steps
from evolver.algorithms.questioning import (Walk, WalkPlanner, WalkStep, answer_facts, candidates_from_walk,
                                            check_replay, names_code, task_id_for)
from evolver.algorithms.rewards import synthetic_reward
from evolver.algorithms.state import changes, distance, field_values, leaves, scalar_values
from evolver.envs.base import Call, state_hash
from evolver.envs.bfcl import BfclEnvironment, tasks


def run_walk(seed_task: str, steps: int, seed: int) -> tuple[Walk, list]:
    env = BfclEnvironment()
    ep = env.create(seed_task_id=seed_task)
    initial = ep.state()
    planner = WalkPlanner(ep.tool_list(), initial, seed=seed)
    walk = Walk(f"w{seed}", initial)
    prev = state_hash(initial)
    for i in range(steps):
        call = planner.next_call(i)
        (res,) = ep.step([call]).results
        h = state_hash(ep.state())
        step = WalkStep(call, res.content, res.is_error, h, h != prev, scalar_values(res.content) if not res.is_error else [])
        planner.observe(step)
        walk.steps.append(step)
        prev = h
    return walk, ep.tool_list()


def test_walks_are_deterministic_and_reach_new_states():
    w1, _ = run_walk("multi_turn_base_0", 30, seed=3)
    w2, _ = run_walk("multi_turn_base_0", 30, seed=3)
    assert [s.call for s in w1.steps] == [s.call for s in w2.steps]
    assert len({s.state_hash for s in w1.steps}) >= 3  # it explored
    assert sum(not s.is_error for s in w1.steps) >= 5  # values from observations make calls succeed
    assert len({s.call.name for s in w1.steps}) >= 8  # novelty spreads calls across tools


def test_candidates_are_replay_verified_with_unique_ids():
    walk, tools = run_walk("multi_turn_base_0", 40, seed=5)
    cands = candidates_from_walk(walk, tools, "bfcl", origin="multi_turn_base_0")
    assert cands and len({c.task_id for c in cands}) == len(cands)
    assert all(c.task_id.startswith("syn-") and c.task_id != "multi_turn_base_0" for c in cands)
    assert all(c.query and not names_code(c.query, tools) for c in cands)  # a request, not code
    env = BfclEnvironment()
    accepted = 0
    for c in cands[:10]:
        ep = env.create(seed_task_id="multi_turn_base_0", query_override=c.query)
        initial = ep.state()
        results = [(r.content, r.is_error) for r in ep.step(c.calls).results]
        verdict = check_replay(initial, ep.state(), results, c.expected_facts)
        accepted += verdict.accepted
        if verdict.accepted:
            assert changes(initial, verdict.reference_end_state) or c.expected_facts
    assert accepted >= 1


def test_a_reference_that_fails_on_replay_is_rejected():
    env = BfclEnvironment()
    ep = env.create(seed_task_id="multi_turn_base_0")
    initial = ep.state()
    results = [(r.content, r.is_error) for r in ep.step([Call("cd", {"folder": "no_such_dir"})]).results]
    v = check_replay(initial, ep.state(), results, [])
    assert not v.accepted and "failed on replay" in v.reason
    ep2 = env.create(seed_task_id="multi_turn_base_0")
    results = [(r.content, r.is_error) for r in ep2.step([Call("pwd", {})]).results]
    assert not check_replay(initial, ep2.state(), results, []).accepted  # trivial: nothing changed or asked


def test_task_ids_depend_on_origin_walk_and_calls():
    calls = [Call("mkdir", {"dir_name": "x"})]
    a = task_id_for("bfcl", "multi_turn_base_0", "w1", calls)
    assert a == task_id_for("bfcl", "multi_turn_base_0", "w1", calls)
    assert a != task_id_for("bfcl", "multi_turn_base_1", "w1", calls)
    assert a != task_id_for("bfcl", "multi_turn_base_0", "w2", calls)


def test_synthetic_reward_is_a_state_match():
    initial = {"fs": {"a": 1}}
    ref = {"fs": {"a": 1, "temp": {}}}
    assert synthetic_reward(initial, ref, ref, [], "").score == 1.0
    assert synthetic_reward(initial, ref, initial, [], "").score == 0.0  # doing nothing
    extra = synthetic_reward(initial, ref, {"fs": {"a": 1, "temp": {}, "junk": 2}}, [], "")
    assert 0 < extra.score < 1 and not extra.success
    read = synthetic_reward(initial, initial, initial, ["42", "blue"], "It is 42 and BLUE.")
    assert read.score == 1.0 and read.state_part is None
    half = synthetic_reward(initial, ref, ref, ["42"], "no idea")
    assert half.score == 0.5 and half.state_part == 1.0 and half.info_part == 0.0
    with pytest.raises(ValueError):
        synthetic_reward(initial, initial, initial, [], "")


def test_state_progress_attribution_on_a_real_episode():
    env = BfclEnvironment()
    entry = tasks.by_id()["multi_turn_base_0"]
    truth = env.create(seed_task_id="multi_turn_base_0")
    truth.step(list(entry.ground_truth[0]))  # cd document; mkdir temp; mv final_report.pdf temp
    reference_end = truth.state()

    ep = env.create(seed_task_id="multi_turn_base_0")
    plan = [[Call("cd", {"folder": "document"})], [Call("ls", {})], [Call("mkdir", {"dir_name": "junk"})],
            [Call("cd", {"folder": "nowhere"})], [Call("mkdir", {"dir_name": "temp"})],
            [Call("mv", {"source": "final_report.pdf", "destination": "temp"})]]
    states, records = [ep.state()], []
    for calls in plan:
        out = ep.step(calls)
        states.append(ep.state())
        records.append(StepRecord([(c.name, c.arguments) for c in calls], [(r.content, r.is_error) for r in out.results]))
    # Without counterfactuals `cd` looks useless: BFCL keeps the working directory private.
    plain = attribute(states, reference_end, records)
    assert plain[0] == (False, "changed nothing and returned nothing used later")

    def replay(kept):
        fresh = env.create(seed_task_id="multi_turn_base_0")
        failed = [all(r.is_error for r in fresh.step(plan[i]).results) for i in kept]
        return fresh.state(), failed

    needed = needed_steps(replay, len(plan), reference_end)
    labels = attribute(states, reference_end, records, needed=needed)
    assert [g for g, _ in labels] == [True, True, False, False, True, True], labels
    assert "counterfactual" in labels[0][1] and "later step used" in labels[1][1]
    assert "moved away" in labels[2][1] and "every call failed" in labels[3][1]
    assert distance(states[-1], reference_end) < distance(states[0], reference_end)


def test_leaves_and_changes():
    assert leaves({"a": [1, {"b": None}], "c": {}}) == {("a[0]", "1"), ("a[1].b", "null"), ("c", "{}")}
    assert changes({"a": 1, "b": 2}, {"a": 1, "c": 3}) == {("c", "3"), ("b", "<removed>")}
    assert scalar_values('{"files": ["x.txt"], "n": 2}') == ["files", "x.txt", "n", 2]
    # a serialisation marker is not a value a walk may pass as an argument (it filled
    # diff{"file_name2": "__type__"} from BFCL's state)
    assert scalar_values({"__type__": "Directory", "name": "docs"}) == ["name", "docs"]


def test_answer_facts_are_returned_values_never_field_names_or_what_the_request_says():
    read = WalkStep(Call("get_user_tweets", {"username": "techpro_dev"}),
                    json.dumps({"tweets": [{"id": 0, "username": "techpro_dev", "content": "Exciting news!"},
                                           {"id": 17, "username": "techpro_dev", "content": "More news"}]}),
                    False, "h1", False)
    facts = answer_facts(read, "Retrieve all tweets from a specific user, with techpro_dev as the username.")
    # Field names ("tweets", "id", "username") were once facts: a reply saying "provided" passed.
    assert facts == ["Exciting news!", "17"]
    assert not {"id", "username", "tweets", "techpro_dev"} & set(facts)
    assert answer_facts(WalkStep(read.call, read.content, False, "h2", True)) == []  # a change is checked on state
    assert answer_facts(WalkStep(read.call, '{"ok": "no"}', False, "h1", False)) == []  # too short to show anything


def test_no_pool_task_is_passed_by_a_reply_that_only_echoes_its_request():
    """Over real BFCL walks: every read task's facts are values its reference returned, and a
    reply made of the request plus every field name the results used contains none of them."""
    checked = 0
    for seed_task, seed in (("multi_turn_base_0", 5), ("multi_turn_base_13", 2), ("multi_turn_base_30", 7)):
        walk, tools = run_walk(seed_task, 40, seed=seed)
        by_call: dict[str, list] = {}  # the same call can run at several points of a walk
        for s in walk.steps:
            by_call.setdefault(json.dumps([s.call.name, s.call.arguments], sort_keys=True), []).append(s)
        for c in candidates_from_walk(walk, tools, "bfcl", origin=seed_task):
            if not c.expected_facts:
                continue
            ran = by_call[json.dumps([c.calls[-1].name, c.calls[-1].arguments], sort_keys=True)]
            names = {k for s in ran for k, _ in field_values(s.content)}
            echo = (c.query + " " + " ".join(names)).lower()
            assert not any(f.lower() in echo for f in c.expected_facts), (c.query, c.expected_facts)
            assert any(all(f in s.content for f in c.expected_facts) for s in ran)
            checked += 1
    assert checked >= 3
