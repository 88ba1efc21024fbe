"""W3C trace context in NATS headers. nats-py headers are a case-sensitive dict, while the W3C
spec says accept any case: inject lowercase, extract case-insensitively. The bus always speaks
W3C trace context and baggage, whatever OTEL_PROPAGATORS selects for gRPC.

Every message carries these headers, so the form we write ourselves (lowercase `traceparent`,
version 00, no trace state or baggage) is written and parsed directly; anything else goes
through the standard propagators."""

from __future__ import annotations

import re
from typing import Mapping

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class _Setter(Setter[dict]):
    def set(self, carrier: dict, key: str, value: str) -> None:
        carrier[key.lower()] = value


class _Getter(Getter[dict]):
    def get(self, carrier: dict, key: str) -> list[str] | None:
        if not carrier:
            return None
        value = carrier.get(key)
        if value is None:
            lk = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lk), None)
        return [value] if value is not None else None

    def keys(self, carrier: dict) -> list[str]:
        return list(carrier or {})


_SETTER, _GETTER = _Setter(), _Getter()
_BAGGAGE = W3CBaggagePropagator()
_W3C = CompositePropagator([TraceContextTextMapPropagator(), _BAGGAGE])


def inject_span(headers: dict[str, str], span: Span) -> None:
    """Writes `span` as the parent for the receiver, and the current baggage."""
    sc = span.get_span_context()
    if sc.is_valid:
        headers["traceparent"] = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"
        if sc.trace_state:
            headers["tracestate"] = sc.trace_state.to_header()
    if baggage.get_all():
        _BAGGAGE.inject(headers, setter=_SETTER)


def extract(headers: Mapping[str, str] | None) -> Context:
    """The sender's context from message headers; an empty context when there is none."""
    if not headers:
        return Context()
    tp = headers.get("traceparent")
    if tp is None or "tracestate" in headers or "baggage" in headers or not (m := _TRACEPARENT.fullmatch(tp)):
        return _W3C.extract(headers, getter=_GETTER)
    trace_id, span_id = int(m[1], 16), int(m[2], 16)
    if not trace_id or not span_id:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(m[3], 16)))), Context())
