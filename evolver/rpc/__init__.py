"""gRPC bootstrap and client helpers shared by every service."""

from evolver.rpc._auth import read_token

from evolver.rpc._errors import DomainErrorInterceptor, bad_request_fields, to_status
from evolver.rpc.client import (DeadlineStub, channel, configure_clients, health_status, is_transient, retry_transient,
                                stub)
from evolver.rpc.server import GrpcServer, Registration

__all__ = ["DeadlineStub", "DomainErrorInterceptor", "GrpcServer", "Registration", "bad_request_fields",
           "channel", "configure_clients", "health_status", "read_token", "is_transient", "retry_transient", "stub", "to_status"]
