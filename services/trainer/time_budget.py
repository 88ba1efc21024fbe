"""A run's wall-clock budget (RunSpec.time_budget_minutes): how many RL steps still fit. Pure.

The same config costs minutes on one CPU and much more on another (a CPU without fast bfloat16
runs every matmul in float32), and a step with reward signal costs many times one without. So
the budget is spent by measurement: before a step asks for the next step's rollouts, the run's
elapsed time, the mean RL step so far and the longest evaluation so far say how many steps,
this one included, fit before the final evaluation must start. Fewer steps than configured end
the run early, still evaluated, and say so. The step under way and steps already asked for
always run (their rollouts are being generated)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def affordable_steps(budget_s: float, elapsed_s: float, step_s: Sequence[float], eval_s: Sequence[float]) -> int:
    """RL steps, counting the one about to run, that fit in what is left of budget_s with time
    kept for the final evaluation (the longest evaluation so far). Until a step has been
    measured, an evaluation's time stands in for a step's (a step generates more rollouts and
    also updates, so this errs towards one step more, once). Never below 1."""
    final_eval = max(eval_s, default=0.0)
    per_step = sum(step_s) / len(step_s) if step_s else final_eval
    left = budget_s - elapsed_s - final_eval
    if per_step <= 0:
        return 1 if left <= 0 else 10**9
    return max(1, math.floor(left / per_step))


def planned_steps(planned: int, step: int, requested_through: int, budget_s: float, elapsed_s: float,
                  step_s: Sequence[float], eval_s: Sequence[float]) -> int:
    """The run's last step count, decided at the start of `step` (0-based): `planned` when
    there is no budget (budget_s <= 0), else as many as fit, never fewer than the steps whose
    rollouts were already asked for (up to requested_through) and never more than planned."""
    if budget_s <= 0:
        return planned
    fit = step + affordable_steps(budget_s, elapsed_s, step_s, eval_s)
    return min(planned, max(fit, requested_through + 1, step + 1))
