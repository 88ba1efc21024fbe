"""What AgentEvolver's LLM-driven mechanisms cost on the local model, and how the LLM step
labeller agrees with state progress.

One run on a fresh embedded stack with every LLM role on (questioning.explorer, task_writer and
feasibility llm unless --no-questioning; rollout.reward_judge llm; attributing.labeler llm;
navigating.extractor llm with rewrite), each role on the local model (SmolLM2-135M-Instruct: the base policy weights). Reports
per role: calls, prompt and completion tokens, the calls' summed latency, parse failures and
fallbacks, in total and per training step (self-questioning's roles per exploration); and the
step labeller's agreement with the state-progress labels of the same steps, with a Wilson 95%
interval (steps of one trajectory are not independent: the interval is optimistic).

  python bench/llm_roles.py [--steps 4] [--no-questioning] [--roles judge,step_attributor,...]
                           [--json docs/bench_llm_roles_labeller.json]
(`make bench-llm-roles` runs the two runs docs/BENCHMARKS.md reports.)
"""

from __future__ import annotations

import argparse
import json
import math
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

from bench.learning import run_cli  # noqa: E402
from bench.pipeline_sim import progress_rows  # noqa: E402
from evolver.cli import DEFAULT_CONFIG  # noqa: E402
from evolver.stack import Stack  # noqa: E402
from evolver.stack.processes import exit_on_sigterm  # noqa: E402

console = Console(width=170)
COUNTERS = ("calls", "prompt_tokens", "completion_tokens", "latency_s", "parse_failures", "fallbacks",
            "call_failures", "skipped")


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 0.0
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def role_sums(metrics: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for m in metrics:
        for key, v in m.items():
            if key.startswith("llm/"):
                _, role, counter = key.split("/", 2)
                out.setdefault(role, dict.fromkeys(COUNTERS, 0.0))[counter] += v
    return out


def busy_seconds(spans_path: Path) -> dict[str, float]:
    """Per role, the wall seconds during which at least one of its calls was in flight (the
    union of its `llm <role>` spans): the summed latency counts a batch's calls once each."""
    intervals: dict[str, list[tuple[int, int]]] = {}
    if spans_path.exists():
        for line in spans_path.read_text().splitlines():
            span = json.loads(line)
            if span.get("name", "").startswith("llm "):
                intervals.setdefault(span["name"][4:], []).append((span["start_ns"], span["end_ns"]))
    out = {}
    for role, spans in intervals.items():
        total, end = 0, None
        for s, e in sorted(spans):
            if end is None or s > end:
                total, end = total + (e - s), e
            elif e > end:
                total, end = total + (e - end), e
        out[role] = total / 1e9
    return out


def main() -> None:
    exit_on_sigterm()  # a SIGTERM takes the stack this benchmark started down with it
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--state-dir", default=str(ROOT / ".evolver-bench-llm-roles"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "bench-llm-roles"))
    ap.add_argument("--questioning", action=argparse.BooleanOptionalAction, default=True,
                    help="the self-questioning roles on the LLM too (explorer, task writer, feasibility): the "
                         "slowest part on a CPU")
    ap.add_argument("--roles", default="judge,step_attributor,experience_extractor",
                    help="the training-step roles set to llm (comma-separated); the others stay verifiable. On 2 "
                         "cores the three at once, each in its own service process, contend so much that calls "
                         "time out: measure them in separate runs")
    ap.add_argument("--role-timeout-s", type=float, default=600.0,
                    help="each role's per-attempt timeout (the deadline is 4x with the default retries): the "
                         "settings' 60 s is for a served model; batched CPU calls take minutes")
    ap.add_argument("--explorations", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    roles = set(filter(None, args.roles.split(",")))
    unknown = roles - {"judge", "step_attributor", "experience_extractor"}
    if unknown:
        ap.error(f"--roles: unknown {sorted(unknown)}")
    cfg = yaml.safe_load(Path(args.config).read_text())
    cfg["steps"] = args.steps
    cfg["time_budget_minutes"] = 0  # every step measured: the default run's time budget is not the benchmark's
    cfg["mechanisms"]["bootstrapping"] = False
    llm_questioning = {"explorer": "llm", "task_writer": "llm", "feasibility": "llm"} if args.questioning else {}
    # wait_s: the LLM explorer's walks alone take over 10 minutes on 2 cores (prompts of ~3.8k tokens).
    cfg["questioning"] = {**cfg["questioning"], "explorations": args.explorations, "walks_per_exploration": 2,
                          "max_steps_per_walk": 4, "min_train_tasks": 1, "wait_s": 3600, **llm_questioning}
    if "judge" in roles:
        cfg["rollout"] = {**cfg["rollout"], "reward_judge": "llm"}
    if "step_attributor" in roles:
        cfg["attributing"] = {**cfg["attributing"], "labeler": "llm"}
    if "experience_extractor" in roles:
        cfg["navigating"] = {**cfg["navigating"], "extractor": "llm", "rewrite": True}
    for role in ("explorer", "task_writer", "judge", "step_attributor", "experience_extractor"):
        os.environ[f"EVOLVER_LLM_ROLES__{role.upper()}__TIMEOUT_S"] = str(args.role_timeout_s)
    cfg["eval"] = {**cfg["eval"], "synthetic_tasks": 2, "seed_tasks": 0, "k": 1}
    from evolver.models import prepare
    os.environ["EVOLVER_POLICY__MODEL_DIR"] = str(prepare.prepare())
    state_dir = Path(args.state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    run_id = f"llm-roles-{int(time.time())}"
    stack = Stack(state_dir)
    t0 = time.time()
    try:
        with console.status("starting the embedded stack..."):
            stack.up()
        run_dir = run_cli(state_dir, cfg, run_id, args.runs)
    finally:
        stack.down()
    rows = progress_rows(run_dir / "metrics.jsonl")
    trained = [r["metrics"] for r in rows if r["phase"] == "trained"]
    asked = [r["metrics"] for r in rows if r["phase"] == "questioning" and any(k.startswith("llm/") for k in r["metrics"])]
    summary = json.loads((run_dir / "events_summary.json").read_text())
    steps = len(trained)
    questioning = role_sums(asked[-1:])  # the questioning metrics are running totals
    training = role_sums(trained)
    memory = role_sums([{k: v for k, v in summary.items() if k.startswith("llm/")}])
    step_times = [b["t"] - a["t"] for a, b in zip(
        [r for r in rows if r["phase"] == "rollout" and r["metrics"].get("tasks")],
        [r for r in rows if r["phase"] == "trained"])]
    compared = sum(m.get("label_compared_steps", 0) for m in trained)
    agreed = sum(m.get("label_agreed_steps", 0) for m in trained)
    labelled = sum(m.get("llm_labelled_trajectories", 0) for m in trained)
    llm_good = sum(m.get("label_llm_good_steps", 0) for m in trained)
    progress_good = sum(m.get("label_progress_good_steps", 0) for m in trained)
    busy = busy_seconds(state_dir / "traces" / "spans.jsonl")
    low, high = wilson(agreed, compared)
    t = Table(title=f"LLM roles on SmolLM2-135M (local), 2 cores: {steps} training steps x {cfg['tasks_per_step']} "
                    f"tasks x {cfg['group_size']} attempts; self-questioning {cfg['questioning']['explorations']} x "
                    f"{cfg['questioning']['walks_per_exploration']} walks")
    for col in ("phase", "role", "calls", "prompt tok", "completion tok", "call s (summed)", "busy s (wall)",
                "parse fail", "fallbacks", "per step: calls", "tokens", "busy s"):
        t.add_column(col, justify="right")
    results = []
    for phase, sums, per in (("questioning", questioning, None), ("training steps", training, steps),
                             ("memory (training steps)", memory, steps)):
        for role, c in sorted(sums.items()):
            # A role serving several phases (the judge: feasibility and rewards) shares its busy time.
            b = busy.get(role, 0.0)
            results.append({"phase": phase, "role": role, **c, "busy_s": b})
            t.add_row(phase, role, f"{c['calls']:.0f}", f"{c['prompt_tokens']:.0f}", f"{c['completion_tokens']:.0f}",
                      f"{c['latency_s']:.0f}", f"{b:.0f}", f"{c['parse_failures']:.0f}", f"{c['fallbacks']:.0f}",
                      *([f"{c['calls'] / per:.1f}", f"{(c['prompt_tokens'] + c['completion_tokens']) / per:.0f}",
                         f"{b / per:.0f}"] if per else ["-", "-", "-"]))
    console.print(t)
    console.print(f"step labeller vs state progress: {agreed:.0f} of {compared:.0f} steps agree "
                  f"({agreed / max(compared, 1):.1%}, Wilson 95% [{low:.1%}, {high:.1%}]) over {labelled:.0f} LLM-labelled "
                  f"trajectories; GOOD: {llm_good:.0f} by the LLM, {progress_good:.0f} by state progress; wall seconds per training step (rollout request to trained): "
                  f"{sorted(step_times)[len(step_times) // 2]:.0f} median")
    out = {"config": cfg, "run_id": run_id, "steps": steps, "roles": results,
           "agreement": {"agreed_steps": agreed, "compared_steps": compared, "rate": agreed / max(compared, 1),
                         "wilson95": [low, high], "llm_labelled_trajectories": labelled,
                         "llm_good_steps": llm_good, "progress_good_steps": progress_good},
           "busy_s": busy,
           "step_wall_s": step_times, "total_wall_s": round(time.time() - t0, 1),
           "good_rate_per_step": [m.get("good_rate", 0.0) for m in trained]}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
