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
from evolver.errors import EvolverError

console = Console(stderr=False, highlight=False)


def _state_dir(args) -> str:
    return args.state_dir or os.environ.get("EVOLVER_STATE_DIR") or ".evolver"


def cmd_up(args) -> int:
    from evolver.stack import Stack
    with console.status("starting the embedded stack...") as status:
        state = Stack(_state_dir(args)).up(nats_port=args.nats_port,
                                           on_progress=lambda m: (console.print(f"  [green]✓[/] {m}"), status.update(m)))
    console.print(f"stack up: {state.nats_url}, {len(state.services)} services, "
                  f"{len(state.environments)} environment(s), logs in {Path(state.state_dir) / 'logs'}")
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


def _running_state(args):
    from evolver.stack import Stack, StackError
    state = Stack(_state_dir(args)).running()
    if state is None:
        raise StackError(f"no stack is running from {_state_dir(args)}; start one with `evolver up`")
    return state


def cmd_env_add(args) -> int:
    from evolver.rpc import bad_request_fields, channel, stub
    from evolver.v1 import task_gen_service_pb2 as tg
    from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc
    import grpc
    address = args.task_gen or _running_state(args).address_of("task_gen")
    env_id = args.id or args.address.replace(":", "-").replace(".", "-").lower()

    async def go():
        async with channel(address) as ch:
            return await stub(tg_grpc.TaskGenServiceStub, ch, 30.0).RegisterEnvironment(
                tg.RegisterEnvironmentRequest(env_id=env_id, address=args.address, display_name=args.name or ""))
    try:
        r = asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        fields = bad_request_fields(e)
        console.print(f"[red]cannot register {args.address}:[/] {e.code().name}: {e.details()}"
                      + (f" {fields}" if fields else ""))
        return 1
    spec = r.environment
    console.print(f"registered {spec.env_id} at {spec.address}: {len(spec.tools)} tools, "
                  f"state {'visible' if spec.state_visible else 'opaque'}")
    return 0


def cmd_env_list(args) -> int:
    from evolver.rpc import channel, stub
    from evolver.v1 import environment_pb2 as env_pb
    from evolver.v1 import task_gen_service_pb2 as tg
    from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc
    address = args.task_gen or _running_state(args).address_of("task_gen")

    async def go():
        async with channel(address) as ch:
            return await stub(tg_grpc.TaskGenServiceStub, ch, 10.0).ListEnvironments(tg.ListEnvironmentsRequest())
    table = Table(title="registered environments")
    for col in ("env_id", "kind", "address", "tools", "state"):
        table.add_column(col)
    for e in asyncio.run(go()).environments:
        table.add_row(e.env_id, env_pb.EnvironmentKind.Name(e.kind).removeprefix("ENVIRONMENT_KIND_").lower(),
                      e.address, str(len(e.tools)), "visible" if e.state_visible else "opaque")
    console.print(table)
    return 0


def cmd_eval(args) -> int:
    from rich.progress import Progress

    from evolver.envs.client import RemoteEnvironment
    from evolver.envs.harness import evaluate, reference_agent
    address = args.env_address or _running_state(args).address_of(f"env-{args.env}")
    agents = {"reference": reference_agent(), "reference-perturbed": reference_agent(drop_last_call=True)}
    if args.agent == "policy":
        from evolver.agent import policy_agent
        from evolver.models import prepare
        from evolver.models.hf import HFBackend
        model_dir = Path(args.model_dir) if args.model_dir else prepare.prepare(on_progress=lambda m: console.print(f"  {m}"))
        agents["policy"] = policy_agent(HFBackend(model_dir), max_steps=args.max_steps)
    if args.agent not in agents:
        console.print(f"[red]unknown agent {args.agent!r}[/]; available: policy, {', '.join(agents)}")
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    async def go():
        async with RemoteEnvironment(address) as env:
            tasks = await env.seed_tasks(args.split)
            tasks = tasks[: args.limit] if args.limit else tasks
            with Progress(console=console) as progress:
                bar = progress.add_task(f"eval {args.env}/{args.split} k={args.k}", total=len(tasks))
                return await evaluate(env, agents[args.agent], tasks, k=args.k, temperature=args.temperature,
                                      out_jsonl=out, on_task=lambda r: progress.advance(bar))
    s = asyncio.run(go())
    console.print(f"{s.tasks} tasks, k={s.k}, temperature={s.temperature}: avg@{s.k} = {s.avg_at_k:.3f}, "
                  f"best@{s.k} = {s.best_at_k:.3f} (bootstrap), pass@{s.k} = {s.pass_at_k:.3f}; per-task results in {out}")
    return 0


def cmd_models_prepare(args) -> int:
    from evolver.models import prepare
    cache = Path(args.cache) if args.cache else None
    with console.status("preparing SmolLM2-135M-Instruct...") as status:
        out = prepare.prepare(cache, force=args.force, on_progress=lambda m: (console.print(f"  {m}"), status.update(m)))
    console.print(f"model ready in {out}")
    return 0


def cmd_bus_apply(args) -> int:
    """Creates or updates every stream, consumer and bucket (the k8s bootstrap Job runs this)."""
    from evolver.bus import Bus
    settings = load_settings()

    async def go():
        bus = await Bus.connect(settings, name="evolver-bootstrap")
        try:
            await bus.ensure_topology()
        finally:
            await bus.close()
    asyncio.run(go())
    console.print(f"topology applied to {settings.nats.url}: {len(topology.STREAMS)} streams, "
                  f"{len(topology.CONSUMERS)} consumers, {len(topology.KV_BUCKETS)} KV buckets")
    return 0


def _nats_settings(args):
    if args.nats_url:
        return load_settings(environ={**os.environ, "EVOLVER_NATS__URL": args.nats_url})
    if os.environ.get("EVOLVER_NATS__URL") or os.environ.get("EVOLVER_CONFIG"):
        return load_settings()
    return load_settings(environ={**os.environ, "EVOLVER_NATS__URL": _running_state(args).nats_url})


def cmd_events_tail(args) -> int:
    from evolver.bus import Bus
    from evolver.observe import tail
    settings = _nats_settings(args)

    async def go():
        bus = await Bus.connect(settings, name="evolver-tail")
        try:
            return await tail(bus, args.filter, as_json=args.json, max_messages=args.max,
                              deliver_new_only=not args.all, emit=lambda line: print(line, flush=True))
        finally:
            await bus.close()
    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_trace(args) -> int:
    from evolver.observe import find_traces, load_spans, render_tree
    path = Path(args.spans) if args.spans else Path(_state_dir(args)) / "traces" / "spans.jsonl"
    spans = load_spans(path)
    traces = find_traces(spans, args.key)
    if not traces:
        console.print(f"[red]no trace matches {args.key!r}[/] in {path} ({len(spans)} spans)")
        return 1
    for t in traces:
        console.print(f"trace {t}")
        for line in render_tree(spans, t):
            console.print("  " + line, highlight=False, markup=False)
    return 0


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
    events = sub.add_parser("events", help="event streams").add_subparsers(dest="events_command", required=True)
    et = events.add_parser("tail", help="print events as they flow, one line each")
    et.add_argument("filter", nargs="?", default=">", help="subject filter, e.g. 'rollout.>' (default: everything)")
    et.add_argument("--json", action="store_true", help="one JSON object per event")
    et.add_argument("--all", action="store_true", help="replay stored events first")
    et.add_argument("--max", type=int, default=0, help="stop after N events")
    et.add_argument("--nats-url", help="default: the embedded stack's, or EVOLVER_NATS__URL / EVOLVER_CONFIG")
    et.set_defaults(func=cmd_events_tail)
    tr = sub.add_parser("trace", help="the span tree of a trace (by trace id, rollout id, message id...)")
    tr.add_argument("key")
    tr.add_argument("--spans", help="spans JSONL (default: the embedded stack's)")
    tr.set_defaults(func=cmd_trace)
    bus = sub.add_parser("bus", help="the event bus").add_subparsers(dest="bus_command", required=True)
    bus.add_parser("apply", help="create/update streams, consumers and buckets (idempotent)").set_defaults(func=cmd_bus_apply)
    env = sub.add_parser("env", help="environments").add_subparsers(dest="env_command", required=True)
    add = env.add_parser("add", help="register a server speaking the Environment protocol")
    add.add_argument("address", help="HOST:PORT")
    add.add_argument("--id", help="environment id (default: derived from the address)")
    add.add_argument("--name", help="display name")
    add.add_argument("--task-gen", help="task_gen address (default: the running embedded stack's)")
    add.set_defaults(func=cmd_env_add)
    ls = env.add_parser("list", help="registered environments")
    ls.add_argument("--task-gen", help="task_gen address (default: the running embedded stack's)")
    ls.set_defaults(func=cmd_env_list)
    models = sub.add_parser("models", help="policy models").add_subparsers(dest="models_command", required=True)
    mp = models.add_parser("prepare", help="convert SmolLM2-135M-Instruct (GGUF) to safetensors, once")
    mp.add_argument("--cache", help="cache folder (default $EVOLVER_MODEL_CACHE or ~/.cache/evolver/models)")
    mp.add_argument("--force", action="store_true")
    mp.set_defaults(func=cmd_models_prepare)
    ev = sub.add_parser("eval", help="k attempts per seed task: avg@k and best@k")
    ev.add_argument("--env", default="bfcl")
    ev.add_argument("--env-address", help="HOST:PORT (default: the embedded stack's env-<env>)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--k", type=int, default=1)
    ev.add_argument("--temperature", type=float, default=0.0)
    ev.add_argument("--agent", default="reference", help="policy | reference | reference-perturbed")
    ev.add_argument("--model-dir", help="policy agent: a prepared model folder (default: `models prepare` cache)")
    ev.add_argument("--max-steps", type=int, default=12, help="policy agent: assistant turns per episode")
    ev.add_argument("--limit", type=int, default=0, help="first N tasks only")
    ev.add_argument("--out", default="runs/eval.jsonl")
    ev.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> None:
    from evolver.stack import StackError
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except (StackError, ConfigError, FileNotFoundError, EvolverError) as e:
        console.print(f"[red]error:[/] {e}")
        rc = 1
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc)


if __name__ == "__main__":
    main()
