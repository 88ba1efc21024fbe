"""The learning benchmark's own arithmetic (bench/learning.py): which points a change spans, what
the ablation says each mechanism contributed, pooling over seeds, and the checks before a run
borrows another run's base and warm-start evaluations. No stack: result records are built here."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

import pytest

from evolver.v1 import task_pb2

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_learning", ROOT / "bench" / "learning.py")
learning = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learning)

TASKS = [f"h{i}" for i in range(12)]


def evaluated(stage: float, scores: dict[str, float]) -> dict:
    """One evaluated progress event's metrics: per-task avg@k of the held-out synthetic set."""
    return {"stage": stage, **{f"task_avg:synthetic/{t}": v for t, v in scores.items()}}


def result(setting: str, base: float, warm: float, end: float, seed: int = 0) -> dict:
    """A run whose every held-out task scored base, then warm, then end (the end's evaluation is
    stage 2, after RL)."""
    return {"setting": setting, "seed": seed, "run_id": f"learning-x-{setting}",
            "evaluations": [evaluated(0.0, dict.fromkeys(TASKS, base)), evaluated(1.0, dict.fromkeys(TASKS, warm)),
                            evaluated(2.0, dict.fromkeys(TASKS, end))]}


def test_a_runs_three_changes_span_base_warm_start_and_end():
    ch = learning.changes(result("all", 0.0, 0.25, 0.5))["synthetic"]
    assert ch["base -> warm start"]["delta"] == pytest.approx(0.25)
    assert ch["warm start -> end"]["delta"] == pytest.approx(0.25)
    assert ch["base -> end"]["delta"] == pytest.approx(0.5)
    assert all(d["excludes_zero"] and d["tasks"] == len(TASKS) for d in ch.values())


def test_the_ablation_credits_rl_from_the_warm_start_and_each_mechanism_against_plain_rl():
    results = [result("+ questioning RL", 0.0, 0.2, 0.3), result("+ navigating", 0.0, 0.2, 0.4),
               result("+ attributing", 0.0, 0.2, 0.3), result("all", 0.0, 0.2, 0.25)]
    c = learning.contributions(results)
    assert c["questioning RL (vs bootstrapping only)"]["synthetic"]["delta"] == pytest.approx(0.1)
    assert c["navigating (vs questioning RL)"]["synthetic"]["delta"] == pytest.approx(0.1)
    # no change is within noise, and says so: its interval holds 0
    attributing = c["attributing (vs questioning RL)"]["synthetic"]
    assert attributing["delta"] == pytest.approx(0.0) and not attributing["excludes_zero"]
    assert c["navigating + attributing (vs questioning RL)"]["synthetic"]["delta"] == pytest.approx(-0.05)


def test_the_ablation_says_nothing_before_its_questioning_rl_setting_ran():
    assert learning.contributions([result("+ navigating", 0.0, 0.2, 0.4)]) == {}


def test_a_setting_that_borrowed_the_base_and_warm_start_points_is_credited_from_them():
    """A run with eval.before_training off has only its end evaluation; the bench puts the
    measuring run's base and warm-start evaluations before it (run_setting)."""
    measuring = result("+ questioning RL", 0.0, 0.2, 0.3)
    borrowing = {"setting": "+ navigating", "seed": 0, "run_id": "b",
                 "evaluations": measuring["evaluations"][:2] + [evaluated(2.0, dict.fromkeys(TASKS, 0.45))]}
    c = learning.contributions([measuring, borrowing])
    assert c["navigating (vs questioning RL)"]["synthetic"]["delta"] == pytest.approx(0.15)


def test_pooling_over_seeds_pairs_each_seeds_own_tasks():
    # the same task ids in two seeds are different tasks (each seed builds its own pool)
    pooled = learning.pooled_over_seeds([result("all", 0.0, 0.2, 0.2, seed=0),
                                         result("all", 0.0, 0.2, 0.3, seed=1)], k=4)
    assert pooled["warm start -> end"]["tasks"] == 2 * len(TASKS)
    assert pooled["warm start -> end"]["delta"] == pytest.approx(0.05)
    assert pooled["base -> end"]["delta"] == pytest.approx(0.25)


@pytest.fixture
def measured_setup(tmp_path):
    """A main-mode result file, the pool it evaluated and the warm start it kept."""
    pool = {t: base64.b64encode(task_pb2.Task(task_id=t, split="heldout").SerializeToString()).decode()
            for t in TASKS}
    pool["t0"] = base64.b64encode(task_pb2.Task(task_id="t0", split="train").SerializeToString()).decode()
    pool_path = tmp_path / "task_pool.json"
    pool_path.write_text(json.dumps(pool))
    eval_cfg = {"synthetic_tasks": 12, "seed_tasks": 0, "k": 4}
    source = result("all", 0.0, 0.2, 0.2)
    run_path = tmp_path / "main.json"
    run_path.write_text(json.dumps({"config": {"eval": eval_cfg}, "results": [source]}))
    runs = tmp_path / "runs"
    (runs / source["run_id"]).mkdir(parents=True)
    warm = runs / source["run_id"] / "warm_start.bin"
    warm.write_bytes(b"adapter-1")
    return {"run": run_path, "pool": pool_path, "warm": warm, "runs": (runs,), "base": {"eval": eval_cfg},
            "source": source}


def test_a_run_borrows_the_measured_points_and_names_where_they_came_from(measured_setup):
    s = measured_setup
    m = learning.measured_by(s["run"], s["base"], s["pool"], s["warm"], s["runs"])
    assert m["evaluations"] == s["source"]["evaluations"]
    assert m["run_id"] == f"main.json:{s['source']['run_id']}"


def test_borrowing_refuses_another_evaluation_setting(measured_setup):
    s = measured_setup
    with pytest.raises(SystemExit, match="other settings"):
        learning.measured_by(s["run"], {"eval": {**s["base"]["eval"], "k": 2}}, s["pool"], s["warm"], s["runs"])


def test_borrowing_refuses_a_pool_whose_held_out_tasks_were_not_the_ones_evaluated(measured_setup, tmp_path):
    s = measured_setup
    other = tmp_path / "other_pool.json"
    other.write_text(json.dumps({t: base64.b64encode(task_pb2.Task(task_id=t, split="train").SerializeToString())
                                 .decode() for t in TASKS}))
    with pytest.raises(SystemExit, match="not held-out tasks"):
        learning.measured_by(s["run"], s["base"], other, s["warm"], s["runs"])


def test_borrowing_refuses_a_warm_start_other_than_the_one_the_measuring_run_kept(measured_setup, tmp_path):
    s = measured_setup
    other = tmp_path / "warm_start.bin"
    other.write_bytes(b"adapter-2")
    with pytest.raises(SystemExit, match="another warm start"):
        learning.measured_by(s["run"], s["base"], s["pool"], other, s["runs"])
    copy = tmp_path / "copy.bin"
    copy.write_bytes(b"adapter-1")  # the same bytes elsewhere (the bench copies it) are the same warm start
    assert learning.measured_by(s["run"], s["base"], s["pool"], copy, s["runs"])["evaluations"]


def test_borrowing_needs_a_warm_start_evaluation(measured_setup):
    s = measured_setup
    run = json.loads(s["run"].read_text())
    run["results"][0]["evaluations"] = [run["results"][0]["evaluations"][0], run["results"][0]["evaluations"][2]]
    s["run"].write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="no warm-start evaluation"):
        learning.measured_by(s["run"], s["base"], s["pool"], s["warm"], s["runs"])


def written_run(path: Path, seed: int, end: float, eval_cfg: dict) -> Path:
    """A main-mode --out of one seed, as the bench writes it."""
    r = result("all", 0.0, 0.2, end, seed=seed) | {"success_rate_per_step": [0.5]}
    r["changes"] = learning.changes(r)
    path.write_text(json.dumps({"mode": "main", "steps": 8, "commit": "c", "total_wall_s": 1.0,
                                "config": {"eval": eval_cfg, "group_size": 8}, "results": [r]}))
    return path


def test_pooling_accepts_runs_that_differ_only_in_bfcl_test_tasks(tmp_path):
    a = written_run(tmp_path / "a.json", 0, 0.3, {"synthetic_tasks": 12, "seed_tasks": 0, "k": 4})
    b = written_run(tmp_path / "b.json", 1, 0.2, {"synthetic_tasks": 12, "seed_tasks": 10, "k": 4})
    learning.pool_written([a, b], tmp_path / "pooled.json", tmp_path / "pooled.png")
    pooled = json.loads((tmp_path / "pooled.json").read_text())["pooled_synthetic"]
    assert pooled["warm start -> end"]["tasks"] == 2 * len(TASKS)
    assert pooled["warm start -> end"]["delta"] == pytest.approx(0.05)


def test_pooling_refuses_runs_with_another_synthetic_evaluation(tmp_path):
    a = written_run(tmp_path / "a.json", 0, 0.3, {"synthetic_tasks": 12, "seed_tasks": 0, "k": 4})
    b = written_run(tmp_path / "b.json", 1, 0.2, {"synthetic_tasks": 12, "seed_tasks": 0, "k": 2})
    with pytest.raises(SystemExit, match="settings differ"):
        learning.pool_written([a, b], tmp_path / "pooled.json", tmp_path / "pooled.png")


def main_run_of_all(path: Path, base: dict, borrowed_from: str, seed: int = 0) -> Path:
    """A main-mode --out whose one run started RL from a kept warm start and borrowed the
    base and warm-start points of borrowed_from."""
    r = result("all", 0.0, 0.2, 0.3, seed=seed) | {"mechanisms": dict(learning.ALL_ON),
                                                   "warm_start_from": "pools/warm_start.bin",
                                                   "base_and_warm_start_evaluations_from": borrowed_from}
    path.write_text(json.dumps({"mode": "main", "config": base, "results": [r]}))
    return path


def test_the_ablation_takes_its_all_setting_from_a_main_run_that_already_is_it(tmp_path):
    base = {"steps": 8, "eval": {"synthetic_tasks": 12, "seed_tasks": 0, "k": 4}}
    measured = {"run_id": "seed0_mb4.json:learning-0-seed0"}
    path = main_run_of_all(tmp_path / "main.json", base, measured["run_id"])
    taken = learning.all_from(path, "ablation", base, 0, measured)
    assert taken["setting"] == "all" and taken["result_from"] == str(path)
    questioning = result("+ questioning RL", 0.0, 0.2, 0.25)
    c = learning.contributions([questioning, taken])
    assert c["navigating + attributing (vs questioning RL)"]["synthetic"]["delta"] == pytest.approx(0.05)


@pytest.mark.parametrize("why", ["settings", "seed", "warm start"])
def test_the_ablation_refuses_an_all_setting_that_is_not_the_same_experiment(tmp_path, why):
    base = {"steps": 8, "eval": {"synthetic_tasks": 12, "seed_tasks": 0, "k": 4}}
    measured = {"run_id": "seed0_mb4.json:learning-0-seed0"}
    ran = {"settings": ({**base, "steps": 4}, measured["run_id"], 0),
           "seed": (base, measured["run_id"], 1),
           "warm start": (base, "other.json:learning-0-seed0", 0)}[why]
    path = main_run_of_all(tmp_path / "main.json", ran[0], ran[1], seed=ran[2])
    with pytest.raises(SystemExit):
        learning.all_from(path, "ablation", base, 0, measured)


def test_the_ablation_takes_its_all_setting_from_the_run_that_made_the_warm_start(tmp_path):
    base = {"steps": 4, "eval": {"synthetic_tasks": 12, "seed_tasks": 0, "k": 4}}
    path = tmp_path / "seed0_mb4.json"
    r = result("all", 0.0, 0.2, 0.3) | {"mechanisms": dict(learning.ALL_ON), "warm_start_from": None}
    path.write_text(json.dumps({"mode": "main", "config": base, "results": [r]}))
    measured = {"run_id": f"seed0_mb4.json:{r['run_id']}"}
    assert learning.all_from(path, "ablation", base, 0, measured)["result_from"] == str(path)
    with pytest.raises(SystemExit):  # another run that fine-tuned its own warm start is not it
        learning.all_from(path, "ablation", base, 0, {"run_id": "other.json:learning-0-seed0"})


def written_ablation(path: Path, seed: int, navigating_end: float, settings=("+ questioning RL", "+ navigating")) -> Path:
    """An ablation --out of one seed: questioning RL from 0.2 to 0.2, + navigating to navigating_end."""
    ends = {"+ questioning RL": 0.2, "+ navigating": navigating_end, "+ attributing": 0.1}
    results = [result(name, 0.0, 0.2, ends[name], seed=seed) | {"success_rate_per_step": [0.5]} for name in settings]
    for r in results:
        r["changes"] = learning.changes(r)
    path.write_text(json.dumps({"mode": "ablation", "steps": 4, "commit": "c", "total_wall_s": 1.0,
                                "config": {"eval": {"synthetic_tasks": 12, "seed_tasks": 0, "k": 4}},
                                "contributions": learning.contributions(results), "results": results}))
    return path


def test_pooling_ablations_pools_each_contribution_every_seed_measured(tmp_path):
    a = written_ablation(tmp_path / "a.json", 0, 0.3, ("+ questioning RL", "+ navigating", "+ attributing"))
    b = written_ablation(tmp_path / "b.json", 1, 0.4)
    learning.pool_written([a, b], tmp_path / "pooled.json", tmp_path / "pooled.png")
    out = json.loads((tmp_path / "pooled.json").read_text())
    pooled = out["pooled_contributions"]
    nav = pooled["navigating (vs questioning RL)"]
    assert nav["delta"] == pytest.approx(0.15) and nav["tasks"] == 2 * len(TASKS)  # (0.1 + 0.2) / 2
    assert pooled["questioning RL (vs bootstrapping only)"]["delta"] == pytest.approx(0.0)
    assert "attributing (vs questioning RL)" not in pooled  # seed 1 never ran it
    assert out["contributions"]["attributing (vs questioning RL), seed 0"]["synthetic"]["delta"] == pytest.approx(-0.1)
    assert (tmp_path / "pooled.png").stat().st_size > 0


def test_pooling_refuses_an_ablation_file_of_two_seeds(tmp_path):
    a = written_ablation(tmp_path / "a.json", 0, 0.3)
    two = json.loads(a.read_text())
    two["results"].append(result("+ attributing", 0.0, 0.2, 0.1, seed=1) | {"success_rate_per_step": [0.5]})
    a.write_text(json.dumps(two))
    b = written_ablation(tmp_path / "b.json", 2, 0.4)
    with pytest.raises(SystemExit, match="more than one seed"):
        learning.pool_written([a, b], tmp_path / "pooled.json", tmp_path / "pooled.png")


def drawn(tmp_path, monkeypatch, settings: list[str]):
    """The figure plot() draws for these settings' results (kept from plt.close) and its PNG."""
    import matplotlib.pyplot as plt
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    results = [{**result(s, 0.0, 0.2, 0.3), "success_rate_per_step": [0.2, 0.4], "good_rate_per_step": [0.5, 0.6]}
               for s in settings]
    for r in results:
        r["changes"] = learning.changes(r)
        for e in r["evaluations"]:  # the held-out panel's points: each stage's avg@k and best@k
            e["eval_synthetic_avg_at_k"] = e["eval_synthetic_best_at_k"] = e["stage"] / 4
    png = tmp_path / "curves.png"
    learning.plot({"config": {"eval": {"k": 4}}, "results": results}, png)
    assert png.stat().st_size > 0
    (fig,) = kept
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}, [ax for ax in fig.axes if not ax.axison]


def test_a_runs_legends_sit_on_its_panels(tmp_path, monkeypatch):
    panels, beside = drawn(tmp_path, monkeypatch, ["all"])
    assert beside == []
    assert all(ax.get_legend() is not None for ax in panels.values() if ax.get_lines())


def test_an_ablations_legends_sit_beside_its_panels_not_over_their_lines(tmp_path, monkeypatch):
    settings = ["+ questioning RL", "+ navigating", "+ attributing", "all"]
    panels, beside = drawn(tmp_path, monkeypatch, settings)
    assert all(ax.get_legend() is None for ax in panels.values())
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in beside]
    assert len(labels) == 2  # one for the held-out panel, one for the train panel
    assert all(any(s in text for text in group) for s in settings for group in labels), labels
