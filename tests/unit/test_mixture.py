"""The training mixture of seed and synthetic tasks (AgentEvolver spec §3.6)."""

from evolver.v1 import task_pb2
from services.trainer.run_config import parse_run_spec
from services.trainer.tasks import mixture


def tasks(prefix: str, n: int) -> list[task_pb2.Task]:
    return [task_pb2.Task(task_id=f"{prefix}{i}") for i in range(n)]


def test_seed_tasks_plus_a_ratio_of_synthetic_ones():
    seeds, synthetic = tasks("seed", 4), tasks("syn", 10)
    half = mixture(seeds, synthetic, 0.5, seed=1)
    assert [t.task_id for t in half[:4]] == ["seed0", "seed1", "seed2", "seed3"]
    assert len(half) == 6 and all(t.task_id.startswith("syn") for t in half[4:])
    assert [t.task_id for t in mixture(seeds, list(reversed(synthetic)), 0.5, seed=1)] == [t.task_id for t in half]
    assert len(mixture(seeds, synthetic, 10.0, seed=1)) == 14  # not enough synthetic: all of them
    assert mixture(seeds, synthetic, 0.0, seed=1) == seeds


def test_the_mixture_is_off_by_default_and_validated():
    spec = parse_run_spec("questioning: {use_seed_tasks: true, synthetic_ratio: 2}")
    assert spec.questioning.use_seed_tasks and spec.questioning.synthetic_ratio == 2
    assert not parse_run_spec("{}").questioning.use_seed_tasks
