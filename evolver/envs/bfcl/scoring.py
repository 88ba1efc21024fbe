"""Scores a finished multi_turn_base episode the way BFCL does, without its eval-based runner:
per user turn, the agent's recorded calls and the ground-truth calls run in two fresh sets of
instances through our dispatch (state carried across turns), then bfcl_eval's own
`state_checker` and `response_checker` compare them."""

from __future__ import annotations

from typing import Any, Sequence

from evolver.envs.base import Call, Score
from evolver.envs.bfcl import catalog
from evolver.envs.bfcl.calls import run_calls


def _empty(turn_steps: Sequence[Sequence[Call]]) -> bool:
    # bfcl_eval.multi_turn_utils.is_empty_execute_response, on calls rather than strings.
    return len(turn_steps) == 0 or (len(turn_steps) == 1 and len(turn_steps[0]) == 0)


def score_episode(initial_config: dict[str, Any], classes: Sequence[str],
                  ground_truth: Sequence[Sequence[Call]], agent_turns: Sequence[Sequence[Sequence[Call]]], *,
                  long_context: bool = False) -> Score:
    """agent_turns[t] is the list of steps of user turn t, each a list of calls."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import response_checker, state_checker

    tools = {t.name: t for t in catalog.tools_for(classes)}
    model = catalog.instantiate(classes, initial_config, long_context=long_context)
    truth = catalog.instantiate(classes, initial_config, long_context=long_context)
    model_methods, truth_methods = catalog.method_table(model), catalog.method_table(truth)
    all_model_results: list[str] = []
    for t, gt_calls in enumerate(ground_truth):
        steps = agent_turns[t] if t < len(agent_turns) else []
        for step in steps:
            all_model_results.extend(r.content for r in run_calls(model_methods, tools, step))
        gt_results = [r.content for r in run_calls(truth_methods, tools, gt_calls)]
        if gt_calls and _empty(steps):
            return Score(0.0, False, {"turn": t, "error_type": "multi_turn:empty_turn_model_response",
                                      "error_message": f"Model response list is empty for turn {t}"})
        if not gt_calls:
            continue
        state = state_checker(model, truth)
        if not state["valid"]:
            return Score(0.0, False, {"turn": t, "error_type": state["error_type"], "error_message": state["error_message"],
                                      "differences": catalog.to_jsonable(state["details"]["differences"])})
        response = response_checker(all_model_results, gt_results, t)
        if not response["valid"]:
            return Score(0.0, False, {"turn": t, "error_type": response["error_type"],
                                      "error_message": response["error_message"],
                                      "missing_items": response["details"]["missing_items"]})
    return Score(1.0, True, {"turns": len(ground_truth)})
