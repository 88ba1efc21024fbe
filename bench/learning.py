"""Learning on SmolLM2-135M, CPU: does Evolver make the agent better, and which mechanism does it?

Every run starts from the same base model on a fresh embedded stack (empty memory and task pool,
so no run learns from another's rollouts); the task pool is generated first. Exploration is not
reproducible run to run even at one seed (the pool of seed 0 had 147/40, 149/38 and 144/43 train/
held-out tasks in three runs: model sampling under concurrency and timing), so the ablation's
settings do not each explore: the first builds the seed's pool and saves it, the others load it,
and every setting trains and is evaluated on the same tasks. Each run evaluates the same frozen set
(held-out synthetic tasks and BFCL test tasks, avg@k and best@k, per-attempt seeds from (seed,
task, attempt)) at three points: the base model, after the warm start (self-bootstrapping), after
RL. Every change is a paired bootstrap over tasks with its 95% interval.

  --mode main       every mechanism on (bootstrapping included), one run per --seeds; target:
                    base -> end >= +0.20 on held-out synthetic avg@k with a CI excluding 0 on
                    every seed, and warm start -> end >= +0.05 with a CI excluding 0 pooled.
  --mode ablation   AgentEvolver's shape (spec §11.1) at one seed and the same budget:
                    bootstrapping only (the warm-start point of the next run), + questioning RL
                    (plain GRPO on self-made tasks), + navigating, + attributing, all; settings
                    after the first start RL from the first's warm start (--no-share-warm-start:
                    each fine-tunes its own), so they differ in their RL phase only, and borrow
                    its base and warm-start evaluations instead of repeating them (eval.
                    before_training off: ~45 min a setting on 2 AMX cores). Each mechanism's contribution is
                    reported with its interval: questioning RL against bootstrapping only, the
                    others against questioning RL. --resume continues an ablation stopped
                    between settings (~4 h on 2 AMX cores; results are written after each).
                    From a main-mode seed's kept pool and warm start (--task-pool, --warm-start,
                    --measured-by), --all-from takes the 'all' setting from a main-mode run that
                    already is it (same seed and settings, RL from that warm start, or the run that made it).

Every run folder keeps its task pool (task_pool.json) and warm start (warm_start.bin): --task-pool
and --warm-start start a later invocation from both, so RL settings can be tried one after another
from one warm start without paying for it again (about 45 of a seed's ~90 minutes).

The defaults are the recorded runs' settings (docs/BENCHMARKS.md, 2026-12-03, fifteenth): a warm
start on 160 replayed solutions x 3 epochs, then 4 RL steps of 8 tasks x 8 rollouts, 4 optimizer
steps each, held near the warm start (KL to it, beta 0.04, imitation at 2e-4); those runs left out
BFCL (--eval-bfcl 0), 120 multi-turn attempts a seed at the default 10 tasks x 4 attempts x 3
points.

  .venv/bin/python bench/learning.py --mode main --seeds 0,1,2 [--eval-bfcl 0] [--out docs/bench_learning.json]
  .venv/bin/python bench/learning.py --pool seed0.json seed1.json --out pooled.json   (seeds run apart;
      main-mode runs or ablations)
  .venv/bin/python bench/learning.py --seeds 0 --task-pool runs/bench-learning/learning-0-seed0/task_pool.json \
      --warm-start runs/bench-learning/learning-0-seed0/warm_start.bin --out docs/other_rl_settings.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver.algorithms.stats import eval_deltas, pooled_delta, stage_metrics, task_scores  # noqa: E402
from evolver.bus import Bus, topology  # noqa: E402
from evolver.cli import DEFAULT_CONFIG  # noqa: E402
from evolver.config import load_settings  # noqa: E402
from evolver.rpc import channel, stub  # noqa: E402
from evolver.stack import Stack  # noqa: E402
from evolver.stack.processes import exit_on_sigterm  # noqa: E402
from evolver.v1 import task_gen_service_pb2 as tg  # noqa: E402
from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc  # noqa: E402
from evolver.v1 import task_pb2  # noqa: E402

console = Console()
DEFAULT_RUNS = ROOT / "runs" / "bench-learning"  # where run folders (pool, warm start) are kept
ALL_ON = {"questioning": True, "navigating": True, "attributing": True, "bootstrapping": True}
ABLATION = [  # "bootstrapping only" is the warm-start point of the first run
    ("+ questioning RL", {"questioning": True, "navigating": False, "attributing": False, "bootstrapping": True}),
    ("+ navigating", {"questioning": True, "navigating": True, "attributing": False, "bootstrapping": True}),
    ("+ attributing", {"questioning": True, "navigating": False, "attributing": True, "bootstrapping": True}),
    ("all", ALL_ON),
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


async def save_pool(state, path: Path) -> int:
    """Write the stack's verified task pool (the task_gen KV bucket) to a file, so that other
    fresh stacks can start from exactly these tasks: exploration is not deterministic run to
    run (model sampling and timing), and comparing settings on different pools confounds them."""
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": state.nats_url}), name="bench-pool")
    try:
        kv = await bus.kv(topology.TASKS_BUCKET)
        raws = {k: await kv.get(k) for k in await kv.keys()}
        tasks = {k: base64.b64encode(raw).decode() for k, raw in raws.items() if raw is not None}
    finally:
        await bus.close()
    path.write_text(json.dumps(tasks, indent=0, sort_keys=True))
    return len(tasks)


async def load_pool(state, path: Path, env_id: str) -> tuple[int, int]:
    """Put a saved pool into a fresh stack's task_gen bucket; a run then skips self-questioning
    (the pool already holds min_train_tasks). Returns the (train, held-out) counts it serves."""
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": state.nats_url}), name="bench-pool")
    try:
        kv = await bus.kv(topology.TASKS_BUCKET)
        for key, raw in json.loads(path.read_text()).items():
            await kv.put(key, base64.b64decode(raw))
    finally:
        await bus.close()
    counts = []
    async with channel(state.address_of("task_gen")) as ch:
        task_gen = stub(tg_grpc.TaskGenServiceStub, ch, 60.0)
        for split in ("train", "heldout"):
            lt = await task_gen.ListTasks(tg.ListTasksRequest(env_id=env_id, split=split,
                                                              source=task_pb2.TASK_SOURCE_SYNTHETIC))
            counts.append(len(lt.tasks))
    return counts[0], counts[1]


def run_cli(state_dir: Path, cfg: dict, run_id: str, runs: str, warm_start: Path | None = None) -> Path:
    """`evolver run` of cfg on the stack in state_dir, in a subprocess as a user runs it; its run
    folder. A failed run stops the bench, naming the folder to look in."""
    cfg_path = state_dir / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    p = subprocess.run([sys.executable, "-m", "evolver.cli", "--state-dir", str(state_dir), "run", "--config",
                        str(cfg_path), "--run-id", run_id, "--out", runs]
                       + (["--warm-start", str(warm_start)] if warm_start else []), cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"run {run_id} failed (exit {p.returncode}); see {runs}/{run_id}")
    return Path(runs) / run_id


def evaluations(run_dir: Path) -> tuple[list[dict], dict]:
    progress = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    evals = [p["metrics"] for p in progress if p["phase"] == "evaluated"]
    trained = [p["metrics"] for p in progress if p["phase"] == "trained"]
    return evals, {"reward_mean_per_step": [t.get("reward_mean", 0.0) for t in trained],
                   "success_rate_per_step": [t.get("success_rate", 0.0) for t in trained],
                   "guided_trajectories": sum(t.get("guided_trajectories", 0) for t in trained),
                   "good_rate_per_step": [t.get("good_rate", 0.0) for t in trained],
                   # each step's token-level balance (services/trainer/advantages.token_balance) and KL
                   "token_balance_per_step": [{k: t.get(k, 0.0) for k in ("token_advantage_mean", "kl",
                                              "policy_tokens_positive", "policy_tokens_negative")}
                                             for t in trained]}


def points(evals: list[dict]) -> dict[str, dict]:
    """The evaluations at base (stage 0), after the warm start (stage 1) and at the end."""
    base, warm, end = stage_metrics(evals)
    return {"base": base, "warm start": warm if warm is not None else base, "end": end}


def run_setting(args, base: dict, name: str, mech: dict, seed: int, index: int, pool_file: Path | None = None,
                warm_start: Path | None = None, measured: dict | None = None) -> dict:
    """pool_file: where the seed's task pool is saved by the first run that builds it and loaded
    by the others (the ablation's settings must compare on the same tasks). warm_start: a
    warm_start.bin to start RL from instead of fine-tuning (made on this pool's train tasks).
    The run folder keeps the pool it ran on (task_pool.json) and its warm start
    (warm_start.bin), so a later invocation can start from both (--task-pool, --warm-start).
    measured: the result of a run that evaluated the base model and this very warm start on this
    pool; this run skips both evaluations (eval.before_training off, about 20 of its minutes) and
    borrows that run's (a replicate matched them: 0.1995 vs 0.1994, BENCHMARKS)."""
    # A fresh stack per run: empty memory and pool, so no run learns from another's rollouts.
    state_dir = Path(args.state_dir) / f"run{index}"
    shutil.rmtree(state_dir, ignore_errors=True)
    stack = Stack(state_dir)
    run_id = f"learning-{index}-seed{seed}"
    console.rule(f"{name}, seed {seed}: {run_id}")
    cfg = {**base, "seed": seed, "mechanisms": mech}
    if measured is not None:
        cfg["eval"] = {**cfg["eval"], "before_training": False}
    try:
        with console.status("starting the embedded stack..."):
            state = stack.up()
        if pool_file is not None and pool_file.exists():
            with console.status("loading this seed's task pool..."):
                pool = asyncio.run(load_pool(state, pool_file, cfg["env_id"]))
            console.print(f"task pool (saved earlier, loaded): {pool[0]} train, {pool[1]} held-out synthetic tasks")
        else:
            with console.status("self-questioning: building the task pool..."):
                pool = asyncio.run(build_pool(state, cfg))
            console.print(f"task pool: {pool[0]} train, {pool[1]} held-out synthetic tasks")
            if pool_file is not None:
                pool_file.parent.mkdir(parents=True, exist_ok=True)
                asyncio.run(save_pool(state, pool_file))
        kept = Path(args.runs) / run_id
        kept.mkdir(parents=True, exist_ok=True)
        asyncio.run(save_pool(state, kept / "task_pool.json"))
        start = time.time()
        run_dir = run_cli(state_dir, cfg, run_id, args.runs, warm_start)
        wall = time.time() - start
    finally:
        stack.down()
    evals, training = evaluations(run_dir)
    borrowed = {}
    if measured is not None:
        base_eval, warm_eval, _ = stage_metrics(measured["evaluations"])
        evals = [base_eval, warm_eval] + evals
        borrowed = {"base_and_warm_start_evaluations_from": measured["run_id"]}
    return {"setting": name, "seed": seed, "mechanisms": mech, "run_id": run_id, "wall_s": round(wall, 1),
            "pool": {"train": pool[0], "heldout": pool[1]}, "evaluations": evals,
            "warm_start_from": str(warm_start) if warm_start else None, **borrowed, **training}


def delta_record(d) -> dict:
    """A Delta as the JSON this bench writes: its fields and whether its interval excludes 0."""
    return asdict(d) | {"excludes_zero": d.excludes_zero}


def changes(result: dict) -> dict[str, dict]:
    """Per task set, the three changes with their intervals."""
    pts = points(result["evaluations"])
    out: dict[str, dict] = {}
    for a, b in (("base", "warm start"), ("warm start", "end"), ("base", "end")):
        for label, d in eval_deltas(pts[a], pts[b]).items():
            out.setdefault(label, {})[f"{a} -> {b}"] = delta_record(d)
    return out


def contribution_points(results: list[dict]) -> dict[str, tuple[dict, dict]]:
    """Each mechanism's contribution as the two evaluations it compares (paired over the same
    held-out tasks): questioning RL is its setting's warm start -> end; navigating, attributing
    and all are their setting's end against the questioning-RL setting's end (the same warm
    start, so only the RL phase differs). Empty until questioning RL has run."""
    by_name = {r["setting"]: points(r["evaluations"]) for r in results}
    rl = by_name.get("+ questioning RL")
    if rl is None:
        return {}
    out = {"questioning RL (vs bootstrapping only)": (rl["warm start"], rl["end"])}
    for name, label in (("+ navigating", "navigating"), ("+ attributing", "attributing"),
                        ("all", "navigating + attributing")):
        if name in by_name:
            out[f"{label} (vs questioning RL)"] = (rl["end"], by_name[name]["end"])
    return out


def contributions(results: list[dict]) -> dict[str, dict]:
    """The ablation's answer at one seed, each mechanism's contribution with its interval."""
    return {what: {label: delta_record(d) for label, d in eval_deltas(*pair).items()}
            for what, pair in contribution_points(results).items()}


def pooled_contributions(results: list[dict]) -> dict[str, dict]:
    """Each contribution pooled over the seeds' ablations (held-out synthetic; every (seed,
    task) pair is a bootstrap unit), for the contributions every seed has."""
    per_seed = [contribution_points([r for r in results if r["seed"] == s])
                for s in sorted({r["seed"] for r in results})]
    pooled = {}
    for what in per_seed[0] if per_seed else {}:
        if all(what in c for c in per_seed):
            d = pooled_delta([(task_scores(c[what][0], "synthetic"), task_scores(c[what][1], "synthetic"))
                              for c in per_seed])
            if d is not None:
                pooled[what] = delta_record(d)
    return pooled


def plot(out: dict, path: Path) -> None:
    """The learning curves a person reads first: held-out success at the three points per seed,
    the RL steps' training success, and every change with its 95% interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = out["config"]["eval"]["k"]
    n_changes = (sum(len(ch) for r in out["results"] for ch in r["changes"].values()) + len(out.get("pooled_synthetic", {}))
                 + sum(len(d) for d in out.get("contributions", {}).values()) + len(out.get("pooled_contributions", {})))
    # An ablation's or pooled file's lines: their legends get columns of their own beside the
    # panels, where over them they hid the lines.
    many = len(out["results"]) > 2
    fig = plt.figure(figsize=(16 if many else 12, 5 + 0.32 * max(n_changes, 3)), dpi=100)
    grid = fig.add_gridspec(2, 4 if many else 2, height_ratios=[4.2, 0.32 * max(n_changes, 3) + 0.8],
                            width_ratios=[0.8, 1, 1, 0.8] if many else None)
    top = (1, 2) if many else (0, 1)
    held, train, change = fig.add_subplot(grid[0, top[0]]), fig.add_subplot(grid[0, top[1]]), fig.add_subplot(grid[1, :])
    names = ["base", "warm start", "end"]
    rows = []
    for r in out["results"]:
        tag = f"{r['setting']}, seed {r['seed']}"
        pts = points(r["evaluations"])
        for key, style in (("eval_synthetic_avg_at_k", "-o"), ("eval_synthetic_best_at_k", "--o"),
                           ("eval_seed_avg_at_k", ":s")):
            if key in pts["base"]:
                label = key.removeprefix("eval_").replace("_at_k", f"@{k}").replace("seed", "BFCL")
                held.plot(names, [pts[n].get(key, float("nan")) for n in names], style, label=f"{label} ({tag})")
        steps = range(1, len(r["success_rate_per_step"]) + 1)
        train.plot(steps, r["success_rate_per_step"], "-o", label=f"success rate ({tag})")
        if any(r.get("good_rate_per_step", [])):
            train.plot(steps, r["good_rate_per_step"], ":", label=f"GOOD step rate ({tag})")
        for label, ch in r["changes"].items():
            for span, d in ch.items():
                if span == "base -> warm start" and r.get("base_and_warm_start_evaluations_from"):
                    continue  # the run that measured it has this row
                rows.append((f"{'held-out synthetic' if label == 'synthetic' else 'BFCL test'}: {span} ({tag})", d))
    for span, d in out.get("pooled_synthetic", {}).items():
        rows.append((f"held-out synthetic: {span} (pooled over seeds)", d))
    for what, deltas in out.get("contributions", {}).items():
        for label, d in deltas.items():
            rows.append((f"{'held-out synthetic' if label == 'synthetic' else 'BFCL test'}: {what}", d))
    for what, d in out.get("pooled_contributions", {}).items():
        rows.append((f"held-out synthetic: {what} (pooled over seeds)", d))
    held.set_title(f"Held-out success (avg@{k}, best@{k})")
    held.set_ylabel("success")
    held.set_ylim(bottom=0)
    train.set_title("RL steps on self-made train tasks")
    train.set_xlabel("training step")
    train.set_ylim(bottom=0)
    train.xaxis.get_major_locator().set_params(integer=True)
    for panel, column, loc in ((held, 0, "upper right"), (train, 3, "upper left")):
        if many:  # the panel's legend in its own column, toward the panel
            beside = fig.add_subplot(grid[0, column])
            beside.axis("off")
            beside.legend(*panel.get_legend_handles_labels(), fontsize=6, loc=loc)
        else:
            panel.legend(fontsize=7, loc="best")
    if rows:
        change.errorbar([d["delta"] for _, d in rows], range(len(rows)),
                        xerr=[[d["delta"] - d["low"] for _, d in rows], [d["high"] - d["delta"] for _, d in rows]],
                        fmt="o", capsize=4, color="#4C72B0")
        change.set_yticks(range(len(rows)), [n for n, _ in rows], fontsize=8)
        change.invert_yaxis()
    change.axvline(0, color="grey", lw=1)
    change.set_xlabel(f"change in avg@{k} with its 95% paired-bootstrap CI over tasks")
    for ax in (held, train, change):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pooled_over_seeds(results: list[dict], k: int) -> dict[str, dict]:
    """Each change pooled over the runs (seeds): every (run, task) pair is a bootstrap unit."""
    pooled = {}
    for a, b in (("base", "warm start"), ("warm start", "end"), ("base", "end")):
        pairs = [(task_scores(points(r["evaluations"])[a], "synthetic"),
                  task_scores(points(r["evaluations"])[b], "synthetic")) for r in results]
        d = pooled_delta(pairs)
        if d is not None:
            pooled[f"{a} -> {b}"] = delta_record(d)
            console.print(f"pooled over seeds {[r['seed'] for r in results]}, held-out synthetic avg@{k}, "
                          f"{a} -> {b}: {d}")
    return pooled


def code_commit() -> str:
    """The commit this benchmark ran on (+dirty with uncommitted changes), so pooled runs can say
    whether they ran the same code."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def pool_written(files: list[Path], out_path: Path, png: Path) -> None:
    """Runs written one seed at a time (a seed takes ~1-2 h on 2 cores) as one result: main-mode
    runs pool their changes, ablations (one seed each) their contributions. Their settings must
    match: a pooled interval over different settings would mean nothing."""
    runs = [json.loads(f.read_text()) for f in files]
    keys = ("steps", "group_size", "tasks_per_step", "eval", "bootstrapping", "rollout", "training")

    def setting(r: dict) -> tuple:
        # Only held-out synthetic changes are pooled: a run that also evaluated BFCL test tasks
        # (eval.seed_tasks) pools with one that did not, on the same synthetic evaluation.
        cfg = {key: r["config"].get(key) for key in keys}
        cfg["eval"] = {k: v for k, v in (cfg["eval"] or {}).items() if k != "seed_tasks"}
        return r["mode"], r["steps"], cfg
    settings = [setting(r) for r in runs]
    if any(s != settings[0] for s in settings[1:]):
        raise SystemExit(f"not pooled: the runs' settings differ ({[str(f) for f in files]})")
    if len({r["config"]["eval"].get("seed_tasks") for r in runs}) > 1:
        console.print("[yellow]note:[/] the runs evaluated different numbers of BFCL test tasks; "
                      "only the held-out synthetic changes are pooled")
    results = [r for run in runs for r in run["results"]]
    if len({(r["setting"], r["seed"]) for r in results}) != len(results):
        raise SystemExit("not pooled: a seed appears twice")
    ablation = settings[0][0] == "ablation"
    if ablation and any(len({r["seed"] for r in run["results"]}) != 1 for run in runs):
        raise SystemExit("not pooled: an ablation file holds more than one seed")
    commits = [r.get("commit", "unrecorded") for r in runs]
    if len(set(commits)) > 1:  # settings match but the code may not: say so, the reader judges
        console.print(f"[yellow]note:[/] the pooled runs ran different code: {', '.join(commits)}")
    out = {**runs[0], "commits": commits, "results": results,
           "total_wall_s": sum(r["total_wall_s"] for r in runs), "pooled_from": [str(f) for f in files]}
    if ablation:  # each seed's contributions stay as they were written; the pooled ones join them
        out["contributions"] = {f"{what}, seed {run['results'][0]['seed']}": deltas
                                for run in runs for what, deltas in run.get("contributions", {}).items()}
        out["pooled_contributions"] = pooled_contributions(results)
        for what, d in out["pooled_contributions"].items():
            console.print(f"pooled over seeds, contribution, {what}: {d['delta']:+.3f} [{d['low']:+.3f}, "
                          f"{d['high']:+.3f}] over {d['tasks']} (seed, task) pairs")
    else:
        out["pooled_synthetic"] = pooled_over_seeds(results, runs[0]["config"]["eval"]["k"])
    out_path.write_text(json.dumps(out, indent=2))
    plot(out, png)
    console.print(f"written to {out_path} and {png}")


def main() -> None:
    exit_on_sigterm()  # a SIGTERM takes the stack this benchmark started down with it
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["main", "ablation"], default="main")
    ap.add_argument("--seeds", default="0,1,2", help="main mode: one run per seed; ablation: the first")
    ap.add_argument("--steps", type=int, default=4, help="RL steps (the recorded runs' 4; 8 doubles the RL phase's ~30 min)")
    ap.add_argument("--group-size", type=int, default=8,
                    help="rollouts per task; at 4, 4-16 of 16 samples had no advantage (BENCHMARKS, seed 0 vs 1)")
    ap.add_argument("--tasks-per-step", type=int, default=8,
                    help="tasks per RL step (the config's: 4). 8 gave RL +0.063 [+0.028, +0.103] pooled over seeds 0-2; "
                         "on seeds 0-1, from the same warm starts, +0.071 against 4's +0.027 (BENCHMARKS, fifteenth)")
    ap.add_argument("--eval-synthetic", type=int, default=32, help="held-out synthetic tasks evaluated")
    ap.add_argument("--eval-bfcl", type=int, default=10, help="BFCL multi_turn_base test tasks evaluated")
    ap.add_argument("--k", type=int, default=4, help="attempts per evaluated task (avg@k, best@k)")
    ap.add_argument("--explorations", type=int, default=None,
                    help="self-questioning explorations building the pool (default: 5/4 of --eval-synthetic, "
                         "enough held-out tasks for the evaluation; 40 gave 161-165 train tasks)")
    ap.add_argument("--bootstrap-tasks", type=int, default=160,
                    help="demonstrations in the warm start (160 x 3 epochs: +0.199 to +0.224 after it on seeds 0-2; "
                         "96 x 2: 0.117 on seed 1; 32 x 3: 0.065 on seed 0)")
    ap.add_argument("--bootstrap-epochs", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=96,
                    help="per turn; at 40 the warm-started policy's calls were cut off (BENCHMARKS, warm start)")
    ap.add_argument("--learning-rate", type=float, default=None,
                    help="the RL updates' (default: the config's, 2e-4; the warm start has its own, 1e-3)")
    ap.add_argument("--mini-batches", type=int, default=4,
                    help="optimizer steps per RL step (the config's: 1; AgentEvolver: 4; 4 at 2e-4: RL +0.028 pooled over "
                         "seeds 0-2 against +0.017 at 1, BENCHMARKS, ninth run). At 5e-4 x 4 "
                         "the RL phase gave -0.047 [-0.134, +0.030] on seed 0 (BENCHMARKS, fifth run)")
    ap.add_argument("--rollout-temperature", type=float, default=None,
                    help="the RL groups' sampling temperature (default: the config's, 0.4, set for the base model; "
                         "AgentEvolver: 0.9); evaluation keeps eval.temperature")
    # The recorded runs' RL settings (BENCHMARKS, from 2026-12-02): RL is held near the warm start
    # it starts from; held to the base model at 0.001, seed 0's four RL phases lost -0.006 to -0.047.
    ap.add_argument("--beta", type=float, default=0.04, help="the KL term's weight (the config's: 0.001)")
    ap.add_argument("--kl-reference", choices=("base", "warm_start"), default="warm_start",
                    help="the KL term's reference (the config's: base)")
    ap.add_argument("--imitation-learning-rate", type=float, default=2e-4,
                    help="the between-steps imitation step's rate (the config's: the warm start's, 1e-3)")
    ap.add_argument("--between-steps", action=argparse.BooleanOptionalAction, default=True,
                    help="self-imitation of each step's own successes")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="base run config (mechanisms are overridden)")
    ap.add_argument("--state-dir", default=str(ROOT / ".evolver-bench-learning"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_learning.json"))
    ap.add_argument("--runs", default=str(DEFAULT_RUNS))
    ap.add_argument("--plot", default=None, help="the learning curves' PNG (default: --out with .png)")
    ap.add_argument("--replot", action="store_true", help="only draw the PNG of an existing --out")
    ap.add_argument("--task-pool", type=Path, metavar="JSON",
                    help="train and evaluate on this saved pool (a run folder's task_pool.json) instead of "
                         "self-questioning a new one; every run of this invocation")
    ap.add_argument("--warm-start", type=Path, metavar="BIN",
                    help="every run starts RL from this warm start (a run folder's warm_start.bin, made on the "
                         "--task-pool's train tasks) instead of fine-tuning again; its base and warm-start "
                         "evaluations still run (a check: they should match the source run's)")
    ap.add_argument("--share-warm-start", action=argparse.BooleanOptionalAction, default=True,
                    help="ablation: settings after the first start from the first's warm start (the same "
                         "tasks and bootstrapping settings) instead of each fine-tuning again")
    ap.add_argument("--measured-by", type=Path, metavar="JSON",
                    help="with --task-pool and --warm-start from one run: that run's result (a main-mode --out), "
                         "whose base and warm-start evaluations every setting borrows instead of measuring them")
    ap.add_argument("--all-from", type=Path, metavar="JSON",
                    help="ablation, with --task-pool, --warm-start and --measured-by: the 'all' setting is this "
                         "main-mode result of the same seed and settings, whose RL started from that warm start "
                         "with the same borrowed points, instead of being run again (~40 min)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the settings an earlier invocation of the same command already wrote to --out and "
                         "run the rest (the ablation takes ~4 h: it can run over several sittings); results are "
                         "written after every setting")
    ap.add_argument("--pool", nargs="+", type=Path, metavar="JSON",
                    help="only pool runs already written (one seed each, run separately) over seeds: main-mode "
                         "runs' changes or ablations' contributions; writes them as one --out")
    args = ap.parse_args()
    png = Path(args.plot or Path(args.out).with_suffix(".png"))
    if args.replot:
        plot(json.loads(Path(args.out).read_text()), png)
        console.print(f"drawn {png}")
        return
    if args.pool:
        pool_written(args.pool, Path(args.out), png)
        return

    base = yaml.safe_load(Path(args.config).read_text())
    base["steps"] = args.steps
    base["time_budget_minutes"] = 0  # every step measured: the default run's time budget is not the benchmark's
    if args.group_size:
        base["group_size"] = args.group_size
    if args.tasks_per_step:
        base["tasks_per_step"] = args.tasks_per_step
    base["eval"] = {**base.get("eval", {}), "synthetic_tasks": args.eval_synthetic, "seed_tasks": args.eval_bfcl,
                    "k": args.k}
    # Enough explorations for the held-out share to hold the evaluation set: 24 explorations
    # gave 27 held-out tasks on BFCL once answer facts had to be values (2026-12-01; 16 gave 26
    # before, when field names passed as facts).
    q = base.setdefault("questioning", {})
    q["explorations"] = args.explorations or max(q.get("explorations", 8), (5 * args.eval_synthetic) // 4)
    base["rollout"] = {**base.get("rollout", {}), "max_new_tokens": args.max_new_tokens}
    if args.rollout_temperature is not None:
        base["rollout"]["temperature"] = args.rollout_temperature
    # Only what is given: a run at the config's values stays poolable with runs written before
    # these flags existed.
    for key, value in (("learning_rate", args.learning_rate), ("mini_batches", args.mini_batches),
                       ("beta", args.beta), ("kl_reference", args.kl_reference)):
        if value is not None:
            base.setdefault("training", {})[key] = value
    base["bootstrapping"] = {**base.get("bootstrapping", {}), "max_tasks": args.bootstrap_tasks,
                             "epochs": args.bootstrap_epochs, "between_steps": args.between_steps}
    if args.imitation_learning_rate is not None:
        base["bootstrapping"]["imitation_learning_rate"] = args.imitation_learning_rate
    from evolver.models import prepare
    os.environ["EVOLVER_POLICY__MODEL_DIR"] = str(prepare.prepare())
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    plan = [("all", ALL_ON, s) for s in seeds] if args.mode == "main" else [(n, m, seeds[0]) for n, m in ABLATION]
    t0 = time.time()
    results: list[dict] = []
    earlier_wall = 0.0
    if args.resume and Path(args.out).exists():
        earlier = json.loads(Path(args.out).read_text())
        if (earlier.get("mode"), earlier.get("config")) != (args.mode, base):
            raise SystemExit(f"--resume: {args.out} was written by another mode or settings; not mixing them")
        results, earlier_wall = earlier["results"], earlier.get("total_wall_s", 0.0)
        console.print(f"resuming: {len(results)} setting(s) already in {args.out}: "
                      f"{', '.join(r['setting'] for r in results)}")
    pools = Path(args.state_dir) / "pools"
    shutil.rmtree(pools, ignore_errors=True)  # a pool is shared within one invocation, never across
    pools.mkdir(parents=True, exist_ok=True)
    if args.task_pool:
        for seed in seeds:
            shutil.copyfile(args.task_pool, pools / f"seed{seed}.json")
    warm_start = None
    if args.warm_start:  # a copy: a run of the same id would write its own warm_start.bin over the source
        warm_start = pools / "warm_start.bin"
        shutil.copyfile(args.warm_start, warm_start)
    if results and args.mode == "ablation" and args.task_pool is None:  # the resumed settings' pool and warm start
        first = Path(args.runs) / results[0]["run_id"]
        shutil.copyfile(first / "task_pool.json", pools / f"seed{results[0]['seed']}.json")
        if args.share_warm_start and warm_start is None:
            warm_start = first / "warm_start.bin"
    # The first run to evaluate the base model and the shared warm start measures both for the rest.
    measured = results[0] if results and args.mode == "ablation" and args.share_warm_start else None
    if args.measured_by:
        measured = measured_by(args.measured_by, base, args.task_pool, args.warm_start,
                               (Path(args.runs), DEFAULT_RUNS))
    if args.all_from and not any(r["setting"] == "all" for r in results):
        results.append(all_from(args.all_from, args.mode, base, seeds[0], measured))
    done = {(r["setting"], r["seed"]) for r in results}
    for i, (name, mech, seed) in enumerate(plan):
        if (name, seed) in done:
            continue
        r = run_setting(args, base, name, mech, seed, i,
                        pools / f"seed{seed}.json" if args.mode == "ablation" or args.task_pool else None, warm_start,
                        measured)
        if args.mode == "ablation" and args.share_warm_start:
            if warm_start is None:
                warm_start = Path(args.runs) / r["run_id"] / "warm_start.bin"
            measured = measured or r
        r["changes"] = changes(r)
        results.append(r)
        write_results(args, base, results, earlier_wall + time.time() - t0, png)


def measured_by(path: Path, base: dict, task_pool: Path | None, warm_start: Path | None,
                runs: tuple[Path, ...] = (DEFAULT_RUNS,)) -> dict:
    """The result whose base and warm-start evaluations the runs borrow: it must have evaluated
    the same set (the evaluation settings, and held-out tasks of this pool) and its run folder's
    warm start, where one is still kept under runs, must be the one given."""
    if task_pool is None or warm_start is None:
        raise SystemExit("--measured-by needs the --task-pool and --warm-start of the run that measured them")
    run = json.loads(path.read_text())
    (result,) = run["results"][:1]
    if run["config"].get("eval") != base.get("eval"):
        raise SystemExit(f"--measured-by: {path} evaluated with other settings ({run['config'].get('eval')})")
    heldout = {key for key, raw in json.loads(task_pool.read_text()).items()
               if task_pb2.Task.FromString(base64.b64decode(raw)).split == "heldout"}
    evaluated = {k.split("/", 1)[1] for k in stage_metrics(result["evaluations"])[0] if k.startswith("task_avg:synthetic/")}
    if not evaluated or not evaluated <= heldout:
        raise SystemExit(f"--measured-by: {path} evaluated tasks that are not held-out tasks of {task_pool}")
    if stage_metrics(result["evaluations"])[1] is None:
        raise SystemExit(f"--measured-by: {path} has no warm-start evaluation")
    for kept in (Path(r) / result["run_id"] / "warm_start.bin" for r in runs):
        if kept.exists() and kept.resolve() != warm_start.resolve() and kept.read_bytes() != warm_start.read_bytes():
            raise SystemExit(f"--measured-by: {path}'s run kept another warm start ({kept}) than {warm_start}")
    return {**result, "run_id": f"{path.name}:{result['run_id']}"}  # says where the borrowed points are


def all_from(path: Path, mode: str, base: dict, seed: int, measured: dict | None) -> dict:
    """The ablation's 'all' setting taken from a main-mode run that already is it: the same
    settings and seed, and RL from the given warm start, either with the same borrowed base and
    warm-start points or as the run that measured them (and made that warm start)."""
    if mode != "ablation" or measured is None:
        raise SystemExit("--all-from is for --mode ablation with --task-pool, --warm-start and --measured-by")
    run = json.loads(path.read_text())
    if run.get("mode") != "main" or run.get("config") != base:
        raise SystemExit(f"--all-from: {path} ran other settings than this ablation")
    if len(run["results"]) != 1:
        raise SystemExit(f"--all-from: {path} holds {len(run['results'])} runs; it takes one seed's")
    (result,) = run["results"]
    if result["seed"] != seed or result.get("mechanisms") != ALL_ON:
        raise SystemExit(f"--all-from: {path} is not the 'all' setting of seed {seed}")
    itself = f"{path.name}:{result['run_id']}" == measured["run_id"]  # the run that made the warm start
    if not itself and (result.get("warm_start_from") is None
                       or result.get("base_and_warm_start_evaluations_from") != measured["run_id"]):
        raise SystemExit(f"--all-from: {path} did not start from the warm start measured by {measured['run_id']}")
    return {**result, "result_from": str(path)}


def write_results(args, base: dict, results: list[dict], wall: float, png: Path) -> None:
    """The table, the JSON and the PNG of the settings run so far (after each, so an ablation
    stopped between settings keeps what it finished)."""
    k = args.k
    table = Table(title=f"SmolLM2-135M, {args.steps} steps x {base['tasks_per_step']} tasks x {base['group_size']} "
                        f"rollouts; held-out avg@{k}, change with 95% paired-bootstrap CI over tasks")
    for col in ("setting", "seed", "task set", "base -> warm start", "warm start -> end", "base -> end", "wall s"):
        table.add_column(col)

    def cell(d: dict | None) -> str:
        return "-" if d is None else f"{d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
    for r in results:
        for label, ch in r["changes"].items():
            table.add_row(r["setting"], str(r["seed"]), label, cell(ch.get("base -> warm start")),
                          cell(ch.get("warm start -> end")), cell(ch.get("base -> end")), f"{r['wall_s']:.0f}")
    console.print(table)
    pooled = pooled_over_seeds(results, k) if args.mode == "main" and len(results) > 1 else {}
    contrib = contributions(results) if args.mode == "ablation" else {}
    for what, deltas in contrib.items():
        console.print(f"contribution, {what}: " + "; ".join(f"{label} {cell(d)}" for label, d in deltas.items()))
    out = {"model": "SmolLM2-135M-Instruct", "device": "cpu", "mode": args.mode, "steps": args.steps,
           "commit": code_commit(), "config": base, "results": results, "pooled_synthetic": pooled,
           "contributions": contrib, "total_wall_s": round(wall, 1)}
    Path(args.out).write_text(json.dumps(out, indent=2))
    plot(out, png)
    console.print(f"total {out['total_wall_s']:.0f}s; written to {args.out} and {png}")


if __name__ == "__main__":
    main()
