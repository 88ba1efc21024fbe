"""Consumer process for bench/bus_throughput.py: `plain` (bare nats-py fetch + ack_sync) or
`evolver` (our Worker: decode, span, heartbeat, confirmed ack). Prints "ready", runs until SIGTERM."""

import asyncio
import os
import signal
import sys

import nats
from nats.errors import TimeoutError as NatsTimeout

BATCH = 8


async def plain(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(durable="bench-plain", stream="BENCH_PLAIN")
    print("ready", flush=True)
    while True:
        try:
            msgs = await sub.fetch(BATCH, timeout=0.5)
        except NatsTimeout:
            continue
        await asyncio.gather(*(handle(m) for m in msgs))


async def handle(m) -> None:
    from evolver.v1 import events_pb2
    events_pb2.ExploreRequested.FromString(m.data)
    await m.ack_sync()


async def evolver(url: str) -> None:
    from evolver import telemetry
    from evolver.bus import Bus, Worker, topology
    from evolver.config import TelemetrySettings, load_settings

    # The SDK provider every service runs with; with --spans-jsonl, exporting as the stack does.
    telemetry.setup("bench-consumer", TelemetrySettings(spans_jsonl=os.environ.get("BENCH_SPANS_JSONL")))
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": url, "EVOLVER_BUS__FETCH_BATCH": str(BATCH),
                                                   "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.5"}), name="bench")

    async def handle(d) -> None:
        return None

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await Worker(bus, topology.consumer("explorer-explore-requested"), handle).run(stop)
    finally:
        telemetry.shutdown()  # flushes the spans still batched


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    asyncio.run(plain(url) if mode == "plain" else evolver(url))
