"""One trace id spans a gRPC call -> NATS publish -> consumer handler."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from evolver import telemetry
from evolver.bus import Bus, Delivery, Worker, topology
from evolver.rpc import GrpcServer, Registration, channel, stub
from evolver.v1 import events_pb2 as ev
from evolver.v1 import memory_service_pb2 as pb
from evolver.v1 import memory_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


class PublishingMemory(pb_grpc.MemoryServiceServicer):
    """A servicer whose RPC publishes an event, as real services do."""

    def __init__(self, bus: Bus):
        self.bus = bus

    async def Stats(self, request, context):
        await self.bus.publish("diag.ping", ev.DiagPing(ping_id="p1"), key="p1")
        return pb.StatsResponse()


async def test_one_trace_across_grpc_publish_and_consume(bus: Bus, spans):
    handled: list[str] = []

    async def handle(d: Delivery) -> None:
        current = trace.get_current_span()  # the consumer span
        current.set_attribute("handler.note", "seen")
        handled.append(format(current.get_span_context().trace_id, "032x"))

    server = GrpcServer([Registration("evolver.v1.MemoryService", PublishingMemory(bus),
                                      pb_grpc.add_MemoryServiceServicer_to_server)])
    await server.start()
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(bus, topology.diag_consumer("memory"), handle).run(stop))
    try:
        with telemetry.tracer().start_as_current_span("client-root") as root:
            async with channel(server.address) as ch:
                await stub(pb_grpc.MemoryServiceStub, ch, 5).Stats(pb.StatsRequest())
        for _ in range(100):
            if handled:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 10)
        await server.stop(0)

    root_trace = format(root.get_span_context().trace_id, "032x")
    assert handled == [root_trace]
    finished = {s.name: s for s in spans.get_finished_spans()}
    rpc = "/evolver.v1.MemoryService/Stats"
    send, process = finished["send diag.ping"], finished["process diag.ping"]
    server_span = next(s for s in spans.get_finished_spans() if s.name == rpc and s.kind == SpanKind.SERVER)
    client_span = next(s for s in spans.get_finished_spans() if s.name == rpc and s.kind == SpanKind.CLIENT)
    for s in (client_span, server_span, send, process):
        assert s.context.trace_id == root.get_span_context().trace_id
    assert server_span.parent.span_id == client_span.context.span_id
    assert send.parent.span_id == server_span.context.span_id
    assert process.parent.span_id == send.context.span_id
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert send.attributes["messaging.system"] == "nats"
    assert process.attributes["messaging.message.id"] == "diag.ping:p1"
    assert process.attributes["handler.note"] == "seen"


def test_trace_context_is_found_whatever_the_header_case():
    from evolver.bus import trace_context as _trace_context
    with telemetry.tracer().start_as_current_span("x") as span:
        headers: dict[str, str] = {}
        _trace_context.inject_span(headers, span)
    upper = {k.title(): v for k, v in headers.items()}  # e.g. "Traceparent"
    assert "Traceparent" in upper
    ctx = _trace_context.extract(upper)
    assert trace.get_current_span(ctx).get_span_context().trace_id == span.get_span_context().trace_id
