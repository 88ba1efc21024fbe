"""Confidence intervals for learning claims (pure).

An evaluation scores the same tasks before and after training, so a change is measured per
task and the tasks are resampled (a paired bootstrap): the interval reflects which tasks
happened to be in the evaluation set, not only the attempts' noise."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

TASK_METRIC_PREFIX = "task_avg:"  # run.progress metrics "task_avg:<task id>" = that task's avg@k


@dataclass(frozen=True)
class Delta:
    before: float
    after: float
    delta: float
    low: float  # bootstrap 95% interval of the delta
    high: float
    tasks: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.before:.3f} -> {self.after:.3f} ({self.delta:+.3f}, 95% CI [{self.low:+.3f}, {self.high:+.3f}], {self.tasks} tasks)"


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    if not sorted_xs:
        return 0.0
    pos = q * (len(sorted_xs) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def paired_delta(before: Mapping[str, float], after: Mapping[str, float], *, resamples: int = 10_000,
                 seed: int = 0, level: float = 0.95) -> Delta | None:
    """Mean per-task change over the tasks scored at both points, with a paired-bootstrap
    interval (percentile method). None when no task was scored at both."""
    tasks = sorted(set(before) & set(after))
    if not tasks:
        return None
    diffs = [after[t] - before[t] for t in tasks]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(statistics.fmean(rng.choices(diffs, k=n)) for _ in range(resamples))
    tail = (1 - level) / 2
    return Delta(statistics.fmean(before[t] for t in tasks), statistics.fmean(after[t] for t in tasks),
                 statistics.fmean(diffs), percentile(means, tail), percentile(means, 1 - tail), n)


def pooled_delta(pairs: Sequence[tuple[Mapping[str, float], Mapping[str, float]]], **kw) -> Delta | None:
    """One delta over several runs (seeds): every (run, task) pair is a unit of the bootstrap."""
    before, after = {}, {}
    for i, (b, a) in enumerate(pairs):
        before.update({f"{i}/{t}": v for t, v in b.items()})
        after.update({f"{i}/{t}": v for t, v in a.items()})
    return paired_delta(before, after, **kw)


def task_scores(metrics: Mapping[str, float], label: str) -> dict[str, float]:
    """The per-task avg@k of one task set ("synthetic", "seed") an evaluated progress event
    carries (metrics "task_avg:<label>/<task id>")."""
    prefix = f"{TASK_METRIC_PREFIX}{label}/"
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def stage_metrics(evaluated: Sequence[Mapping[str, float]]) -> tuple[Mapping, Mapping | None, Mapping]:
    """A run's evaluations (their metrics, in order) at base, after the warm start (metrics.stage
    1; None without one) and at the end."""
    return evaluated[0], next((m for m in evaluated if m.get("stage") == 1.0), None), evaluated[-1]


def base_evaluation(evaluated: Sequence[Mapping[str, float]]) -> Mapping | None:
    """The base model's evaluation (stage 0, before any training) that a run's changes start
    from; None for a run that has none (eval.before_training off)."""
    return evaluated[0] if evaluated and evaluated[0].get("stage", 0.0) == 0.0 else None


def evaluation_points(evaluated: Sequence[Mapping[str, float]]) -> list[tuple[str, str, dict[str, Delta]]]:
    """The changes a run's evaluations show: base -> end, and with a warm start also base ->
    warm start and warm start -> end."""
    if len(evaluated) < 2 or base_evaluation(evaluated) is None:
        return []
    base, warm, last = stage_metrics(evaluated)
    out = [("base", "end", eval_deltas(base, last))]
    if warm is not None:
        out.insert(0, ("base", "warm start", eval_deltas(base, warm)))
        if warm is not last:
            out.insert(1, ("warm start", "end", eval_deltas(warm, last)))
    return out


def eval_deltas(first: Mapping[str, float], last: Mapping[str, float], **kw) -> dict[str, Delta]:
    """Per task set, the before -> after change of avg@k between two evaluated events."""
    out = {}
    for label in ("synthetic", "seed"):
        d = paired_delta(task_scores(first, label), task_scores(last, label), **kw)
        if d is not None:
            out[label] = d
    return out
