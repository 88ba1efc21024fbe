"""Which tasks a run trains and evaluates on. Pure: the run loop fetches the pools (task_gen,
the environment's seed tasks) and asks these."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from evolver.algorithms import curriculum
from evolver.v1 import task_pb2


def mixture(seed_tasks: list[task_pb2.Task], synthetic: list[task_pb2.Task], synthetic_ratio: float, *,
            seed: int) -> list[task_pb2.Task]:
    """Every seed task plus int(len(seed_tasks) x synthetic_ratio) synthetic ones, drawn without
    replacement (all of them when there are fewer), as AgentEvolver's UnifiedMixtureStrategy."""
    want = int(len(seed_tasks) * synthetic_ratio)
    ordered = sorted(synthetic, key=lambda t: t.task_id)  # the draw must not depend on KV order
    drawn = ordered if want >= len(ordered) else random.Random(seed).sample(ordered, want)
    return list(seed_tasks) + drawn


def seed_task_pb(seed, env_id: str) -> task_pb2.Task:
    return task_pb2.Task(task_id=seed.seed_task_id, env_id=env_id, source=task_pb2.TASK_SOURCE_SEED, split=seed.split,
                         query=seed.user_turns[0] if seed.user_turns else "", followup_turns=list(seed.user_turns[1:]),
                         toolsets=list(seed.toolsets))


def choose_train_tasks(tasks: Sequence[task_pb2.Task], stats: Mapping[str, task_pb2.TaskStats], n: int, *,
                       seed: int, step: int) -> list[task_pb2.Task]:
    """The curriculum's draw for one step (attempts and successes so far per task), seeded by
    the run seed and the step: a resumed step draws the same tasks from the same stats."""
    by_id = {t.task_id: t for t in tasks}
    records = [curriculum.TaskRecord(t.task_id, stats[t.task_id].attempts if t.task_id in stats else 0,
                                     stats[t.task_id].successes if t.task_id in stats else 0) for t in tasks]
    return [by_id[t] for t in curriculum.sample(records, n, seed=seed * 100003 + step)]


def select_eval_tasks(heldout: Sequence[task_pb2.Task], test: Sequence[task_pb2.Task], synthetic_n: int,
                      frozen: Sequence[str]) -> list[task_pb2.Task]:
    """The first held-out synthetic tasks (by id) and the test seed tasks; or, once the run froze
    its evaluation set, exactly the tasks it named (the pool may have grown since)."""
    ordered = sorted(heldout, key=lambda t: t.task_id)
    if frozen:
        by_id = {t.task_id: t for t in [*ordered, *test]}
        return [by_id[t] for t in frozen if t in by_id]
    return [*ordered[:synthetic_n], *test]
