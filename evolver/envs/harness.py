"""k attempts per task through the Environment protocol; avg@k and best@k as AgentEvolver defines
them (spec §7, veRL's process_validation_metrics): avg@k = mean over tasks of the mean score of
the k attempts; best@k = mean over tasks of the *bootstrap* best-of-k (the mean, over 1000
resamples of size k drawn with replacement, of the maximum score; seed 42). pass@k (any attempt
succeeded) is reported beside it. Per-task results go to JSONL.

An agent is any async callable that drives one episode to its end; the policy agent plugs in
here the same way the reference agents below do.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from evolver.envs.base import SeedTask
from evolver.envs.client import EnvironmentClient, EpisodeClient

Agent = Callable[[EpisodeClient, SeedTask, float, int], Awaitable[None]]


@dataclass
class TaskResult:
    task_id: str
    scores: list[float]
    successes: list[bool]
    temperature: float
    seconds: float
    details: list[dict]

    @property
    def avg(self) -> float:
        return statistics.fmean(self.scores) if self.scores else 0.0

    @property
    def best(self) -> float:
        return bootstrap_best(self.scores, len(self.scores))

    @property
    def passed(self) -> float:
        return float(any(self.successes))


def bootstrap_best(scores: Sequence[float], k: int, n_bootstrap: int = 1000, seed: int = 42) -> float:
    """Mean over n_bootstrap resamples (size k, with replacement) of the best score."""
    if not scores:
        return 0.0
    rng = random.Random(seed)
    return statistics.fmean(max(rng.choices(scores, k=k)) for _ in range(n_bootstrap))


@dataclass
class EvalSummary:
    tasks: int
    k: int
    temperature: float
    avg_at_k: float
    best_at_k: float
    pass_at_k: float


def summarize(results: Sequence[TaskResult], k: int, temperature: float) -> EvalSummary:
    def mean(xs):
        xs = list(xs)
        return statistics.fmean(xs) if xs else 0.0
    return EvalSummary(len(results), k, temperature, mean(r.avg for r in results), mean(r.best for r in results),
                       mean(r.passed for r in results))


async def evaluate(env: EnvironmentClient, agent: Agent, tasks: Sequence[SeedTask], *, k: int, temperature: float,
                   out_jsonl: Path | None = None, on_task: Callable[[TaskResult], None] = lambda r: None) -> EvalSummary:
    results = []
    sink = open(out_jsonl, "w") if out_jsonl else None
    try:
        for task in tasks:
            t0 = time.perf_counter()
            scores, successes, details = [], [], []
            for attempt in range(k):
                episode = await env.create(seed_task_id=task.seed_task_id)
                try:
                    await agent(episode, task, temperature, attempt)
                    score = await episode.evaluate()
                finally:
                    await episode.release()
                scores.append(score.score)
                successes.append(score.success)
                details.append(score.details)
            result = TaskResult(task.seed_task_id, scores, successes, temperature, time.perf_counter() - t0, details)
            results.append(result)
            if sink:
                sink.write(json.dumps({**asdict(result), "avg": result.avg, "best": result.best,
                                       "pass": result.passed}) + "\n")
                sink.flush()
            on_task(result)
    finally:
        if sink:
            sink.close()
    return summarize(results, k, temperature)


def reference_agent(drop_last_call: bool = False) -> Agent:
    """Replays BFCL's ground truth turn by turn (an oracle, to check the evaluator end to end).
    With drop_last_call it omits the final call of the last non-empty turn: a perturbed answer."""
    from evolver.envs.bfcl import tasks as bfcl_tasks

    async def run(episode: EpisodeClient, task: SeedTask, temperature: float, attempt: int) -> None:
        turns = [list(t) for t in bfcl_tasks.entry_for(task.seed_task_id).ground_truth]
        if drop_last_call:
            last = max(i for i, t in enumerate(turns) if t)
            turns[last] = turns[last][:-1]
        for calls in turns:
            if calls:
                await episode.step(calls)
            out = await episode.step([])
            if out.done:
                break
    return run
