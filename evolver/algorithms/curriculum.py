"""Curriculum sampling: prefer tasks the policy sometimes solves. A task's weight peaks at a
success rate of 0.5 and is small (not zero) at 0 or 1, so nothing is starved; untried tasks get
the weight of an even chance. Deterministic for a given seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    attempts: int = 0
    successes: int = 0

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None


def weight(t: TaskRecord, floor: float = 0.05) -> float:
    # Beta(1, 1) posterior mean: untried tasks sit at 0.5; certainty grows with attempts.
    p = (t.successes + 1) / (t.attempts + 2)
    return floor + 4 * p * (1 - p)  # 4p(1-p) is 1 at p = 0.5


def sample(tasks: Sequence[TaskRecord], k: int, seed: int, floor: float = 0.05) -> list[str]:
    """k distinct task ids (all of them when k >= len(tasks)), weighted without replacement."""
    rng = random.Random(seed)
    pool = list(tasks)
    chosen: list[str] = []
    while pool and len(chosen) < k:
        w = [weight(t, floor) for t in pool]
        i = rng.choices(range(len(pool)), weights=w, k=1)[0]
        chosen.append(pool.pop(i).task_id)
    return chosen
