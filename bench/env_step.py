"""Environment step cost: through the gRPC Environment protocol (server in its own process, as
in the embedded stack) vs calling the BFCL Python class directly, same run. Then every
multi_turn_base ground truth through the protocol and our evaluator.

Each round: N sequential `pwd` steps (a cheap GorillaFileSystem call, so protocol overhead is
what shows), a fresh instance every 50 steps (untimed), per-step latency timed; rounds alternate direct/gRPC; medians of
the per-round figures are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver.envs.base import Call  # noqa: E402
from evolver.envs.bfcl import BfclEnvironment, tasks  # noqa: E402
from evolver.envs.client import RemoteEnvironment  # noqa: E402
from evolver.envs.harness import evaluate, reference_agent  # noqa: E402

console = Console()
CALL = Call("pwd", {})


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


PER_EPISODE = 50  # episodes cap their steps; a fresh one every 50 (not timed) on both paths


def direct_round(n: int) -> list[float]:
    env = BfclEnvironment()
    lat = []
    for i in range(n):
        if i % PER_EPISODE == 0:
            ep = env.create(seed_task_id="multi_turn_base_0")
        t = time.perf_counter()
        ep.step([CALL])
        lat.append(time.perf_counter() - t)
    return lat


async def grpc_round(env: RemoteEnvironment, n: int) -> list[float]:
    lat = []
    ep = None
    for i in range(n):
        if i % PER_EPISODE == 0:
            if ep:
                await ep.release()
            ep = await env.create(seed_task_id="multi_turn_base_0")
        t = time.perf_counter()
        await ep.step([CALL])
        lat.append(time.perf_counter() - t)
    await ep.release()
    return lat


def summary(rounds: list[list[float]]) -> dict:
    return {"steps_per_s": statistics.median(len(r) / sum(r) for r in rounds),
            "p50_ms": statistics.median(pct(r, 0.5) for r in rounds) * 1e3,
            "p99_ms": statistics.median(pct(r, 0.99) for r in rounds) * 1e3}


async def main(n: int, rounds: int) -> dict:
    server = subprocess.Popen([sys.executable, "-m", "evolver.envs.serve", "bfcl", "--port", "0"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "OTEL_TRACES_SAMPLER": os.environ.get("OTEL_TRACES_SAMPLER", "always_on")})
    address = re.search(r"grpc=(\S+)", server.stdout.readline()).group(1)
    try:
        async with RemoteEnvironment(address) as env:
            await grpc_round(env, 50)  # warm-up: connection, first-use imports
            direct_round(50)
            d, g = [], []
            with Progress(console=console) as progress:
                bar = progress.add_task("steps", total=2 * rounds)
                for r in range(rounds):
                    for side in (("direct", "grpc") if r % 2 == 0 else ("grpc", "direct")):
                        if side == "direct":
                            d.append(direct_round(n))
                        else:
                            g.append(await grpc_round(env, n))
                        progress.advance(bar)
                bar2 = progress.add_task("ground truth, 200 tasks", total=200)
                seeds = [e.seed for e in tasks.load_entries()]
                t0 = time.perf_counter()
                failures = []

                def on_task(res):
                    progress.advance(bar2)
                    if not res.successes[0]:
                        failures.append({"task_id": res.task_id, "details": res.details[0]})
                gt = await evaluate(env, reference_agent(), seeds, k=1, temperature=0.0, on_task=on_task)
                gt_seconds = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(10)
    return {"n_per_round": n, "rounds": rounds, "direct": summary(d), "grpc": summary(g),
            "ground_truth": {"tasks": gt.tasks, "correct": round(gt.avg_at_k * gt.tasks), "failures": failures,
                             "seconds": round(gt_seconds, 2)}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = asyncio.run(main(args.steps, args.rounds))
    t = Table(title=f"BFCL `pwd` step, {args.steps} steps x {args.rounds} rounds, medians (baseline: direct call, same run)")
    for c in ("path", "steps/s", "p50 ms", "p99 ms"):
        t.add_column(c, justify="right")
    for name in ("direct", "grpc"):
        s = res[name]
        t.add_row(name, f"{s['steps_per_s']:.0f}", f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}")
    console.print(t)
    ratio = res["grpc"]["steps_per_s"] / res["direct"]["steps_per_s"]
    p50 = res["grpc"]["p50_ms"]
    console.print(f"gRPC / direct throughput: {ratio:.3f}x; gRPC p50 {p50:.2f} ms "
                  f"({'meets' if p50 < 2 else 'misses'} the < 2 ms target)")
    g = res["ground_truth"]
    console.print(f"ground truth through the protocol: {g['correct']}/{g['tasks']} correct in {g['seconds']} s"
                  + ("" if not g["failures"] else f"; failures: {[f['task_id'] for f in g['failures']]}"))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
