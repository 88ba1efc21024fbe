"""A projection of the training pipeline past this machine: a discrete-event simulation of
explorers and one trainer, synchronous (max_policy_lag 0) against asynchronous (lag >= 1),
for 1-64 explorer replicas.

Model (assumptions, stated):
  - a step needs `groups` rollout groups; a group occupies one explorer replica for `group_s`
    (its attempts run concurrently inside it), then attribution (`attribution_s`) and two bus
    hops (`bus_s` each) before the trainer sees it;
  - explorers take jobs in request order, each from the queue as soon as it is free (the
    durable work queue); generation capacity grows with replicas (the inference server is not
    the bottleneck: on a GPU cluster, vLLM replicas scale with the explorers);
  - the trainer is one process: a step trains (`update_s`) and publishes (`publish_s`) once all
    its groups are in and the previous step is done;
  - synchronous: a step's groups are requested when the previous step's policy is published;
    asynchronous with lag k: when step n starts training, the groups of steps n+1..n+k are
    requested (from the policy before the update), so explorers work while the trainer trains;
  - what staleness costs the learning is not modelled (the learning bench measures it).

Stage costs come from a run's metrics.jsonl (`--from-run`: rollout and update phases of a real
run on this machine) or from the flags; a GPU scenario with its assumptions is built in.

  python bench/pipeline_sim.py                                 # built-in scenarios
  python bench/pipeline_sim.py --from-run runs/<id>/metrics.jsonl
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(width=170)


@dataclass(frozen=True)
class Costs:
    name: str
    groups: int  # rollout groups per training step
    group_s: float  # one group on one explorer replica
    update_s: float  # the trainer's update
    publish_s: float = 1.0  # adapter to the Object Store, KV pointer, policy.updated, checkpoint
    attribution_s: float = 0.5
    bus_s: float = 0.01
    note: str = ""


@dataclass
class Projection:
    replicas: int
    lag: int
    steps_per_hour: float
    trainer_idle: float
    explorer_idle: float


def simulate(c: Costs, replicas: int, lag: int, steps: int = 50) -> Projection:
    free = [0.0] * replicas  # when each replica is next free
    heapq.heapify(free)
    ready: dict[int, float] = {}  # step -> when all its groups reached the trainer
    explorer_busy = trainer_busy = 0.0
    requested_upto = -1
    trained_at = 0.0  # when the previous step's policy was published

    def request(step: int, at: float) -> None:
        nonlocal explorer_busy
        last = 0.0
        for _ in range(c.groups):
            start = max(at + c.bus_s, heapq.heappop(free))
            end = start + c.group_s
            heapq.heappush(free, end)
            explorer_busy += c.group_s
            last = max(last, end + 2 * c.bus_s + c.attribution_s)
        ready[step] = last

    for n in range(steps):
        for s in range(requested_upto + 1, min(n + lag, steps - 1) + 1):
            request(s, trained_at)
            requested_upto = s
        begin = max(trained_at, ready[n])
        trained_at = begin + c.update_s + c.publish_s
        trainer_busy += c.update_s + c.publish_s
    total = trained_at
    return Projection(replicas, lag, steps / total * 3600, 1 - trainer_busy / total,
                      1 - explorer_busy / (replicas * total))


def progress_rows(path: Path) -> list[dict]:
    """A run's metrics.jsonl, each progress event with its time as `t` (epoch seconds)."""
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    for r in rows:
        r["t"] = datetime.fromisoformat(r["at"].replace("Z", "+00:00")).timestamp()
    return rows


def costs_from_run(path: Path) -> Costs:
    """Per-step stage costs of a real run: the rollout phase (first request to the update)
    spread over its groups on one replica, and the update phase (update to trained)."""
    rows = progress_rows(path)
    at = {}
    for r in rows:
        at.setdefault((r["phase"], r["train_step"]), r["t"])
    groups, rollout, update = [], [], []
    for r in rows:
        if r["phase"] != "trained":
            continue
        step = r["train_step"] - 1
        if ("rollout", step) in at and ("update", step) in at:
            rollout.append(at[("update", step)] - at[("rollout", step)])
            update.append(at[("trained", step + 1)] - at[("update", step)])
            groups.append(int(r["metrics"].get("groups", 1)))
    if not rollout:
        raise SystemExit(f"{path}: no complete training steps")
    g = round(statistics.median(groups))
    return Costs(f"measured ({path.parent.name}, this machine)", g, statistics.median(rollout) / g,
                 statistics.median(update), publish_s=1.0,
                 note=f"median of {len(rollout)} steps: rollout {statistics.median(rollout):.0f}s for {g} groups "
                      f"on 1 explorer, update+publish {statistics.median(update):.0f}s")


SCENARIOS = [
    # A GPU setup as AgentEvolver's: 32 tasks x 8 attempts per step, Qwen2.5-7B on vLLM; a group
    # (8 attempts, ~6 turns of ~150 tokens, tool calls ~0.2 s each) ~40 s with vLLM batching;
    # the update of 256 trajectories (4 mini-batches, ~8k tokens each) ~150 s on one H100.
    Costs("GPU (assumed: 7B, 32x8 per step)", groups=32, group_s=40.0, update_s=150.0, publish_s=10.0,
          attribution_s=5.0, note="assumed costs, not measured here"),
]


def project(c: Costs, replicas_list: list[int], lags: list[int]) -> list[dict]:
    out = []
    for r in replicas_list:
        row = {"replicas": r}
        for lag in lags:
            p = simulate(c, r, lag)
            row[f"lag{lag}"] = asdict(p)
        base = row["lag0"]["steps_per_hour"]
        for lag in lags[1:]:
            row[f"speedup_lag{lag}"] = row[f"lag{lag}"]["steps_per_hour"] / base
        out.append(row)
    return out


def show(c: Costs, rows: list[dict], lags: list[int]) -> None:
    t = Table(title=f"{c.name}: {c.groups} groups/step, {c.group_s:.0f}s/group, update {c.update_s:.0f}s "
                    f"(+{c.publish_s:.0f}s publish). {c.note}")
    t.add_column("explorers", justify="right")
    for lag in lags:
        t.add_column(f"steps/h lag {lag}", justify="right")
    for lag in lags[1:]:
        t.add_column(f"async/sync lag {lag}", justify="right")
    t.add_column("trainer idle sync→async", justify="right")
    t.add_column("explorer idle sync→async", justify="right")
    for r in rows:
        a = r[f"lag{lags[1]}"] if len(lags) > 1 else r["lag0"]
        t.add_row(str(r["replicas"]), *[f"{r[f'lag{lag}']['steps_per_hour']:.1f}" for lag in lags],
                  *[f"{r[f'speedup_lag{lag}']:.2f}x" for lag in lags[1:]],
                  f"{r['lag0']['trainer_idle']:.0%} → {a['trainer_idle']:.0%}",
                  f"{r['lag0']['explorer_idle']:.0%} → {a['explorer_idle']:.0%}")
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-run", default="", help="a run's metrics.jsonl: its measured stage costs")
    ap.add_argument("--replicas", default="1,2,4,8,16,32,64")
    ap.add_argument("--lags", default="0,1,2")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    replicas = [int(x) for x in args.replicas.split(",")]
    lags = [int(x) for x in args.lags.split(",")]
    scenarios = ([costs_from_run(Path(args.from_run))] if args.from_run else []) + SCENARIOS
    out = []
    for c in scenarios:
        rows = project(c, replicas, lags)
        show(c, rows, lags)
        out.append({"costs": asdict(c), "rows": rows})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
