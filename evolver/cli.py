"""`evolver` command line: the embedded stack and (later) runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evolver.bus import topology
from evolver.config import ConfigError, load_settings

console = Console(stderr=False, highlight=False)


def _state_dir(args) -> str:
    return args.state_dir or os.environ.get("EVOLVER_STATE_DIR") or ".evolver"


def cmd_up(args) -> int:
    from evolver.stack import Stack
    with console.status("starting the embedded stack...") as status:
        state = Stack(_state_dir(args)).up(nats_port=args.nats_port,
                                           on_progress=lambda m: (console.print(f"  [green]✓[/] {m}"), status.update(m)))
    console.print(f"stack up: {state.nats_url}, {len(state.services)} services, logs in {Path(state.state_dir) / 'logs'}")
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
    for s in state.services:
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
    from evolver.stack import Stack
    stack = Stack(_state_dir(args))
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


def cmd_topology(args) -> int:
    out = {"streams": [{"name": s.name, "subjects": list(s.subjects), "work_queue": s.work_queue}
                       for s in topology.STREAMS],
           "consumers": [{"durable": c.durable, "stream": c.stream.name, "filter_subject": c.filter_subject,
                          "service": c.service} for c in topology.CONSUMERS]}
    print(json.dumps(out, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evolver", description=__doc__)
    p.add_argument("--state-dir", help="where the embedded stack keeps its state (default .evolver or $EVOLVER_STATE_DIR)")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start nats-server and the five services")
    up.add_argument("--nats-port", type=int, help="fixed NATS port (default: a free one)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("status", help="health of every component").set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop the stack").set_defaults(func=cmd_down)
    pg = sub.add_parser("ping", help="send one event through every service")
    pg.add_argument("--timeout", type=float, default=10.0)
    pg.set_defaults(func=cmd_ping)
    sm = sub.add_parser("smoke", help="up, status, ping, down")
    sm.add_argument("--nats-port", type=int)
    sm.add_argument("--timeout", type=float, default=10.0)
    sm.set_defaults(func=cmd_smoke)
    sub.add_parser("topology", help="print streams and consumers as JSON").set_defaults(func=cmd_topology)
    return p


def main(argv: list[str] | None = None) -> None:
    from evolver.stack import StackError
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except (StackError, ConfigError, FileNotFoundError) as e:
        console.print(f"[red]error:[/] {e}")
        rc = 1
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc)


if __name__ == "__main__":
    main()
