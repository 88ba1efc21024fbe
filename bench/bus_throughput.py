"""Bus throughput: acked events/s through Evolver's bus layer vs plain nats-py, same run.

For each payload size (1 KiB, 64 KiB) and consumer-process count (1, 2): one publisher in this
process publishes N events (awaiting each PubAck) while the consumer processes fetch and ack;
the clock stops when the consumer's ack floor reaches the last message. Both sides use a
WorkQueue stream with file storage, fetch batches of 8, ack_sync (server-confirmed acks), and
the same protobuf event (both sides serialise on publish and parse on consume, as any producer
and consumer of these events must), so the ratio isolates what our layer adds:
  plain   = js.publish(msg.SerializeToString()) / fetch + ParseFromString + ack_sync
  evolver = Bus.publish(proto, key) (msg id, type + trace headers, producer span) /
            Worker (decode, consumer span, heartbeat task, ack_sync), OTel SDK installed
Each cell runs REPEATS times, alternating which side goes first; medians are reported.

Tracing follows the standard OTEL_TRACES_SAMPLER variable (inherited by the consumer
processes): unset records every span (the embedded default); `always_off` or a
`parentbased_traceidratio` keeps context propagation but skips recording most spans.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js import api
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver import telemetry  # noqa: E402
from evolver.bus import Bus  # noqa: E402
from evolver.config import load_settings  # noqa: E402
from evolver.stack import processes as proc  # noqa: E402
from evolver.v1 import events_pb2 as ev  # noqa: E402

console = Console()


def payload(size: int, i: int) -> ev.ExploreRequested:
    m = ev.ExploreRequested(request_id=f"r{i}", env_id="bench")
    m.initial_state_json = "x" * max(0, size - m.ByteSize() - 4)
    return m


async def wait_drained(js, stream: str, durable: str, last_seq: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await js.consumer_info(stream, durable)
        if info.ack_floor.stream_seq >= last_seq:
            return
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{durable} did not drain")


SPANS_DIR: str | None = None  # --spans-jsonl: where every process appends its spans


def start_consumers(mode: str, url: str, n: int) -> list[subprocess.Popen]:
    env = dict(os.environ)
    procs = []
    for i in range(n):
        if SPANS_DIR:
            env["BENCH_SPANS_JSONL"] = os.path.join(SPANS_DIR, f"consumer-{mode}-{i}.jsonl")
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "_bus_consumer.py"), mode, url], cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env))
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return procs


def stop_consumers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()  # the evolver consumer flushes its spans on SIGTERM
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def run_plain(url: str, size: int, n: int, consumers: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name="BENCH_PLAIN", subjects=["bench.plain"],
                                         retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE))
    await js.add_consumer("BENCH_PLAIN", api.ConsumerConfig(durable_name="bench-plain", ack_policy=api.AckPolicy.EXPLICIT,
                                                            ack_wait=60, max_ack_pending=256))
    procs = start_consumers("plain", url, consumers)
    try:
        msgs = [payload(size, i) for i in range(n)]
        t0 = time.perf_counter()
        last = 0
        for m in msgs:
            last = (await js.publish("bench.plain", m.SerializeToString())).seq
        await wait_drained(js, "BENCH_PLAIN", "bench-plain", last)
        return n / (time.perf_counter() - t0)
    finally:
        stop_consumers(procs)
        await js.delete_stream("BENCH_PLAIN")
        await nc.close()


async def run_evolver(url: str, size: int, n: int, consumers: int, round_: int) -> float:
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": url}), name="bench")
    await bus.ensure_topology()
    procs = start_consumers("evolver", url, consumers)
    try:
        msgs = [payload(size, i) for i in range(n)]
        t0 = time.perf_counter()
        last = 0
        for i, m in enumerate(msgs):
            last = (await bus.publish("explore.requested", m, key=f"{round_}-{i}")).seq
        await wait_drained(bus.js, "EXPLORE_JOBS", "explorer-explore-requested", last)
        return n / (time.perf_counter() - t0)
    finally:
        stop_consumers(procs)
        for info in await bus.js.streams_info():
            await bus.js.delete_stream(info.config.name)
        await bus.close()


async def publisher_breakdown(url: str, n: int, repeats: int) -> list[dict]:
    """Per-message cost of each publisher-side piece, no consumers, variants interleaved."""
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": url}), name="bench")
    await bus.ensure_topology()
    subject, msgs = "explore.requested", [payload(1024, i) for i in range(n)]
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def plain(r: int) -> None:
        for m in msgs:
            await bus.js.publish(subject, m.SerializeToString())

    async def nats_py_with_headers(r: int) -> None:
        for i, m in enumerate(msgs):
            await bus.js.publish(subject, m.SerializeToString(),
                                 headers={"Nats-Msg-Id": f"{subject}:h{r}-{i}", "traceparent": traceparent})

    async def our_round_trip_with_headers(r: int) -> None:
        for i, m in enumerate(msgs):
            await bus.replies.publish(subject, m.SerializeToString(), timeout=5.0,
                                      headers={"Nats-Msg-Id": f"{subject}:o{r}-{i}", "traceparent": traceparent})

    async def bus_publish(r: int) -> None:
        for i, m in enumerate(msgs):
            await bus.publish(subject, m, key=f"b{r}-{i}")

    variants = [plain, nats_py_with_headers, our_round_trip_with_headers, bus_publish]
    runs: dict[str, list[tuple[float, float]]] = {v.__name__: [] for v in variants}
    try:
        for r in range(repeats):
            for v in variants if r % 2 == 0 else variants[::-1]:
                t0, c0 = time.perf_counter(), time.process_time()
                await v(r)
                runs[v.__name__].append(((time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6))
                await bus.js.purge_stream("EXPLORE_JOBS")
    finally:
        for info in await bus.js.streams_info():
            await bus.js.delete_stream(info.config.name)
        await bus.close()
    return [{"variant": k, "events": n, "repeats": repeats,
             "wall_us": round(statistics.median(w for w, _ in v), 1),
             "cpu_us": round(statistics.median(c for _, c in v), 1)} for k, v in runs.items()]


async def main(repeats: int, quick: bool, breakdown: bool) -> tuple[list[dict], list[dict]]:
    settings = None
    if SPANS_DIR:
        from evolver.config import TelemetrySettings
        settings = TelemetrySettings(spans_jsonl=os.path.join(SPANS_DIR, "publisher.jsonl"))
    telemetry.setup("bench-publisher", settings)
    port, store = proc.free_port(), tempfile.mkdtemp(prefix="bench-js-")
    server = subprocess.Popen([proc.nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait_for_tcp("127.0.0.1", port, 10)
    url = f"nats://127.0.0.1:{port}"
    cells = [(1024, 1), (1024, 2), (65536, 1), (65536, 2)]
    counts = {1024: 300 if quick else 3000, 65536: 100 if quick else 600}
    results = []
    try:
        with Progress(console=console) as progress:
            bar = progress.add_task("bus throughput", total=len(cells) * repeats * 2)
            for size, consumers in cells:
                plain, ours = [], []
                for r in range(repeats):
                    order = ("plain", "evolver") if r % 2 == 0 else ("evolver", "plain")
                    for side in order:
                        progress.update(bar, description=f"{size // 1024} KiB x{consumers} {side} #{r + 1}")
                        if side == "plain":
                            plain.append(await run_plain(url, size, counts[size], consumers))
                        else:
                            ours.append(await run_evolver(url, size, counts[size], consumers, r))
                        progress.advance(bar)
                pm, om = statistics.median(plain), statistics.median(ours)
                results.append({"payload_bytes": size, "consumer_processes": consumers, "events": counts[size],
                                "repeats": repeats, "plain_events_per_s": round(pm, 1),
                                "evolver_events_per_s": round(om, 1), "ratio": round(om / pm, 3),
                                "plain_runs": [round(x, 1) for x in plain], "evolver_runs": [round(x, 1) for x in ours]})
        costs = await publisher_breakdown(url, counts[1024], repeats) if breakdown else []
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(store, ignore_errors=True)
        telemetry.shutdown()  # flush exported spans before their folder goes
    return results, costs


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run, not a measurement)")
    ap.add_argument("--json", type=Path, help="also write results here")
    ap.add_argument("--spans-jsonl", action="store_true",
                    help="export every span as the embedded stack does (batch processor, JSONL files)")
    ap.add_argument("--breakdown", action="store_true", help="add the publisher-side cost table")
    args = ap.parse_args()
    if args.spans_jsonl:
        SPANS_DIR = tempfile.mkdtemp(prefix="bench-spans-")
    try:
        results, costs = asyncio.run(main(args.repeats, args.quick, args.breakdown))
        exported = sum(1 for f in Path(SPANS_DIR).glob("*.jsonl") for _ in f.open()) if SPANS_DIR else 0
    finally:
        if SPANS_DIR:
            shutil.rmtree(SPANS_DIR, ignore_errors=True)
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "always_on (default)")
    export = f"; spans exported as JSONL: {exported}" if args.spans_jsonl else "; no span exporter"
    table = Table(title=f"acked events/s, median of {args.repeats} (baseline: plain nats-py, same run); "
                        f"OTEL_TRACES_SAMPLER={sampler}{export}")
    for col in ("payload", "consumer procs", "events", "plain nats-py", "evolver bus", "ratio"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(f"{r['payload_bytes'] // 1024} KiB", str(r["consumer_processes"]), str(r["events"]),
                      f"{r['plain_events_per_s']:.0f}", f"{r['evolver_events_per_s']:.0f}",
                      f"[{'green' if r['ratio'] >= 0.8 else 'red'}]{r['ratio']:.2f}x[/]")
    console.print(table)
    if costs:
        base = costs[0]
        ct = Table(title=f"publisher cost per 1 KiB message, no consumers, median of {args.repeats} "
                         f"(baseline: {base['variant']}, same run)")
        for col in ("variant", "wall us", "cpu us", "cpu vs plain"):
            ct.add_column(col, justify="right")
        for c in costs:
            ct.add_row(c["variant"], f"{c['wall_us']:.1f}", f"{c['cpu_us']:.1f}", f"{c['cpu_us'] - base['cpu_us']:+.1f}")
        console.print(ct)
    if args.json:
        args.json.write_text(json.dumps({"otel_traces_sampler": sampler, "spans_exported_jsonl": args.spans_jsonl,
                                         "results": results, "publisher_breakdown": costs}, indent=2))
