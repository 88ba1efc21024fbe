"""diag.ping through every service: one event, one trace, a pong per service."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from google.protobuf import timestamp_pb2
from opentelemetry.trace import format_trace_id

from evolver import telemetry
from evolver.bus import Bus
from evolver.config import Settings
from evolver.v1 import events_pb2


@dataclass
class PingResult:
    ping_id: str
    trace_id: str
    latencies_ms: dict[str, float]  # service -> ms from publish to pong
    missing: list[str]


async def ping(settings: Settings, services: tuple[str, ...], timeout_s: float = 10.0) -> PingResult:
    bus = await Bus.connect(settings, name="evolver-cli")
    try:
        await bus.ensure_topology()
        ping_id = uuid.uuid4().hex[:12]
        latencies: dict[str, float] = {}
        all_in = asyncio.Event()
        start = 0.0

        async def on_pong(event) -> None:
            pong = event.message
            if pong is not None and pong.ping_id == ping_id and pong.service not in latencies:
                latencies[pong.service] = (time.perf_counter() - start) * 1000
                if set(services) <= set(latencies):
                    all_in.set()

        # Core subscription before publishing: JetStream-stored pongs reach it live.
        sub = await bus.subscribe("diag.pong.*", on_pong)
        with telemetry.tracer().start_as_current_span("evolver ping") as span:
            trace_id = format_trace_id(span.get_span_context().trace_id)
            now = timestamp_pb2.Timestamp()
            now.GetCurrentTime()
            start = time.perf_counter()
            await bus.publish("diag.ping", events_pb2.DiagPing(ping_id=ping_id, sent_at=now), key=ping_id)
        try:
            await asyncio.wait_for(all_in.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        await sub.close()
        return PingResult(ping_id, trace_id, latencies, [s for s in services if s not in latencies])
    finally:
        await bus.close()
