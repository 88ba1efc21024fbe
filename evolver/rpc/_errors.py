"""The one place domain errors become gRPC status codes."""

from __future__ import annotations

import logging
from typing import Any, Callable

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from evolver.errors import (DeadlineExceeded, EnvironmentFailure, FailedPrecondition, InvalidArgument, NotFound,
                            Unavailable)
from evolver.limits import check_message

log = logging.getLogger(__name__)

# gRPC trailers are limited (8 KiB by default): a status message that echoes a big input would
# hide the real status behind a transport error. Messages quote only short prefixes, and this
# is the last guard.
MAX_STATUS_MESSAGE = 1024

_CODES: list[tuple[type[Exception], int]] = [
    (InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (Unavailable, code_pb2.UNAVAILABLE),
    (DeadlineExceeded, code_pb2.DEADLINE_EXCEEDED),
    # The environment's own message is safe and useful to show (unlike our internal errors).
    (EnvironmentFailure, code_pb2.INTERNAL),
    # Generated servicer base classes raise this for RPCs a service does not offer yet.
    (NotImplementedError, code_pb2.UNIMPLEMENTED),
]


def to_status(exc: Exception) -> grpc.Status:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            st = status_pb2.Status(code=code, message=_clip(str(exc) or "method not implemented"))
            if isinstance(exc, InvalidArgument):
                st.details.add().Pack(error_details_pb2.BadRequest(field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=_clip(v.field, 200),
                                                                description=_clip(v.description, 300))
                    for v in exc.violations[:8]]))
            return rpc_status.to_status(st)
    # A bug: log it here, tell the client nothing internal.
    log.exception("unhandled error in RPC", exc_info=exc)
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message="internal error"))


def _clip(text: str, n: int = MAX_STATUS_MESSAGE) -> str:
    return text if len(text) <= n else text[:n] + f"... ({len(text)} chars)"


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler: the request's ids and sizes are checked first (evolver.limits), then a
    raised domain error aborts with the mapped status and details."""

    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        deserialize = _lenient(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary), deserialize, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream), deserialize, handler.response_serializer)
        return handler  # client/bidi streaming: none in our API yet


class _Undecodable:
    """Stands in for a request whose bytes are not its message type: the wrapper answers
    INVALID_ARGUMENT (gRPC's own path logs a traceback per request and answers INTERNAL)."""

    def __init__(self, reason: str):
        self.reason = reason


def _lenient(deserialize):
    if deserialize is None:
        return None

    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception as e:
            return _Undecodable(_clip(f"{type(e).__name__}: {e}", 200))
    return parse


def _check(request) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument("request", f"not a valid message of the method's request type ({request.reason})")
    check_message(request)


def _wrap_unary(behavior):
    async def wrapper(request, context: grpc.aio.ServicerContext):
        try:
            _check(request)
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            await context.abort_with_status(to_status(e))
    return wrapper


def _wrap_stream(behavior):
    async def wrapper(request, context: grpc.aio.ServicerContext):
        try:
            _check(request)
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            await context.abort_with_status(to_status(e))
    return wrapper


def bad_request_fields(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """Client side: the field violations carried by an INVALID_ARGUMENT, as {field: description}."""
    st = rpc_status.from_call(error)
    out: dict[str, str] = {}
    for detail in st.details if st else []:
        br = error_details_pb2.BadRequest()
        if detail.Unpack(br):
            out.update({v.field: v.description for v in br.field_violations})
    return out
