"""Client helpers: traced channels and stubs whose every call carries a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters

from evolver.errors import Unavailable

log = logging.getLogger(__name__)
DEFAULT_DEADLINE_S = 30.0
# Codes a caller may retry: the server was not there or not ready, not "your request is wrong".
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                             grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED})
T = TypeVar("T")


def is_transient(e: BaseException) -> bool:
    if isinstance(e, grpc.aio.AioRpcError):
        return e.code() in TRANSIENT_CODES
    return isinstance(e, (Unavailable, ConnectionError))


async def retry_transient(call: Callable[[], Awaitable[T]], *, what: str, deadline_s: float = 120.0,
                          base_s: float = 0.5, cap_s: float = 8.0,
                          should_stop: Callable[[], bool] = lambda: False) -> T:
    """Runs call(), retrying transient failures (a restarting service, a NATS blip) with
    exponential backoff until deadline_s has passed; then raises Unavailable saying for how long
    and what failed. Any other error is raised at once."""
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as e:
            if not is_transient(e):
                raise
            attempt += 1
            elapsed = time.monotonic() - start
            detail = f"{e.code().name}: {(e.details() or '')[:200]}" if isinstance(e, grpc.aio.AioRpcError) else str(e)[:200]
            if elapsed >= deadline_s or should_stop():
                raise Unavailable(f"{what}: still failing after {elapsed:.0f}s and {attempt} attempts "
                                  f"(last: {detail})") from None
            delay = min(cap_s, base_s * 2 ** (attempt - 1), max(0.0, deadline_s - elapsed))
            log.warning("%s failed (%s); retry %d in %.1fs", what, detail, attempt, delay)
            await asyncio.sleep(delay)


# Process-wide client defaults, set once at start from settings.grpc (configure_clients):
# every channel this package builds then carries the bearer token and verifies TLS.
_defaults: dict[str, str | None] = {"tls_ca_file": None, "token": None}


def configure_clients(tls_ca_file: str | None = None, token: str | None = None) -> None:
    _defaults.update(tls_ca_file=tls_ca_file, token=token)


def channel(address: str, *, tls_ca_file: str | None = None) -> grpc.aio.Channel:
    """A traced channel; TLS (verifying the server against tls_ca_file, or the configured CA)
    when a CA is known; the configured bearer token on every call."""
    from evolver.rpc._auth import client_interceptors
    interceptors = [*client_interceptors(_defaults["token"]),
                    *aio_client_interceptors(filter_=filters.negate(filters.health_check()))]
    tls_ca_file = tls_ca_file or _defaults["tls_ca_file"]
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
