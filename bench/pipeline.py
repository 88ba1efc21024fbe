"""Synchronous against asynchronous training on this machine, same budget and seed: a fresh
embedded stack per setting (1 or 2 explorer replicas), the default run config with
rollout.max_policy_lag 0 (synchronous) or 1 (the next step's groups generated while a step
trains), SmolLM2-135M-Instruct on BFCL.

Per setting, over the training window (the first training step's requests to the last update):
  - training steps/hour and rollouts (trajectories)/hour;
  - the trainer's idle share (no `train step` span open) and the explorers' (no `process
    rollout.requested` span open on any replica), from the stack's trace spans;
  - held-out success before and after, with its paired-bootstrap 95% interval;
  - the median seconds of an update (`train step` span) and of a group's rollout.

Every setting trains on one task pool: the first setting's stack explores it (or --pool names a
saved one) and every later fresh stack is loaded with the same tasks, so the settings differ in
the pipeline only (exploration is not reproducible run to run, and different pools confound).

  python bench/pipeline.py [--steps 8] [--replicas 1,2] [--seeds 0] [--pool FILE] [--json docs/bench_pipeline.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.learning import build_pool, load_pool, run_cli, save_pool  # noqa: E402
from bench.pipeline_sim import progress_rows  # noqa: E402
from evolver.algorithms.stats import eval_deltas, stage_metrics  # noqa: E402
from evolver.cli import DEFAULT_CONFIG  # noqa: E402
from evolver.stack import Stack  # noqa: E402
from evolver.stack.processes import exit_on_sigterm  # noqa: E402

console = Console(width=170)


def union_s(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi] covered by at least one interval."""
    total, end = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def measure(run_dir: Path, spans_path: Path, run_id: str) -> dict:
    rows = progress_rows(run_dir / "metrics.jsonl")
    trained = [r for r in rows if r["phase"] == "trained"]
    lo = min(r["t"] for r in rows if r["phase"] == "rollout" and r["metrics"].get("tasks"))
    hi = max(r["t"] for r in trained)
    spans = [json.loads(x) for x in spans_path.read_text().splitlines() if x.strip()]
    explorer = [(s["start_ns"] / 1e9, s["end_ns"] / 1e9) for s in spans
                if s["service"] == "explorer" and s["name"] == "process rollout.requested"
                and run_id in s["attributes"].get("messaging.message.id", "")]
    trainer = [(s["start_ns"] / 1e9, s["end_ns"] / 1e9) for s in spans
               if s["service"] == "trainer" and s["name"].startswith("train step ")
               and s["attributes"].get("evolver.run_id") == run_id]
    window = hi - lo
    durations = lambda spans: sorted(b - a for a, b in spans) or [0.0]  # noqa: E731
    median = lambda xs: xs[len(xs) // 2]  # noqa: E731
    trajectories = sum(r["metrics"].get("trajectories", 0) for r in trained)
    evals = [r["metrics"] for r in rows if r["phase"] == "evaluated"]
    base, _, end = stage_metrics(evals)
    deltas = {k: vars(v) for k, v in eval_deltas(base, end).items()}
    return {"window_s": window, "steps": len(trained), "steps_per_hour": len(trained) / window * 3600,
            "rollouts_per_hour": trajectories / window * 3600,
            "trainer_idle": 1 - union_s(trainer, lo, hi) / window,
            "explorer_idle": 1 - union_s(explorer, lo, hi) / window,
            "stale_groups": sum(r["metrics"].get("stale_groups", 0) for r in trained),
            "update_s_median": median(durations(trainer)), "group_rollout_s_median": median(durations(explorer)),
            "heldout": deltas, "end_eval": dict(end)}


def fmt(d: dict | None) -> str:
    return f"{d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-"


def run_setting(args, base: dict, lag: int, replicas: int, seed: int, pool_file: Path) -> dict:
    name = f"lag{lag}-x{replicas}-seed{seed}"
    state_dir = Path(args.state_dir) / name
    shutil.rmtree(state_dir, ignore_errors=True)
    stack = Stack(state_dir)
    run_id = f"pipeline-{name}"
    cfg = json.loads(json.dumps(base))
    cfg["rollout"]["max_policy_lag"] = lag
    cfg["seed"] = seed
    console.rule(f"max_policy_lag {lag}, {replicas} explorer(s): {run_id}")
    try:
        state = stack.up(replicas={"explorer": replicas})
        if pool_file.exists():
            pool = asyncio.run(load_pool(state, pool_file, cfg["env_id"]))
        else:
            pool = asyncio.run(build_pool(state, cfg))
            console.print(f"saved the task pool ({asyncio.run(save_pool(state, pool_file))} tasks) to {pool_file}")
        console.print(f"task pool: {pool[0]} train, {pool[1]} held-out synthetic")
        run_dir = run_cli(state_dir, cfg, run_id, args.runs)
        time.sleep(3)  # spans are exported in batches
        out = measure(run_dir, state.spans_path, run_id)
    finally:
        stack.down()
    return {"setting": name, "max_policy_lag": lag, "explorers": replicas, "seed": seed, "pool": pool, **out}


def main() -> None:
    exit_on_sigterm()  # a SIGTERM takes the stack this benchmark started down with it
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--replicas", default="1,2")
    ap.add_argument("--seeds", default="0", help="rollout/training seeds; the pool is the same for all")
    ap.add_argument("--pool", default="", help="a saved task pool (JSON); default: explore one and save it")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--eval-synthetic", type=int, default=8)
    ap.add_argument("--eval-bfcl", type=int, default=0, help="BFCL test tasks evaluated (thousands of prompt tokens each)")
    ap.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=False,
                    help="the default config's warm start (outside the measured window either way)")
    ap.add_argument("--state-dir", default=str(ROOT / ".evolver-bench-pipeline"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "bench-pipeline"))
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    base = yaml.safe_load(Path(args.config).read_text())
    base["steps"] = args.steps
    base["time_budget_minutes"] = 0  # every step measured: the default run's time budget is not the benchmark's
    base["eval"] = {**base["eval"], "synthetic_tasks": args.eval_synthetic, "seed_tasks": args.eval_bfcl}
    base["mechanisms"]["bootstrapping"] = args.warm_start
    from evolver.models import prepare
    os.environ["EVOLVER_POLICY__MODEL_DIR"] = str(prepare.prepare())
    pool_file = Path(args.pool) if args.pool else Path(args.state_dir) / "pool.json"
    if not args.pool:
        pool_file.unlink(missing_ok=True)
    pool_file.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in [int(x) for x in args.seeds.split(",")]:
        for replicas in [int(x) for x in args.replicas.split(",")]:
            for lag in (0, 1):  # interleaved per replica count: the same machine state for both
                results.append(run_setting(args, base, lag, replicas, seed, pool_file))
                if args.json:  # what has run so far survives an interrupted bench
                    Path(args.json).write_text(json.dumps({"steps": args.steps, "results": results}, indent=2))
    t = Table(title=f"SmolLM2-135M, {args.steps} steps x {base['tasks_per_step']} tasks x {base['group_size']} "
                    "attempts, 2 cores: synchronous (lag 0) vs asynchronous (lag 1)")
    for col in ("seed", "explorers", "lag", "steps/h", "rollouts/h", "async/sync", "trainer idle", "explorer idle",
                "stale", "update s", "group s", "held-out synthetic Δ [95% CI]"):
        t.add_column(col, justify="right")
    sync = {(r["seed"], r["explorers"]): r for r in results if r["max_policy_lag"] == 0}
    for r in results:  # held-out success after the same steps: async end vs sync end, paired by task
        s = sync.get((r["seed"], r["explorers"]))
        if r["max_policy_lag"] and s:
            r["heldout_vs_sync"] = {k: vars(v) for k, v in eval_deltas(s["end_eval"], r["end_eval"]).items()}
    t.add_column("async - sync at end [95% CI]", justify="right")
    for r in results:
        d = r["heldout"].get("synthetic")
        ratio = r["steps_per_hour"] / sync[r["seed"], r["explorers"]]["steps_per_hour"]
        t.add_row(str(r["seed"]), str(r["explorers"]), str(r["max_policy_lag"]), f"{r['steps_per_hour']:.1f}",
                  f"{r['rollouts_per_hour']:.0f}", f"{ratio:.2f}x",
                  f"{r['trainer_idle']:.0%}", f"{r['explorer_idle']:.0%}", str(int(r["stale_groups"])),
                  f"{r['update_s_median']:.0f}", f"{r['group_rollout_s_median']:.0f}",
                  fmt(d), fmt(r.get("heldout_vs_sync", {}).get("synthetic")))
    console.print(t)
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": args.steps, "results": results}, indent=2))


if __name__ == "__main__":
    main()
