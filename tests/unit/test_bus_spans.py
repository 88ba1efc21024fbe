"""The bus's lean spans and header trace context must be indistinguishable from the SDK's."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from evolver import telemetry
from evolver.bus import spans as _spans
from evolver.bus import trace_context as _trace_context

ATTRS = {"messaging.system": "nats", "messaging.operation.name": "send",
         "messaging.destination.name": "diag.ping", "messaging.message.id": "diag.ping:k", "n": 3}


def pipeline(sampler=None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, resource=Resource.create({"service.name": "unit"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer(telemetry.TRACER_NAME), exporter


def exercise(span, error: Exception) -> None:
    span.set_attribute("error.type", "ValueError")
    span.set_attribute("not.a.valid.value", object())  # dropped by both
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.set_status(Status(StatusCode.UNSET))  # ignored by both
    span.end()
    span.set_attribute("after.end", 1)  # ignored by both
    span.end()  # exported once


def comparable(s) -> dict:
    return {"name": s.name, "kind": s.kind, "attributes": dict(s.attributes), "status": (s.status.status_code, s.status.description),
            "events": [(e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"}) for e in s.events],
            "resource": s.resource, "scope": s.instrumentation_scope, "parent": s.parent,
            "sampled": s.context.trace_flags.sampled, "remote": s.context.is_remote}


def test_lean_span_exports_what_the_sdk_span_exports():
    tracer, exporter = pipeline()
    error = ValueError("bad payload")
    with tracer.start_as_current_span("root") as root:
        exercise(tracer.start_span("send diag.ping", kind=SpanKind.PRODUCER, attributes=ATTRS), error)
        lean = _spans.start("send diag.ping", SpanKind.PRODUCER, dict(ATTRS), tracer=tracer)
        assert isinstance(lean, _spans.MessagingSpan)
        exercise(lean, error)
    sdk_span, lean_span, root_span = exporter.get_finished_spans()
    assert comparable(lean_span) == comparable(sdk_span)
    assert lean_span.parent.span_id == root.get_span_context().span_id
    assert lean_span.context.trace_id == root_span.context.trace_id
    assert lean_span.context.span_id not in (sdk_span.context.span_id, root_span.context.span_id)
    assert lean_span.end_time >= lean_span.start_time > 0
    assert "ValueError: bad payload" in lean_span.events[0].attributes["exception.stacktrace"]


def test_children_of_a_current_lean_span_nest_under_it():
    tracer, exporter = pipeline()
    parent = _trace_context.extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    span = _spans.start("process diag.ping", SpanKind.CONSUMER, dict(ATTRS), parent, tracer=tracer)
    token = _spans.attach(span)
    try:
        with tracer.start_as_current_span("handler work"):
            pass
    finally:
        _spans.detach(token)
        span.end()
    child, consumer = exporter.get_finished_spans()
    assert consumer.context.trace_id == 0x0af7651916cd43dd8448eb211c80319c
    assert consumer.parent.span_id == 0xb7ad6b7169203331 and consumer.parent.is_remote
    assert child.parent.span_id == consumer.context.span_id
    assert child.context.trace_id == consumer.context.trace_id


@pytest.mark.parametrize("sampler, parent_flags, recorded", [
    (None, None, True),  # the default, parentbased_always_on, is decided inline
    (None, "00", False),
    (None, "01", True),
    (sampling.ALWAYS_OFF, None, False),
    (sampling.TraceIdRatioBased(0.0), None, False),
    (sampling.ParentBased(sampling.ALWAYS_ON), "00", False),  # unsampled parent is followed
    (sampling.ParentBased(sampling.ALWAYS_ON), "01", True),
    (sampling.ParentBased(sampling.ALWAYS_ON), None, True),
])
def test_the_tracers_sampler_decides(sampler, parent_flags, recorded):
    tracer, exporter = pipeline(sampler)
    parent = (_trace_context.extract({"traceparent": f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{parent_flags}"})
              if parent_flags else context.Context())
    span = _spans.start("send diag.ping", SpanKind.PRODUCER, dict(ATTRS), parent, tracer=tracer)
    assert (tracer.sampler is sampling.DEFAULT_ON) is (sampler is None)
    assert span.is_recording() is recorded
    assert span.get_span_context().is_valid  # the context still propagates
    assert span.get_span_context().trace_flags.sampled is recorded
    headers: dict[str, str] = {}
    _trace_context.inject_span(headers, span)
    assert headers["traceparent"].endswith("-01" if recorded else "-00")
    span.end()
    assert len(exporter.get_finished_spans()) == (1 if recorded else 0)


def test_record_only_spans_are_recorded_but_not_sampled():
    class RecordOnly(sampling.Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
            return sampling.SamplingResult(sampling.Decision.RECORD_ONLY, {"sampler.note": "kept"})

        def get_description(self):
            return "record only"

    tracer, exporter = pipeline(RecordOnly())
    span = _spans.start("send diag.ping", SpanKind.PRODUCER, dict(ATTRS), tracer=tracer)
    sdk_span = tracer.start_span("send diag.ping", kind=SpanKind.PRODUCER, attributes=ATTRS)
    assert span.is_recording() and not span.get_span_context().trace_flags.sampled
    assert dict(span._attributes) == dict(sdk_span.attributes) == {"sampler.note": "kept"}
    span.end()
    sdk_span.end()
    assert exporter.get_finished_spans() == ()  # the simple processor exports sampled spans only


def test_parent_trace_state_carries_over_as_the_sdk_carries_it():
    tracer, exporter = pipeline()
    parent = _trace_context.extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                     "tracestate": "vendor=a"})
    lean = _spans.start("process diag.ping", SpanKind.CONSUMER, dict(ATTRS), parent, tracer=tracer)
    sdk_span = tracer.start_span("process diag.ping", context=parent, kind=SpanKind.CONSUMER, attributes=ATTRS)
    assert lean.get_span_context().trace_state == sdk_span.get_span_context().trace_state
    assert lean.get_span_context().trace_state.to_header() == "vendor=a"
    headers: dict[str, str] = {}
    _trace_context.inject_span(headers, lean)
    assert headers["tracestate"] == "vendor=a"


def test_without_an_sdk_provider_the_api_tracer_is_used(monkeypatch):
    monkeypatch.setattr(_spans, "_sdk_tracer", None)
    monkeypatch.setattr(_spans.trace, "get_tracer_provider", lambda: trace.NoOpTracerProvider())
    span = _spans.start("send diag.ping", SpanKind.PRODUCER, dict(ATTRS))
    assert not isinstance(span, _spans.MessagingSpan)
    span.end()


HEADERS = [
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
    {"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"traceparent": "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"},
    {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"},
    {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "vendor=a,other=b"},
    {"traceparent": "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"},
    {"traceparent": "garbage"},
    {"Nats-Msg-Id": "x"},
    {},
]


@pytest.mark.parametrize("headers", HEADERS)
def test_header_trace_context_matches_the_w3c_propagator(headers):
    lowered = {k.lower(): v for k, v in headers.items()}
    want = trace.get_current_span(TraceContextTextMapPropagator().extract(lowered)).get_span_context()
    got = trace.get_current_span(_trace_context.extract(headers)).get_span_context()
    assert (got.trace_id, got.span_id, got.trace_flags, got.is_remote, got.trace_state) == \
           (want.trace_id, want.span_id, want.trace_flags, want.is_remote, want.trace_state)


def test_injected_context_and_baggage_round_trip():
    tracer, _ = pipeline()
    token = context.attach(baggage.set_baggage("run", "r-7"))
    try:
        span = _spans.start("send diag.ping", SpanKind.PRODUCER, dict(ATTRS), tracer=tracer)
        headers: dict[str, str] = {}
        _trace_context.inject_span(headers, span)
    finally:
        context.detach(token)
    assert headers["baggage"] == "run=r-7"
    received = _trace_context.extract(headers)
    sc = trace.get_current_span(received).get_span_context()
    assert (sc.trace_id, sc.span_id) == (span.get_span_context().trace_id, span.get_span_context().span_id)
    assert baggage.get_baggage("run", received) == "r-7"
