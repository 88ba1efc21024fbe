"""When a run evaluates, and what an evaluation's groups add up to. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from evolver.algorithms.stats import TASK_METRIC_PREFIX
from evolver.envs.harness import TaskResult, summarize
from evolver.v1 import events_pb2, task_pb2


def evaluation_due(step: int, steps: int, eval_every: int, evaluated: Sequence[int],
                   before_training: bool = True) -> bool:
    """Before training (step 0, unless before_training is off), every eval_every steps (0: never
    in between), after the last step; never twice for one step (a resumed run skips what its
    checkpoint says is done)."""
    due = (step == 0 and before_training) or step == steps or (eval_every > 0 and step > 0 and step % eval_every == 0)
    return due and step not in evaluated


def eval_metrics(tasks: Sequence[task_pb2.Task], groups: Sequence[events_pb2.RolloutAttributed], k: int,
                 temperature: float) -> dict[str, float]:
    """avg@k, best@k and pass@k per task source (held-out synthetic, the environment's test
    seed tasks), over valid trajectories only, plus each task's mean (so a before -> after
    change gets a paired-bootstrap interval)."""
    out: dict[str, float] = {}
    for label, source in (("synthetic", task_pb2.TASK_SOURCE_SYNTHETIC), ("seed", task_pb2.TASK_SOURCE_SEED)):
        results = []
        for task, g in zip(tasks, groups):
            if task.source != source:
                continue
            valid = [t for t in g.group.trajectories if not t.infra_failure.reason]
            results.append(TaskResult(task.task_id, [t.reward.score for t in valid],
                                      [t.reward.success for t in valid], temperature, 0.0, []))
            out[f"{TASK_METRIC_PREFIX}{label}/{task.task_id}"] = results[-1].avg
        if results:
            s = summarize(results, k, temperature)
            out.update({f"eval_{label}_avg_at_k": s.avg_at_k, f"eval_{label}_best_at_k": s.best_at_k,
                        f"eval_{label}_pass_at_k": s.pass_at_k, f"eval_{label}_tasks": s.tasks})
    return out
