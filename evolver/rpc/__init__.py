"""gRPC bootstrap and client helpers shared by every service."""

from evolver.rpc._errors import DomainErrorInterceptor, bad_request_fields, to_status
from evolver.rpc.client import DeadlineStub, channel, health_status, is_transient, retry_transient, stub
from evolver.rpc.server import GrpcServer, Registration

__all__ = ["DeadlineStub", "DomainErrorInterceptor", "GrpcServer", "Registration", "bad_request_fields",
           "channel", "health_status", "is_transient", "retry_transient", "stub", "to_status"]
