"""A run's report: metrics JSONL -> report.md with PNG plots a person can open.

Inputs are plain records (the run's progress events and a summary of its bus events), so the
report can be rebuilt from a run folder at any time: `evolver report RUN_DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from evolver.algorithms.stats import TASK_METRIC_PREFIX, base_evaluation, evaluation_points


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(progress: Iterable[dict], phase: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for p in progress:
        if p.get("phase") == phase and key in p.get("metrics", {}):
            xs.append(int(p.get("train_step", 0)))
            ys.append(float(p["metrics"][key]))
    return xs, ys


def _plot(path: Path, title: str, lines: list[tuple[str, list[int], list[float]]], ylabel: str,
          kind: str = "line") -> bool:
    if not any(xs for _, xs, _ in lines):
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    if kind == "bar":  # horizontal: long labels stay readable
        labels = [name.replace("_", " ") for name, _, _ in lines]
        values = [ys[-1] if ys else 0 for _, _, ys in lines]
        ax.barh(labels, values, color="#4C72B0")
        for y, v in enumerate(values):
            ax.annotate(f"{v:g}", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
        ylabel = ""
    else:
        for name, xs, ys in lines:
            if xs:
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_xlabel("training step")
        ax.legend(loc="best", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _delta_plot(path: Path, points: list) -> bool:
    """Each change per task set, with its 95% bootstrap interval as an error bar."""
    rows = [(f"{label} avg@k: {a} -> {b} ({d.tasks} tasks)", d) for a, b, deltas in points for label, d in deltas.items()]
    if not rows:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(rows)), dpi=100)
    names = [n for n, _ in rows]
    ds = [d for _, d in rows]
    ax.errorbar([d.delta for d in ds], range(len(ds)), xerr=[[d.delta - d.low for d in ds], [d.high - d.delta for d in ds]],
                fmt="o", capsize=4, color="#4C72B0")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(ds)), names)
    ax.set_ylim(-0.7, len(ds) - 0.3)
    ax.set_xlabel("change in held-out avg@k (95% paired-bootstrap CI over tasks)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def llm_role_lines(progress: Iterable[dict]) -> list[str]:
    """The LLM roles' totals over the training steps (metrics "llm/<role>/<counter>") and per
    step, and how often LLM step labels agreed with state progress where both exist."""
    trained = [p["metrics"] for p in progress if p.get("phase") == "trained"]
    totals: dict[str, dict[str, float]] = {}
    for m in trained:
        for key, v in m.items():
            if key.startswith("llm/"):
                _, role, counter = key.split("/", 2)
                totals.setdefault(role, {}).setdefault(counter, 0.0)
                totals[role][counter] += v
    if not totals:
        return []
    n = len(trained)
    cols = ("calls", "prompt_tokens", "completion_tokens", "latency_s", "parse_failures", "fallbacks",
            "call_failures", "skipped")
    lines = ["## LLM roles", "", f"Totals over {n} training steps (per step in brackets).", "",
             "| role | " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for role, t in sorted(totals.items()):
        lines.append(f"| {role} | " + " | ".join(f"{t.get(c, 0):.4g} ({t.get(c, 0) / n:.3g})" for c in cols) + " |")
    compared = sum(m.get("label_compared_steps", 0) for m in trained)
    if compared:
        agreed = sum(m.get("label_agreed_steps", 0) for m in trained)
        labelled = sum(m.get("llm_labelled_trajectories", 0) for m in trained)
        llm_good = sum(m.get("label_llm_good_steps", 0) for m in trained)
        progress_good = sum(m.get("label_progress_good_steps", 0) for m in trained)
        lines += ["", f"LLM step labels agree with state progress on {agreed:g} of {compared:g} steps "
                      f"({agreed / compared:.1%}), over {labelled:g} LLM-labelled trajectories; GOOD: "
                      f"{llm_good:g} by the LLM, {progress_good:g} by state progress."]
    return lines + [""]


def write_report(run_dir: Path, run: dict[str, Any], progress: list[dict], bus_summary: dict[str, float]) -> Path:
    run_dir = Path(run_dir)
    plots = []
    xs, ys = _series(progress, "trained", "reward_mean")
    xs2, ys2 = _series(progress, "trained", "success_rate")
    if _plot(run_dir / "reward.png", "Reward per training step", [("mean reward", xs, ys), ("success rate", xs2, ys2)],
             "value"):
        plots.append(("Reward per step", "reward.png"))
    evals = [(k, *_series(progress, "evaluated", k)) for k in
             ("eval_synthetic_avg_at_k", "eval_synthetic_best_at_k", "eval_seed_avg_at_k", "eval_seed_best_at_k")]
    if _plot(run_dir / "heldout.png", "Held-out success", [(k.removeprefix("eval_"), x, y) for k, x, y in evals],
             "score"):
        plots.append(("Held-out success (avg@k, best@k)", "heldout.png"))
    good = _series(progress, "trained", "good_rate")
    if _plot(run_dir / "attribution.png", "GOOD step rate (state-progress attribution)", [("GOOD rate", *good)],
             "share of labelled steps"):
        plots.append(("GOOD/BAD step rates", "attribution.png"))
    counts = [(k, [0], [bus_summary.get(k, 0.0)]) for k in
              ("walks_explored", "tasks_generated", "tasks_accepted", "experiences_stored", "experiences_injected")]
    if _plot(run_dir / "pipeline.png", "Self-questioning and self-navigating", counts, "count", kind="bar"):
        plots.append(("Tasks explored/generated/accepted, experiences stored/injected", "pipeline.png"))

    last_trained = next((p for p in reversed(progress) if p.get("phase") == "trained"), {"metrics": {}})
    evaluated = [p["metrics"] for p in progress if p.get("phase") == "evaluated"]
    # A run with eval.before_training off has no base evaluation, so no "before".
    first_eval = {"metrics": base_evaluation(evaluated) or {}}
    last_eval = {"metrics": evaluated[-1] if evaluated else {}}
    points = evaluation_points(evaluated)
    if _delta_plot(run_dir / "change.png", points):
        plots.insert(0, ("Before -> after, with 95% confidence intervals", "change.png"))
    lines = [f"# Evolver run `{run.get('run_id', '?')}`", "",
             f"state **{run.get('state', '?')}**, {run.get('train_step', 0)} training steps, "
             f"policy version {run.get('policy_version', 0)}. {run.get('message', '')}", "",
             "## Held-out evaluation", ""]
    if points:
        lines += ["| task set | from -> to | before | after | change | 95% CI (paired bootstrap over tasks) | tasks |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {k} avg@k | {a} -> {b} | {d.before:.3f} | {d.after:.3f} | {d.delta:+.3f} | "
                  f"[{d.low:+.3f}, {d.high:+.3f}]{' (excludes 0)' if d.excludes_zero else ''} | {d.tasks} |"
                  for a, b, deltas in points for k, d in deltas.items()]
        lines += [""]
    lines += ["| metric | before | after |", "|---|---|---|"]
    for key in sorted(k for k in set(first_eval["metrics"]) | set(last_eval["metrics"]) if not k.startswith(TASK_METRIC_PREFIX)):
        b, a = first_eval["metrics"].get(key), last_eval["metrics"].get(key)
        lines.append(f"| {key} | {'' if b is None else f'{b:.3f}'} | {'' if a is None else f'{a:.3f}'} |")
    lines += ["", "## Pipeline", "", "| count | value |", "|---|---|"]
    lines += [f"| {k} | {v:g} |" for k, v in sorted(bus_summary.items())]
    lines += ["", *llm_role_lines(progress)]
    lines += ["## Last training step", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in sorted(last_trained["metrics"].items())]
    for title, name in plots:
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    lines += ["", "Files: `metrics.jsonl` (every progress event), `run.json`, `config.yaml`, `events_summary.json`."]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
