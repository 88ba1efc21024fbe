"""Tracing and metrics setup, once per process.

OTLP/gRPC export is on when `telemetry.otlp_endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT is set; the
embedded stack can also append spans as JSONL (telemetry.spans_jsonl). OpenTelemetry allows one
global provider per process, so tests install theirs first and setup() leaves it alone.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Sequence

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from evolver.config import TelemetrySettings

TRACER_NAME = "evolver"
_lock = threading.Lock()
_installed: TracerProvider | None = None
_meter_provider: MeterProvider | None = None


class JsonlSpanExporter(SpanExporter):
    """Appends one JSON object per finished span; `evolver trace` reads these files."""

    def __init__(self, path: str):
        self._path = path
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.get_span_context()
            lines.append(json.dumps({
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_span_id": format(s.parent.span_id, "016x") if s.parent else None,
                "name": s.name,
                "kind": s.kind.name,
                "service": s.resource.attributes.get("service.name"),
                "start_ns": s.start_time,
                "end_ns": s.end_time,
                "status": s.status.status_code.name,
                "attributes": {k: v if isinstance(v, (str, int, float, bool)) else list(v) for k, v in (s.attributes or {}).items()},
            }))
        with self._lock, open(self._path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def setup(service_name: str, settings: TelemetrySettings | None = None) -> TracerProvider | None:
    """Installs the process's tracer and meter providers. Returns ours, or None when another
    provider (a test's) was installed first."""
    global _installed, _meter_provider
    settings = settings or TelemetrySettings()
    with _lock:
        if _installed is not None:
            return _installed
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return None
        resource = Resource.create({"service.name": settings.service_name or service_name})
        provider = TracerProvider(resource=resource)
        endpoint = settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        readers = []
        if endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))))
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))))
        if settings.spans_jsonl:
            provider.add_span_processor(BatchSpanProcessor(JsonlSpanExporter(settings.spans_jsonl), schedule_delay_millis=500))
        trace.set_tracer_provider(provider)
        _meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(_meter_provider)
        _installed = provider
        return provider


def shutdown() -> None:
    """Flushes and stops exporters; call on SIGTERM or the last batch is lost."""
    if _installed is not None:
        _installed.shutdown()
    if _meter_provider is not None:
        _meter_provider.shutdown()


# A proxy until a provider is installed, then the real tracer: safe to create at import, and
# get_tracer() per call would build a new Tracer each time (measurable on the bus hot path).
_TRACER = trace.get_tracer(TRACER_NAME)


def tracer() -> trace.Tracer:
    return _TRACER


def meter() -> metrics.Meter:
    return metrics.get_meter(TRACER_NAME)
