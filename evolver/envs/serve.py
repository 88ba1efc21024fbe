"""Runs an Environment as its own gRPC server process (built-in or a user's own).

    python -m evolver.envs.serve bfcl --port 50100
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys

from evolver import telemetry
from evolver.envs.base import Environment
from evolver.envs.caps import EnvironmentCaps
from evolver.envs.server import EnvironmentServicer
from evolver.rpc import GrpcServer, Registration, read_token
from evolver.v1 import environment_pb2_grpc as pb_grpc

BUILTIN = {"bfcl": "evolver.envs.bfcl:BfclEnvironment"}
# bfcl:<category> serves one of BFCL's multi-turn categories (base, miss_param, long_context, miss_func).
SERVICE_NAME = "evolver.v1.EnvironmentService"


def load(spec: str) -> Environment:
    """`bfcl` (or `bfcl:<category>`), or `package.module:Class` for any importable Environment."""
    name, _, category = spec.partition(":")
    if name == "bfcl" and category:
        from evolver.envs.bfcl import BfclEnvironment
        return BfclEnvironment(category)
    target = BUILTIN.get(spec, spec)
    module, _, name = target.partition(":")
    if not name:
        raise SystemExit(f"unknown environment {spec!r}: use one of {sorted(BUILTIN)} or module:Class")
    return getattr(importlib.import_module(module), name)()


async def serve(env: Environment, host: str, port: int, *, call_timeout_s: float = 10.0,
                idle_expiry_s: float = 600.0, ready=lambda address: None, stop: asyncio.Event | None = None,
                caps: EnvironmentCaps | None = None, max_instances: int = 256, grpc_settings=None) -> None:
    from evolver.config import GrpcSettings
    g = grpc_settings or GrpcSettings()
    servicer = EnvironmentServicer(env, call_timeout_s=call_timeout_s, idle_expiry_s=idle_expiry_s,
                                   caps=caps or EnvironmentCaps(call_timeout_s=call_timeout_s),
                                   max_instances=max_instances)
    server = GrpcServer([Registration(SERVICE_NAME, servicer, pb_grpc.add_EnvironmentServiceServicer_to_server)],
                        host=host, port=port, auth_token=read_token(g.auth_token_file),
                        allow_unauthenticated=g.allow_unauthenticated, tls_cert_file=g.tls_cert_file,
                        tls_key_file=g.tls_key_file, health_port=g.health_port)
    await server.start()
    servicer.start_reaper()
    await server.set_serving()
    ready(server.address)
    if stop is None:  # standalone process: SIGTERM stops it
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (RuntimeError, ValueError):  # not the main thread (tests)
                pass
    await stop.wait()
    await server.begin_shutdown()
    await server.stop(2.0)
    await servicer.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("environment", help="bfcl, or module:Class")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--call-timeout", type=float, default=10.0, help="seconds per environment call")
    ap.add_argument("--idle-expiry", type=float, default=600.0, help="seconds before an unused instance is released")
    ap.add_argument("--max-instances", type=int, default=256, help="live instances (one worker process each)")
    d = EnvironmentCaps()
    ap.add_argument("--max-calls-per-step", type=int, default=d.max_calls_per_step,
                    help="calls run per Step; the rest are answered with an error observation")
    ap.add_argument("--max-argument-chars", type=int, default=d.max_argument_chars, help="one call's arguments JSON")
    ap.add_argument("--max-argument-depth", type=int, default=d.max_argument_depth, help="nesting of one call's arguments")
    ap.add_argument("--max-observation-chars", type=int, default=d.max_observation_chars, help="one result (clipped)")
    ap.add_argument("--max-state-chars", type=int, default=d.max_state_chars, help="a GetState document")
    ap.add_argument("--instance-memory-mb", type=int, default=d.instance_memory_mb,
                    help="address-space limit per instance process (0: none)")
    args = ap.parse_args(argv)
    caps = EnvironmentCaps(call_timeout_s=args.call_timeout, max_calls_per_step=args.max_calls_per_step,
                           max_argument_chars=args.max_argument_chars, max_argument_depth=args.max_argument_depth,
                           max_observation_chars=args.max_observation_chars, max_state_chars=args.max_state_chars,
                           instance_memory_mb=args.instance_memory_mb)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    env = load(args.environment)
    from evolver.config import ConfigError, load_settings
    try:  # the same telemetry settings as the services (the embedded stack collects spans in JSONL)
        settings = load_settings()
        telemetry_settings = settings.telemetry
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        raise SystemExit(2)
    telemetry.setup(f"env-{env.env_id}", telemetry_settings)
    try:
        asyncio.run(serve(env, args.host, args.port, call_timeout_s=args.call_timeout, idle_expiry_s=args.idle_expiry,
                          caps=caps, max_instances=args.max_instances,
                          grpc_settings=settings.grpc,
                          ready=lambda a: print(f"environment {env.env_id} ready grpc={a}", flush=True)))
    except OSError as e:
        print(f"environment {env.env_id}: {e}", file=sys.stderr)
        telemetry.shutdown()
        raise SystemExit(4)
    telemetry.shutdown()
    # A hung environment call leaves a worker thread that interpreter exit would wait for
    # forever; the server has shut down cleanly by now, so leave without joining it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
