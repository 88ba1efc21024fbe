"""The run's time budget (services/trainer/time_budget.py): how many RL steps still fit."""

from services.trainer.checkpoint import Checkpoint
from services.trainer.run_config import parse_run_spec
from services.trainer.time_budget import affordable_steps, planned_steps


def test_no_budget_keeps_the_configured_steps():
    assert planned_steps(4, 0, 0, 0.0, 10_000.0, [500.0], [300.0]) == 4


def test_steps_that_fit_before_the_final_evaluation():
    # 780 s budget, 300 s gone, the longest evaluation 100 s, steps of 120 s: 380 s left -> 3 steps
    assert affordable_steps(780, 300, [120.0], [60.0, 100.0]) == 3
    assert planned_steps(4, 1, 1, 780, 300, [120.0], [60.0, 100.0]) == 4  # step 1 + 3 more
    assert planned_steps(4, 1, 1, 780, 420, [120.0], [60.0, 100.0]) == 3  # 260 s left: steps 1 and 2


def test_a_measured_step_replaces_the_evaluation_standing_in_for_it():
    # before any step, an evaluation's 100 s stands in: (780 - 200 - 100) / 100 = 4.8 -> 4
    assert affordable_steps(780, 200, [], [100.0]) == 4
    # a 240 s step measured: (780 - 440 - 100) / 240 = 1
    assert affordable_steps(780, 440, [240.0], [100.0]) == 1


def test_the_current_step_and_steps_already_asked_for_always_run():
    over = dict(budget_s=60.0, elapsed_s=900.0, step_s=[200.0], eval_s=[100.0])
    assert affordable_steps(**over) == 1
    assert planned_steps(4, 2, 2, **over) == 3  # step 2 runs, then the final evaluation
    assert planned_steps(4, 2, 3, **over) == 4  # step 3's rollouts were already asked for
    assert planned_steps(2, 0, 0, **over) == 1


def test_never_more_than_planned():
    assert planned_steps(3, 0, 0, 10_000.0, 0.0, [1.0], [1.0]) == 3
    assert planned_steps(2, 1, 1, 10_000.0, 0.0, [1.0], [1.0]) == 2  # an earlier cut stays


def test_the_default_run_has_a_budget_and_the_checkpoint_keeps_what_it_measured(tmp_path):
    from pathlib import Path
    spec = parse_run_spec((Path(__file__).resolve().parents[2] / "configs" / "default.yaml").read_text())
    assert 0 < spec.time_budget_minutes <= 15
    ckpt = Checkpoint(step=2, started_unix=1.5, eval_s=[3.0], step_s=[4.0, 5.0], planned_steps=3)
    again = Checkpoint.from_bytes(ckpt.to_bytes())
    assert (again.started_unix, again.eval_s, again.step_s, again.planned_steps) == (1.5, [3.0], [4.0, 5.0], 3)
    assert Checkpoint.from_bytes(b'{"step": 1}').planned_steps == 0  # an older checkpoint: spec.steps
