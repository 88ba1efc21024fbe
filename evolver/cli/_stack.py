"""The embedded stack: up, status, down, ping, smoke."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rich.table import Table

from evolver.cli._common import _state_dir, console
from evolver.config import load_settings


def cmd_up(args) -> int:
    from evolver.stack import Stack
    from evolver.stack.stack import parse_replicas
    replicas = parse_replicas(args.replicas)
    with console.status("starting the embedded stack...") as status:
        state = Stack(_state_dir(args)).up(nats_port=args.nats_port, replicas=replicas,
                                           on_progress=lambda m: (console.print(f"  [green]✓[/] {m}"), status.update(m)))
    console.print(f"stack up: {state.nats_url}, {len(state.services)} services, "
                  f"{len(state.environments)} environment(s), logs in {Path(state.state_dir) / 'logs'}")
    return 0


def cmd_restart(args) -> int:
    from evolver.stack import Stack
    with console.status(f"restarting {args.service}..."):
        info = Stack(_state_dir(args)).restart(args.service, kill=args.kill,
                                               on_progress=lambda m: console.print(f"  [green]✓[/] {m}"))
    console.print(f"{info.name} restarted: pid {info.pid} on {info.address}")
    return 0


def cmd_status(args) -> int:
    from evolver.stack import Stack
    stack = Stack(_state_dir(args))
    statuses = stack.status()
    state = stack.read_state()
    table = Table(title=f"embedded stack ({state.nats_url})")
    table.add_column("component")
    table.add_column("address")
    table.add_column("pid")
    table.add_column("status")
    table.add_row("nats-server", state.nats_url, str(state.nats_pid), statuses["nats-server"])
    for s in state.all_processes():
        st = statuses[s.name]
        table.add_row(s.name, s.address, str(s.pid), f"[green]{st}[/]" if st == "SERVING" else f"[red]{st}[/]")
    console.print(table)
    return 0 if all(v in ("SERVING", "RUNNING") for v in statuses.values()) else 1


def cmd_down(args) -> int:
    from evolver.stack import Stack
    stack = Stack(_state_dir(args))
    if stack.read_state() is None:
        console.print("no stack running")
        return 0
    with console.status("stopping the embedded stack..."):
        for m in stack.down():
            console.print(f"[yellow]{m}[/]")
    console.print("stack down")
    return 0


def cmd_ping(args) -> int:
    from evolver import telemetry
    from evolver.stack import Stack
    from evolver.stack.ping import ping
    stack = Stack(_state_dir(args))
    state = stack.running()
    if state is None:
        console.print(f"[red]no stack is running from {stack.state_dir}[/]")
        return 1
    settings = load_settings(environ={**os.environ, "EVOLVER_NATS__URL": state.nats_url})
    provider = telemetry.setup("evolver-cli", settings.telemetry.model_copy(update={"spans_jsonl": str(state.spans_path)}))
    result = asyncio.run(ping(settings, tuple(s.name for s in state.services), timeout_s=args.timeout))
    if provider:
        provider.force_flush()
    console.print(f"diag.ping {result.ping_id} (trace {result.trace_id}):")
    for name, ms in sorted(result.latencies_ms.items(), key=lambda kv: kv[1]):
        console.print(f"  [green]✓[/] {name:<11} pong after {ms:6.1f} ms")
    for name in result.missing:
        console.print(f"  [red]✗[/] {name:<11} no pong within {args.timeout:.0f}s")
    return 0 if not result.missing else 1


def cmd_smoke(args) -> int:
    """Up, status, one event through every service, down: what `make run` shows for now."""
    rc = cmd_up(args)
    try:
        rc = rc or cmd_status(args) or cmd_ping(args)
    finally:
        cmd_down(args)
    state_dir = Path(_state_dir(args))
    spans = state_dir / "traces" / "spans.jsonl"
    if rc == 0 and spans.exists():
        console.print(f"spans recorded in {spans}; service logs in {state_dir / 'logs'}")
    return rc
