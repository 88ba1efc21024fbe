"""Producer and consumer spans for the bus hot path.

The OpenTelemetry SDK's own Span costs ~14 us to start and end as a producer span and ~25 us as a
current consumer span (a second validation pass over the attributes, locks, a decorator-built
context manager), more than the rest of our bus layer at 1 KiB payloads (docs/BENCHMARKS.md). A bus span needs little of that machinery: a few
already-valid attributes, no links, an event only on failure. `MessagingSpan` records the same
data and, when it ends, hands the SDK tracer's span processors the same `ReadableSpan` the SDK
would, built with the tracer's own sampler, id generator, resource and instrumentation scope, so
exporters and the trace tree cannot tell the two apart (tests/unit/test_bus_spans.py compares
them). What it skips: `on_start` for span processors (the SDK's batch and simple processors do
nothing there) and span limits (bus attributes are few and short).

Where the installed provider is not the SDK's (a vendor's, or none), spans come from the API
tracer unchanged.
"""

from __future__ import annotations

import time
import traceback
import weakref
from typing import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from evolver import telemetry

_SAMPLED, _NOT_SAMPLED = TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.DEFAULT)


class MessagingSpan(trace.Span):
    """A recording span that becomes an SDK ReadableSpan when it ends."""

    def __init__(self, tracer: sdk_trace.Tracer, name: str, kind: SpanKind, span_context: SpanContext,
                 parent: SpanContext | None, attributes: dict):
        self._tracer = tracer
        self._name = name
        self._kind = kind
        self._context = span_context
        self._parent = parent
        self._attributes = attributes
        self._events: list[sdk_trace.Event] = []
        self._status = Status(StatusCode.UNSET)
        self._start = time.time_ns()
        self._end: int | None = None

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value) -> None:
        if self._end is None:
            # Off the hot path (failures): the SDK's own validation and conversion.
            self._attributes.update(BoundedAttributes(attributes={key: value}))

    def set_attributes(self, attributes: Mapping) -> None:
        for k, v in attributes.items():
            self.set_attribute(k, v)

    def add_event(self, name: str, attributes: Mapping | None = None, timestamp: int | None = None) -> None:
        if self._end is None:
            self._events.append(sdk_trace.Event(name, attributes, timestamp or time.time_ns()))

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # The SDK's rules: OK is final, UNSET is never set.
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return
        status = status if isinstance(status, Status) else Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(self, exception: BaseException, attributes: Mapping | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        cls = type(exception)
        module = cls.__module__
        attrs = {"exception.type": f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__,
                 "exception.message": str(exception),
                 "exception.stacktrace": "".join(traceback.format_exception(exception)),
                 "exception.escaped": str(escaped)}
        attrs.update(attributes or {})
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time.time_ns()
        t = self._tracer
        t.span_processor.on_end(sdk_trace.ReadableSpan(
            name=self._name, context=self._context, parent=self._parent, resource=t.resource,
            attributes=self._attributes, events=tuple(self._events), kind=self._kind,
            instrumentation_info=t.instrumentation_info, status=self._status, start_time=self._start,
            end_time=self._end, instrumentation_scope=_scope(t)))


_scopes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _scope(tracer: sdk_trace.Tracer) -> InstrumentationScope:
    scope = _scopes.get(tracer)
    if scope is None:
        info = tracer.instrumentation_info
        scope = _scopes[tracer] = InstrumentationScope(info.name, info.version, info.schema_url)
    return scope


_sdk_tracer: sdk_trace.Tracer | None = None


def _tracer() -> sdk_trace.Tracer | None:
    """The SDK tracer behind telemetry.tracer(), once a provider is installed; None otherwise."""
    global _sdk_tracer
    if _sdk_tracer is None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, sdk_trace.TracerProvider):
            _sdk_tracer = provider.get_tracer(telemetry.TRACER_NAME)
    return _sdk_tracer


def start(name: str, kind: SpanKind, attributes: dict, parent: Context | None = None, *,
          tracer: sdk_trace.Tracer | None = None) -> trace.Span:
    """Starts a span the way `Tracer.start_span` would; `parent=None` means the current context.
    `attributes` must be valid attribute values (strings and numbers) and becomes the span's.
    `tracer` defaults to the SDK tracer behind telemetry.tracer()."""
    tracer = tracer or _tracer()
    if tracer is None:
        return telemetry.tracer().start_span(name, context=parent, kind=kind, attributes=attributes)
    parent_sc = trace.get_current_span(parent).get_span_context()
    if not parent_sc.is_valid:
        parent_sc = None
    trace_id = parent_sc.trace_id if parent_sc else tracer.id_generator.generate_trace_id()
    if tracer.sampler is sampling.DEFAULT_ON:
        # The default sampler (parentbased_always_on), decided inline as it would decide it: the
        # parent's flag, or sampled for a new trace; the parent's trace state carries over.
        sampled = parent_sc.trace_flags.sampled if parent_sc else True
        trace_state = parent_sc.trace_state if parent_sc else None
    else:
        result = tracer.sampler.should_sample(parent, trace_id, name, kind, attributes)
        if result.decision.is_recording() and not result.decision.is_sampled():
            sampled = None  # RECORD_ONLY
        else:
            sampled = result.decision.is_sampled()
        trace_state, attributes = result.trace_state, dict(result.attributes)
    span_context = SpanContext(trace_id, tracer.id_generator.generate_span_id(), is_remote=False,
                               trace_flags=_SAMPLED if sampled else _NOT_SAMPLED, trace_state=trace_state)
    if sampled is False:
        return NonRecordingSpan(span_context)
    return MessagingSpan(tracer, name, kind, span_context, parent_sc, attributes)


def attach(span: trace.Span) -> object:
    """Makes `span` current (handlers' own spans become its children); returns the detach token."""
    return otel_context.attach(trace.set_span_in_context(span))


detach = otel_context.detach
