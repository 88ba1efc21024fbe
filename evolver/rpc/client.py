"""Client helpers: traced channels and stubs whose every call carries a deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters

DEFAULT_DEADLINE_S = 30.0


def channel(address: str, *, tls_ca_file: str | None = None) -> grpc.aio.Channel:
    """A traced channel; TLS (verifying the server against tls_ca_file) when a CA is given."""
    interceptors = aio_client_interceptors(filter_=filters.negate(filters.health_check()))
    if tls_ca_file:
        with open(tls_ca_file, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.aio.secure_channel(address, creds, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, interceptors=interceptors)


class DeadlineStub:
    """Wraps a generated stub so no call goes out without a deadline (a hung server would
    otherwise hang its caller forever)."""

    def __init__(self, stub: Any, default_timeout_s: float = DEFAULT_DEADLINE_S):
        self._stub = stub
        self._timeout = default_timeout_s

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)

        def call(request, *, timeout: float | None = None, **kwargs):
            return method(request, timeout=timeout or self._timeout, **kwargs)
        return call


def stub(stub_class: type, ch: grpc.aio.Channel, default_timeout_s: float = DEFAULT_DEADLINE_S) -> Any:
    return DeadlineStub(stub_class(ch), default_timeout_s)


async def health_status(address: str, service: str = "", timeout_s: float = 2.0) -> str:
    """SERVING / NOT_SERVING / UNREACHABLE (no tracing: probes would flood traces)."""
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    except (grpc.aio.AioRpcError, asyncio.TimeoutError):
        return "UNREACHABLE"
