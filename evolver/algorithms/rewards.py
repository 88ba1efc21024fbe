"""Reward for synthetic tasks, verifiable where the environment exposes state.

score = mean of the parts the task has:
  state part  Jaccard(agent's changes, reference changes), both relative to the task's initial
              state: doing nothing scores 0, reproducing exactly the reference's changes scores
              1, unrelated extra changes lower it;
  info part   fraction of the task's expected facts present (case-insensitive) in the answer.
success = score == 1. A task with neither part cannot be scored (rejected at acceptance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from evolver.algorithms.state import changes


@dataclass(frozen=True)
class RewardBreakdown:
    score: float
    success: bool
    state_part: float | None
    info_part: float | None


def synthetic_reward(initial: Any, reference_end: Any, agent_end: Any, expected_facts: Sequence[str],
                     answer_text: str) -> RewardBreakdown:
    parts = []
    ref = changes(initial, reference_end)
    state_part = None
    if ref:
        got = changes(initial, agent_end)
        state_part = len(ref & got) / len(ref | got)
        parts.append(state_part)
    info_part = None
    if expected_facts:
        text = answer_text.lower()
        info_part = sum(str(f).lower() in text for f in expected_facts) / len(expected_facts)
        parts.append(info_part)
    if not parts:
        raise ValueError("a synthetic task needs a state change or expected facts to be scored")
    score = sum(parts) / len(parts)
    return RewardBreakdown(score, score >= 1.0 - 1e-12, state_part, info_part)
