"""Run configuration (validated, key named) and the run report (markdown + PNG plots)."""

from __future__ import annotations

import pytest

from evolver.cli import DEFAULT_CONFIG, load_spec
from evolver.cli.report import write_report
from services.trainer.run_config import RunConfigError, from_run_config, parse_run_spec, to_run_config


def test_default_config_is_valid_and_round_trips_through_the_proto():
    spec = load_spec(None, {})
    assert DEFAULT_CONFIG.exists() and spec.mechanisms.questioning and spec.mechanisms.navigating
    again = from_run_config(to_run_config(spec))
    assert again == spec
    assert load_spec(None, {"steps": 7}).steps == 7


@pytest.mark.parametrize("text,field", [
    ("rollout: {temprature: 1}", "rollout.temprature"),
    ("group_size: 1", "group_size"),
    ("attributing: {scheme: magic}", "attributing.scheme"),
    ("navigating: {guided_share: 1.5}", "navigating.guided_share"),
    ("bootstrapping: {warm_start_from: ../other-stack}", "bootstrapping.warm_start_from"),
    ("- a list", "config_yaml"),
])
def test_bad_config_names_the_key(text, field):
    with pytest.raises(RunConfigError) as e:
        parse_run_spec(text)
    assert e.value.field == field


def test_report_has_tables_and_plots(tmp_path):
    progress = [
        {"phase": "evaluated", "train_step": 0, "metrics": {"eval_synthetic_avg_at_k": 0.1, "eval_seed_avg_at_k": 0.0}},
        {"phase": "trained", "train_step": 1, "metrics": {"reward_mean": 0.2, "success_rate": 0.25, "good_rate": 0.5}},
        {"phase": "trained", "train_step": 2, "metrics": {"reward_mean": 0.4, "success_rate": 0.5, "good_rate": 0.6}},
        {"phase": "evaluated", "train_step": 2, "metrics": {"eval_synthetic_avg_at_k": 0.3, "eval_seed_avg_at_k": 0.0}},
    ]
    summary = {"walks_explored": 8, "tasks_generated": 20, "tasks_accepted": 12, "experiences_stored": 3,
               "experiences_injected": 5}
    out = write_report(tmp_path, {"run_id": "r", "state": "SUCCEEDED", "train_step": 2, "policy_version": 2},
                       progress, summary)
    text = out.read_text()
    assert "| eval_synthetic_avg_at_k | 0.100 | 0.300 |" in text
    assert "| tasks_accepted | 12 |" in text and "| reward_mean | 0.4 |" in text
    for png in ("reward.png", "heldout.png", "attribution.png", "pipeline.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG" and f"]({png})" in text
