"""One grpc.aio server bootstrap for every service: health, reflection, tracing, error mapping,
graceful shutdown (health NOT_SERVING -> grace for in-flight calls -> stop)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

from evolver.rpc._auth import TokenAuthInterceptor, is_loopback
from evolver.rpc._errors import DomainErrorInterceptor

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 << 20


@dataclass
class Registration:
    """A servicer and how to add it: `add` is the generated add_XServicer_to_server."""

    service_full_name: str
    servicer: object
    add: Callable[[object, grpc.aio.Server], None]


class GrpcServer:
    def __init__(self, registrations: Iterable[Registration], *, host: str = "127.0.0.1", port: int = 0,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 auth_token: str | None = None, allow_unauthenticated: bool = False, health_port: int | None = None):
        self.registrations = list(registrations)
        if not auth_token and not allow_unauthenticated and not is_loopback(host):
            raise ValueError(f"gRPC on {host} needs authentication: set grpc.auth_token_file "
                             "(or grpc.allow_unauthenticated: true on a network you trust)")
        auth = [TokenAuthInterceptor(auth_token)] if auth_token else []
        self.server = grpc.aio.server(
            interceptors=[*auth, aio_server_interceptor(filter_=filters.negate(filters.health_check())),
                          DomainErrorInterceptor()],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.so_reuseport", 0)],
        )
        for r in self.registrations:
            r.add(r.servicer, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [r.service_full_name for r in self.registrations]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        if tls_cert_file and tls_key_file:
            with open(tls_key_file, "rb") as k, open(tls_cert_file, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            self.port = self.server.add_secure_port(f"{host}:{port}", creds)
        elif tls_cert_file or tls_key_file:
            raise ValueError("gRPC TLS needs both grpc.tls_cert_file and grpc.tls_key_file")
        else:
            self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind gRPC server to {host}:{port} (port in use?)")
        self.address = f"{host}:{self.port}"
        # With TLS on the API port, kubelet's gRPC probes (plaintext, no metadata) need a port of
        # their own: it serves the same health service and nothing else.
        self.health_server = None
        if health_port is not None:
            self.health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            bound = self.health_server.add_insecure_port(f"{host}:{health_port}")
            if bound == 0:
                raise OSError(f"cannot bind the gRPC health port {host}:{health_port} (port in use?)")
            self.health_address = f"{host}:{bound}"

    async def start(self) -> None:
        # grpc's HealthServicer starts at SERVING; a service is not ready until its runner says so
        # (registered on the bus), so probes and load balancers see NOT_SERVING until then.
        await self.set_not_serving()
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()

    async def set_serving(self) -> None:
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        for r in self.registrations:
            await self.health.set(r.service_full_name, health_pb2.HealthCheckResponse.SERVING)

    async def set_not_serving(self) -> None:
        """Health NOT_SERVING while a dependency (NATS) is lost; set_serving() when it is back."""
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        for r in self.registrations:
            await self.health.set(r.service_full_name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def begin_shutdown(self) -> None:
        """Health flips to NOT_SERVING so probes and load balancers stop sending new work."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)
        if self.health_server is not None:
            await self.health_server.stop(0)
