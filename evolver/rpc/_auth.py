"""Bearer-token authentication for the gRPC API.

The token is shared (a Kubernetes Secret mounted as a file, grpc.auth_token_file): every server
requires `authorization: Bearer <token>` on every call except the health service (kubelet's gRPC
probes send no metadata), and every client this package builds attaches it. A server bound
beyond loopback refuses to start without it unless grpc.allow_unauthenticated says so, so only
the embedded loopback stack runs without authentication by default.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any, Callable

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"
METADATA_KEY = "authorization"


def read_token(path: str | None) -> str | None:
    if not path:
        return None
    token = Path(path).read_text().strip()
    if len(token) < 16:
        raise ValueError(f"grpc.auth_token_file {path}: a token needs at least 16 characters")
    return token


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127.")


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(HEALTH_PREFIX):
            return await continuation(details)
        given = dict(details.invocation_metadata or ()).get(METADATA_KEY, "")
        if isinstance(given, str):
            given = given.encode()
        if hmac.compare_digest(given, self._expected):
            return await continuation(details)
        handler = await continuation(details)
        return _refuse(handler)


def _refuse(handler):
    async def deny(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

    async def deny_stream(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        yield  # pragma: no cover - makes this an async generator
    if handler is None:
        return grpc.unary_unary_rpc_method_handler(deny)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny_stream, handler.request_deserializer,
                                                    handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)


class _TokenClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str):
        self._pair = (METADATA_KEY, f"Bearer {token}")

    def _with_token(self, details):
        metadata = list(details.metadata or []) + [self._pair]
        return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                          details.wait_for_ready)

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._with_token(client_call_details), request)

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._with_token(client_call_details), request)


def client_interceptors(token: str | None) -> list:
    return [_TokenClientInterceptor(token)] if token else []
