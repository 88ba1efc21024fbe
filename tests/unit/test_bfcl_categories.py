"""All four BFCL multi-turn categories, faithfully: every ground truth scores correct through the
client surface (200 per category), long_context loads long scenarios, miss_func withholds its
function until BFCL's own message announces it, and the schema accepts what BFCL runs."""

from __future__ import annotations

import pytest

from evolver.envs.base import Call
from evolver.envs.bfcl import BfclEnvironment, tasks
from evolver.envs.harness import evaluate, reference_agent
from evolver.envs.local import InProcessEnvironment


@pytest.mark.parametrize("category", ["base", "miss_param", "long_context", "miss_func"])
async def test_every_ground_truth_scores_correct(category):
    env = BfclEnvironment(category)
    seeds = env.seed_tasks()
    assert len(seeds) == 200 and sum(s.split == "test" for s in seeds) == 100
    failures = []
    summary = await evaluate(InProcessEnvironment(env), reference_agent(), seeds, k=1, temperature=0.0,
                             on_task=lambda r: failures.append(r.task_id) if not r.successes[0] else None)
    assert summary.tasks == 200 and not failures, failures[:5]
    perturbed = await evaluate(InProcessEnvironment(env), reference_agent(drop_last_call=True), seeds[:5], k=1,
                               temperature=0.0)
    assert perturbed.avg_at_k == 0.0


def test_miss_func_withholds_the_function_until_its_turn():
    from bfcl_eval.constants.default_prompts import DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
    entry = next(e for e in tasks.load_entries("miss_func") if e.missed)
    (turn, names), = entry.missed.items()
    ep = BfclEnvironment("miss_func").create(seed_task_id=entry.seed.seed_task_id)
    assert not set(names) & {t.name for t in ep.tool_list()}
    early = ep.step([Call(names[0], {}, "c0")]).results[0]
    assert early.is_error and "unknown tool" in early.content
    out = None
    for _ in range(turn):
        out = ep.step([])  # answer each turn until the holdout turn arrives
    assert out.next_user_message.endswith(DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC)
    assert all(n in out.next_user_message for n in names) and set(names) <= {t.name for t in ep.tool_list()}


def test_long_context_scenarios_are_loaded_long():
    seed_id = "multi_turn_long_context_0"
    long_state = BfclEnvironment("long_context").create(seed_task_id=seed_id).state()
    base_state = BfclEnvironment("base").create(seed_task_id="multi_turn_base_0").state()
    assert len(str(long_state)) > 2 * len(str(base_state))


def test_close_ticket_accepts_the_string_id_bfcl_runs():
    gt = tasks.entry_for("multi_turn_base_173").ground_truth
    assert ("close_ticket", {"ticket_id": "ticket_001"}) in [(c.name, c.arguments) for t in gt for c in t]
    ep = BfclEnvironment().create(seed_task_id="multi_turn_base_173")
    (r,) = ep.step([Call("close_ticket", {"ticket_id": "ticket_001"}, "c")]).results
    assert "invalid arguments" not in r.content
