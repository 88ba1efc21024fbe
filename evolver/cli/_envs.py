"""Environments: register, list, evaluate."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.table import Table

from evolver.cli._common import _running_state, console


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
        from evolver.agent.episode import policy_agent
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
