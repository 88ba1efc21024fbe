"""Learning ablation on SmolLM2-135M, CPU (AgentEvolver §11.1's table, at our scale).

Four runs from the same base model, with the same budget and seeds, each on a fresh embedded
stack (empty memory and task pool, so no setting learns from another's rollouts); the task pool
is generated first in each (self-questioning is seeded, so all four get the same tasks):
  1. questioning only               (navigating off, attributing off: plain GRPO)
  2. questioning + navigating
  3. questioning + attributing
  4. all three
Each run evaluates before and after training on the held-out synthetic tasks and on the BFCL
multi_turn_base test split (avg@k, best@k). Before-training numbers are measured in every run
(same policy, tasks and seeds: they double as a determinism check).

  .venv/bin/python bench/learning.py [--steps 4] [--out docs/bench_learning.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver.bus import Bus  # noqa: E402
from evolver.cli import DEFAULT_CONFIG  # noqa: E402
from evolver.config import load_settings  # noqa: E402
from evolver.rpc import channel, stub  # noqa: E402
from evolver.stack import Stack  # noqa: E402
from evolver.v1 import task_gen_service_pb2 as tg  # noqa: E402
from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc  # noqa: E402
from evolver.v1 import task_pb2  # noqa: E402

console = Console()
SETTINGS = [
    ("questioning only", {"questioning": True, "navigating": False, "attributing": False}),
    ("+ navigating", {"questioning": True, "navigating": True, "attributing": False}),
    ("+ attributing", {"questioning": True, "navigating": False, "attributing": True}),
    ("all three", {"questioning": True, "navigating": True, "attributing": True}),
]


async def build_pool(state, spec: dict) -> tuple[int, int]:
    """GenerateTasks once and wait until every exploration has been turned into tasks."""
    q = spec["questioning"]
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": state.nats_url}), name="bench-learning")
    done: set[str] = set()

    async def on_msg(event) -> None:
        if event.message is not None:
            done.add(event.message.explore_request_id)
    sub = await bus.subscribe("tasks.accepted", on_msg)
    try:
        async with channel(state.address_of("task_gen")) as ch:
            task_gen = stub(tg_grpc.TaskGenServiceStub, ch, 60.0)
            r = await task_gen.GenerateTasks(tg.GenerateTasksRequest(
                env_id=spec["env_id"], explorations=q["explorations"], walks_per_exploration=q["walks_per_exploration"],
                max_steps_per_walk=q["max_steps_per_walk"], seed=spec["seed"], max_calls_per_task=q["max_calls_per_task"]))
            deadline = time.monotonic() + 600
            while not set(r.explore_request_ids) <= done and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
            counts = []
            for split in ("train", "heldout"):
                lt = await task_gen.ListTasks(tg.ListTasksRequest(env_id=spec["env_id"], split=split,
                                                                  source=task_pb2.TASK_SOURCE_SYNTHETIC))
                counts.append(len(lt.tasks))
    finally:
        await sub.close()
        await bus.close()
    return counts[0], counts[1]


def eval_metrics(run_dir: Path) -> tuple[dict, dict, dict]:
    progress = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    evals = [p["metrics"] for p in progress if p["phase"] == "evaluated"]
    trained = [p["metrics"] for p in progress if p["phase"] == "trained"]
    return evals[0], evals[-1], {"reward_mean_per_step": [t.get("reward_mean", 0.0) for t in trained],
                                 "success_rate_per_step": [t.get("success_rate", 0.0) for t in trained],
                                 "guided_trajectories": sum(t.get("guided_trajectories", 0) for t in trained),
                                 "good_rate_per_step": [t.get("good_rate", 0.0) for t in trained]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="base run config (mechanisms are overridden)")
    ap.add_argument("--state-dir", default=str(ROOT / ".evolver-bench-learning"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_learning.json"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "bench-learning"))
    args = ap.parse_args()

    base = yaml.safe_load(Path(args.config).read_text())
    base["steps"] = args.steps
    from evolver.models import prepare
    os.environ["EVOLVER_POLICY__MODEL_DIR"] = str(prepare.prepare())
    t0 = time.time()
    results = []
    for i, (name, mech) in enumerate(SETTINGS):
        # A fresh stack per setting: empty memory and pool, so no setting learns from another's
        # rollouts. Exploration is seeded, so every setting gets the same task pool (checked).
        state_dir = Path(args.state_dir) / f"setting{i}"
        shutil.rmtree(state_dir, ignore_errors=True)
        stack = Stack(state_dir)
        run_id = f"ablation-{i}"
        console.rule(f"{name}: {run_id}")
        try:
            with console.status("starting the embedded stack..."):
                state = stack.up()
            with console.status("self-questioning: building the task pool..."):
                pool = asyncio.run(build_pool(state, base))
            console.print(f"task pool: {pool[0]} train, {pool[1]} held-out synthetic tasks")
            cfg_path = state_dir / "run.yaml"
            cfg_path.write_text(yaml.safe_dump({**base, "mechanisms": mech}))
            start = time.time()
            p = subprocess.run([sys.executable, "-m", "evolver.cli", "--state-dir", str(state_dir), "run",
                                "--config", str(cfg_path), "--run-id", run_id, "--out", args.runs], cwd=ROOT)
            wall = time.time() - start
        finally:
            stack.down()
        if p.returncode != 0:
            raise SystemExit(f"{name} failed (exit {p.returncode}); see {args.runs}/{run_id}")
        before, after, training = eval_metrics(Path(args.runs) / run_id)
        results.append({"setting": name, "mechanisms": mech, "run_id": run_id, "wall_s": round(wall, 1),
                        "pool": {"train": pool[0], "heldout": pool[1]}, "before": before, "after": after,
                        **training})

    k = base["eval"]["k"]
    table = Table(title=f"SmolLM2-135M, {args.steps} steps x {base['tasks_per_step']} tasks x {base['group_size']} "
                        f"rollouts; held-out avg@{k} / best@{k} before -> after")
    for col in ("setting", f"synthetic avg@{k}", f"synthetic best@{k}", f"BFCL avg@{k}", f"BFCL best@{k}",
                "train success/step", "wall s"):
        table.add_column(col)

    def ba(r, key):
        return f"{r['before'].get(key, 0):.3f} -> {r['after'].get(key, 0):.3f}"
    for r in results:
        table.add_row(r["setting"], ba(r, "eval_synthetic_avg_at_k"), ba(r, "eval_synthetic_best_at_k"),
                      ba(r, "eval_seed_avg_at_k"), ba(r, "eval_seed_best_at_k"),
                      " ".join(f"{x:.2f}" for x in r["success_rate_per_step"]), f"{r['wall_s']:.0f}")
    console.print(table)
    out = {"model": "SmolLM2-135M-Instruct", "device": "cpu", "steps": args.steps, "config": base, "results": results,
           "total_wall_s": round(time.time() - t0, 1)}
    Path(args.out).write_text(json.dumps(out, indent=2))
    console.print(f"total {out['total_wall_s']:.0f}s; written to {args.out}")


if __name__ == "__main__":
    main()
