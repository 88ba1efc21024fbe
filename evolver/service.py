"""The process lifecycle every service shares.

start:  settings -> telemetry -> bus (topology applied) -> gRPC server -> bus workers -> SERVING
SIGTERM: health NOT_SERVING -> workers finish in-flight messages -> in-flight RPCs get the grace
         period -> NATS closed -> spans flushed. A second signal is ignored; k8s' grace period
         (> drain + grace) is the hard limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from google.protobuf import timestamp_pb2

from evolver import telemetry
from evolver.bus import Bus, DeadLetterSweeper, Delivery, Handler, Worker, is_bus_failure, topology
from evolver.bus.worker import instance_name
from evolver.config import ConfigError, Settings, load_settings
from evolver.errors import Unavailable
from evolver.rpc import GrpcServer, Registration, configure_clients, read_token
from evolver.v1 import events_pb2

log = logging.getLogger(__name__)


@dataclass
class ServiceParts:
    """What a service contributes: its gRPC servicers, its bus handlers, and cleanup."""

    registrations: list[Registration]
    handlers: dict[str, Handler] = field(default_factory=dict)  # consumer durable -> handler
    close: Callable[[], Awaitable[None]] | None = None
    # Long-running loops (e.g. the trainer's run loop); each gets the stop event.
    background: list[Callable[[asyncio.Event], Awaitable[None]]] = field(default_factory=list)


@dataclass
class ServiceContext:
    name: str
    settings: Settings
    bus: Bus


Builder = Callable[[ServiceContext], Awaitable[ServiceParts]]


async def endpoint(ctx: ServiceContext, service: str) -> str:
    """Another service's gRPC address: from settings.endpoints, else from the `services` bucket
    where each service registers itself at start."""
    if service in ctx.settings.endpoints:
        return ctx.settings.endpoints[service]
    raw = await (await ctx.bus.kv(topology.SERVICES_BUCKET)).get(service)
    if raw is None:
        raise Unavailable(f"no address known for service {service!r} (set endpoints.{service} or start it)")
    return raw.decode()


def diag_handler(ctx: ServiceContext) -> Handler:
    """Answers diag.ping with diag.pong.<service>; proves this service's bus path works."""
    instance = instance_name()

    async def handle(d: Delivery) -> None:
        ping: events_pb2.DiagPing = d.message  # type: ignore[assignment]
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        pong = events_pb2.DiagPong(ping_id=ping.ping_id, service=ctx.name, instance=instance, received_at=now)
        await ctx.bus.publish(f"diag.pong.{ctx.name}", pong, key=f"{ping.ping_id}:{ctx.name}")
    return handle


async def register_address(bus: Bus, name: str, address: str, stop: asyncio.Event,
                           max_delay_s: float = 10.0) -> None:
    """Publishes this service's gRPC address in the services bucket. A connection lost meanwhile
    (before the bus watcher runs) is reopened here and the put retried, so a NATS hiccup at
    startup delays readiness instead of killing the service."""
    delay = 0.25
    while True:
        try:
            if bus.lost.is_set():
                await bus.reopen()
                await bus.ensure_topology()
            await (await bus.kv(topology.SERVICES_BUCKET)).put(name, address.encode())
            return
        except Exception as e:
            if stop.is_set() or not (is_bus_failure(e) or isinstance(e, OSError)):  # only NATS away or slow
                raise
            log.warning("%s: cannot register its address yet (%s: %s); retry in %.1fs",
                        name, type(e).__name__, str(e)[:120], delay)
            await asyncio.sleep(delay)
            delay = min(max_delay_s, delay * 2)


class ServiceRunner:
    def __init__(self, name: str, build: Builder, settings: Settings):
        self.name, self.build, self.settings = name, build, settings
        self.stop_requested = asyncio.Event()
        self.server: GrpcServer | None = None
        self.bus: Bus | None = None
        self.workers: list[Worker] = []
        self.health_changes: list[str] = []  # NOT_SERVING / SERVING as the NATS connection comes and goes

    async def run(self) -> None:
        s = self.settings
        configure_clients(tls_ca_file=s.grpc.tls_ca_file, token=read_token(s.grpc.auth_token_file))
        bus = self.bus = await Bus.connect(s, name=self.name)
        tasks: list[asyncio.Task] = []
        worker_stop = asyncio.Event()
        parts: ServiceParts | None = None
        try:
            await bus.ensure_topology()
            ctx = ServiceContext(self.name, s, bus)
            parts = await self.build(ctx)
            handlers = {topology.diag_consumer(self.name).durable: diag_handler(ctx), **parts.handlers}
            for durable, handler in handlers.items():
                spec = topology.consumer(durable)
                if spec.service != self.name:
                    raise ValueError(f"consumer {durable} belongs to {spec.service}, not {self.name}")
                self.workers.append(Worker(bus, spec, handler))
            self.server = GrpcServer(parts.registrations, host=s.grpc.host, port=s.grpc.port,
                                     tls_cert_file=s.grpc.tls_cert_file, tls_key_file=s.grpc.tls_key_file,
                                     auth_token=read_token(s.grpc.auth_token_file),
                                     allow_unauthenticated=s.grpc.allow_unauthenticated,
                                     health_port=s.grpc.health_port)
            await self.server.start()
            tasks = [asyncio.create_task(w.run(worker_stop), name=w.spec.durable) for w in self.workers]
            tasks.append(asyncio.create_task(DeadLetterSweeper(bus).run(worker_stop), name="dead-letter-sweeper"))
            tasks += [asyncio.create_task(loop(worker_stop), name=f"background-{i}")
                      for i, loop in enumerate(parts.background)]
            await register_address(bus, self.name, self.server.address, self.stop_requested)
            await self.server.set_serving()
            tasks.append(asyncio.create_task(self._watch_bus(bus, worker_stop), name="bus-watch"))
            print(f"{self.name} ready grpc={self.server.address} nats={s.nats.url} "
                  f"consumers={','.join(w.spec.durable for w in self.workers)}", flush=True)
            await self.stop_requested.wait()
            log.info("%s: shutting down", self.name)
            await self.server.begin_shutdown()
            await asyncio.sleep(s.grpc.shutdown_notice_s)
            worker_stop.set()
            done, pending = await asyncio.wait(tasks, timeout=s.bus.drain_timeout_s) if tasks else (set(), set())
            for t in pending:
                t.cancel()
            await self.server.stop(s.grpc.shutdown_grace_s)
        finally:
            worker_stop.set()
            for t in tasks:
                if not t.done():
                    t.cancel()
            if parts and parts.close:
                await parts.close()
            await bus.close()
            telemetry.shutdown()
        print(f"{self.name} stopped", flush=True)


    async def _watch_bus(self, bus: Bus, stop: asyncio.Event) -> None:
        """Health follows the NATS connection: NOT_SERVING while it is down; a connection that
        closed for good (nats-py gives up after some server errors) is reopened, with backoff."""
        serving, delay = True, 0.5
        while not stop.is_set():
            healthy = bus.connected.is_set() and not bus.lost.is_set()
            if healthy != serving:
                serving = healthy
                log.warning("%s: NATS connection %s; health %s", self.name, "back" if healthy else "lost",
                            "SERVING" if healthy else "NOT_SERVING")
                await (self.server.set_serving() if healthy else self.server.set_not_serving())
                self.health_changes.append("SERVING" if healthy else "NOT_SERVING")
            if bus.lost.is_set():
                try:
                    await bus.reopen()
                    await bus.ensure_topology()
                    log.warning("%s: NATS connection reopened", self.name)
                    delay = 0.5
                    continue
                except Exception as e:  # NATS still away: try again later
                    log.warning("%s: reopening NATS failed (%s); retry in %.1fs", self.name, e, delay)
                    await asyncio.sleep(delay)
                    delay = min(10.0, delay * 2)
                    continue
            await asyncio.sleep(0.25)


def main(name: str, build: Builder) -> None:
    """Entry point of `python -m services.<name>`. Exit 2 for bad config, 3 when NATS is down.

    After shutdown the process exits without waiting for executor threads: a handler still
    computing in one (a generation batch) would otherwise hold SIGTERM past every grace period
    until the supervisor SIGKILLs it. Its message was never acked and goes to another replica."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        raise SystemExit(2)
    telemetry.setup(name, settings.telemetry)

    async def _run() -> None:
        runner = ServiceRunner(name, build, settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop_requested.set)
        await runner.run()

    code = 0
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_run())
    except Unavailable as e:
        print(f"{name}: {e}", file=sys.stderr)
        code = 3
    except OSError as e:
        print(f"{name}: {e}", file=sys.stderr)
        code = 4
    except BaseException:
        logging.getLogger(name).exception("%s crashed", name)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not loop.shutdown_default_executor(): see the docstring
