"""`evolver run`: the main job. Brings the embedded stack up when none is running, starts a run
on the trainer, follows it with a progress bar per phase, and writes the run folder (metrics
JSONL, run record, event summary, report with plots)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import grpc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from evolver.cli._common import _state_dir, console
from services.trainer.progress import phase_name
from services.trainer.run_config import RunConfigError, RunSpec, parse_run_spec, to_run_config
from services.trainer.warm_start_record import unpack, warm_start_key
from evolver.v1 import run_pb2
from evolver.v1 import trainer_service_pb2 as pb
from evolver.v1 import trainer_service_pb2_grpc as pb_grpc

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def load_spec(path: str | None, overrides: dict) -> RunSpec:
    text = Path(path).read_text() if path else (DEFAULT_CONFIG.read_text() if DEFAULT_CONFIG.exists() else "")
    spec = parse_run_spec(text)
    data = spec.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return RunSpec.model_validate(data)


def _model_dir(spec: RunSpec) -> str:
    from evolver.models.prepare import resolve_model_dir
    with console.status("preparing SmolLM2-135M-Instruct (once)...") as status:
        return str(resolve_model_dir(spec.model, os.environ.get("EVOLVER_POLICY__MODEL_DIR", ""),
                                     on_progress=status.update).resolve())


class RunWatcher:
    """Rich progress: one bar per phase, fed by run.progress events."""

    PHASES = {"questioning": "self-questioning: explorations", "eval": "evaluation groups",
              "rollout": "rollout groups", "trained": "training steps"}

    def __init__(self, progress: Progress, spec: RunSpec):
        self.p, self.spec = progress, spec
        self.bars: dict[str, int] = {}

    def bar(self, key: str, total: float | None) -> int:
        if key not in self.bars:
            self.bars[key] = self.p.add_task(self.PHASES[key], total=total)
        return self.bars[key]

    def on(self, ev) -> None:
        m, phase = ev.metrics, phase_name(ev.phase)
        if phase == "questioning" and "explorations" in m:
            self.p.update(self.bar("questioning", m["explorations"]), total=m["explorations"],
                          completed=m["explorations_done"],
                          description=f"self-questioning: explorations ({int(m.get('pool', 0))} train, "
                                      f"{int(m.get('heldout', 0))} held-out tasks)")
        elif phase in ("eval", "rollout") and "groups_total" in m:
            b = self.bar(phase, m["groups_total"])
            self.p.update(b, total=m["groups_total"], completed=m["groups_done"],
                          description=f"{self.PHASES[phase]} (step {ev.train_step})")
        elif phase == "trained":
            total = m.get("steps_planned", self.spec.steps)  # fewer when the time budget says so
            self.p.update(self.bar("trained", total), total=total, completed=ev.train_step,
                          description=f"training steps (reward {m.get('reward_mean', 0):.2f}, "
                                      f"v{int(m.get('policy_version', 0))})")
        elif phase == "evaluated":
            parts = [f"{k.removeprefix('eval_')}={v:.2f}" for k, v in sorted(m.items()) if "avg_at_k" in k or "best_at_k" in k]
            self.p.console.print(f"  evaluation at step {ev.train_step}: " + (", ".join(parts) or "no held-out tasks"))


async def follow(trainer_address, run_id: str, watcher: RunWatcher, metrics_file) -> None:
    """WatchRun until a terminal phase; reconnects (skipping what it saw) if the trainer
    restarts, since the stream replays from the start."""
    from evolver.rpc import channel, stub
    seen = 0
    while True:
        try:
            async with channel(trainer_address()) as ch:
                trainer = stub(pb_grpc.TrainerServiceStub, ch, 24 * 3600.0)
                i = 0
                async for r in trainer.WatchRun(pb.WatchRunRequest(run_id=run_id)):
                    i += 1
                    if i <= seen:
                        continue
                    seen = i
                    ev = r.progress
                    metrics_file.write(json.dumps({"run_id": ev.run_id, "train_step": ev.train_step, "phase": phase_name(ev.phase),
                                                   "at": ev.at.ToJsonString(), "metrics": dict(ev.metrics)}) + "\n")
                    metrics_file.flush()
                    watcher.on(ev)
                return
        except grpc.aio.AioRpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise
            await asyncio.sleep(1.0)


async def record_progress(trainer_address, run_id: str, watcher, run_dir: Path) -> None:
    """Follows the run into run_dir/metrics.jsonl, written afresh: WatchRun replays the run's
    progress from its start (a resumed run's too), and appending mixed an earlier run of the
    same id into this one's figures."""
    with open(run_dir / "metrics.jsonl", "w") as metrics_file:
        await follow(trainer_address, run_id, watcher, metrics_file)


async def _run(args, spec: RunSpec, state, run_dir: Path, stack, warm_start: bytes | None = None) -> int:
    from evolver.bus import Bus, topology
    from evolver.config import load_settings
    from evolver.cli.report import read_jsonl, write_report
    from evolver.rpc import channel, stub
    from evolver.cli.run_events import read_run_events

    started = time.time()
    run_id = args.run_id  # cmd_run names the run (and its folder) before we get here
    config = to_run_config(spec)
    (run_dir / "config.yaml").write_text(config.config_yaml)
    if warm_start is not None:  # on the stack's bus, where the trainer looks for it by name
        bus = await Bus.connect(load_settings(environ={**os.environ, "EVOLVER_NATS__URL": state.nats_url}),
                                name="evolver-run")
        try:
            await bus.put_blob(topology.CHECKPOINTS_BUCKET, warm_start_key(spec.bootstrapping.warm_start_from), warm_start)
        finally:
            await bus.close()
    async with channel(state.address_of("trainer")) as ch:
        r = await stub(pb_grpc.TrainerServiceStub, ch, 30.0).StartRun(pb.StartRunRequest(run_id=run_id, config=config))
    budget = f" (at most: time budget {spec.time_budget_minutes:g} min)" if spec.time_budget_minutes else ""
    console.print(f"run [bold]{r.run.run_id}[/] started: {spec.steps} steps{budget} x {spec.tasks_per_step} tasks x "
                  f"{spec.group_size} rollouts on {spec.env_id}; mechanisms " +
                  ", ".join(f"{k}={'on' if v else 'off'}" for k, v in spec.mechanisms.model_dump().items()))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        await record_progress(lambda: stack.read_state().address_of("trainer"), run_id, RunWatcher(progress, spec), run_dir)
    async with channel(stack.read_state().address_of("trainer")) as ch:
        run = (await stub(pb_grpc.TrainerServiceStub, ch, 30.0).GetRun(pb.GetRunRequest(run_id=run_id))).run
    record = {"run_id": run.run_id, "state": run_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_"),
              "train_step": run.train_step, "policy_version": run.policy_version, "message": run.message,
              "wall_s": round(time.time() - started, 1)}
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    bus = await Bus.connect(load_settings(environ={**os.environ, "EVOLVER_NATS__URL": state.nats_url}), name="evolver-run")
    try:
        events = await read_run_events(bus, run_id, since_s=started - 5)
        kept = await bus.get_blob(topology.CHECKPOINTS_BUCKET, warm_start_key(run_id))
        if kept is not None:  # `evolver run --warm-start` takes it: RL from here, without fine-tuning again
            (run_dir / "warm_start.bin").write_bytes(kept)
    finally:
        await bus.close()
    summary = events.summary()
    summary.update(query_diversity([t.query for a in events.accepted for t in a.tasks]))
    (run_dir / "events_summary.json").write_text(json.dumps(summary, indent=2))
    report = write_report(run_dir, record, read_jsonl(run_dir / "metrics.jsonl"), summary)
    table = Table(title=f"run {run_id}: {record['state']} in {record['wall_s']:.0f}s")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("training steps / policy version", f"{run.train_step} of {spec.steps} / {run.policy_version}")
    if spec.time_budget_minutes:
        table.add_row("time budget", f"{spec.time_budget_minutes:g} min" +
                      (f": {run.train_step} of {spec.steps} RL steps fitted" if run.train_step < spec.steps else ""))
    for k, v in summary.items():
        table.add_row(k.replace("_", " "), f"{v:g}")
    progress_events = read_jsonl(run_dir / "metrics.jsonl")
    evals = [p for p in progress_events if p["phase"] == "evaluated"]
    if evals:
        from evolver.algorithms.stats import base_evaluation, evaluation_points
        before = base_evaluation([p["metrics"] for p in evals]) if len(evals) > 1 else None
        for key in sorted(evals[-1]["metrics"]):
            if "avg_at_k" in key or "best_at_k" in key:
                if before is None:  # eval.before_training off: the run has no before
                    table.add_row(f"{key.removeprefix('eval_')} (after)", f"{evals[-1]['metrics'][key]:.3f}")
                else:
                    table.add_row(f"{key.removeprefix('eval_')} (before -> after)",
                                  f"{before.get(key, 0):.3f} -> {evals[-1]['metrics'][key]:.3f}")
        for a, b, deltas in evaluation_points([p["metrics"] for p in evals]):
            for label, d in deltas.items():
                table.add_row(f"held-out {label} avg@k, {a} -> {b} (95% CI, {d.tasks} tasks)",
                              f"{d.delta:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
    console.print(table)
    console.print(f"run folder: {run_dir} (report: {report})")
    if run.state != run_pb2.RUN_STATE_SUCCEEDED:
        console.print(f"[red]run {record['state']}: {run.message}[/]")
        return 1
    return 0


def query_diversity(queries: list[str]) -> dict[str, float]:
    """How varied the run's self-made task queries are (evolver.algorithms.diversity)."""
    distinct = sorted(set(queries))
    if len(distinct) < 2:
        return {}
    from evolver.algorithms.diversity import embedding_spread, trigram_ratio
    from evolver.memory.embeddings import MiniLMEmbedder
    return {"task_queries_distinct": float(len(distinct)), "task_query_distinct_3grams": trigram_ratio(distinct),
            "task_query_embedding_spread": embedding_spread(MiniLMEmbedder().embed(distinct))}


def with_warm_start(spec: RunSpec, path: Path) -> tuple[RunSpec, bytes]:
    """The spec set to start from the warm start in path (named by its content, so two files
    never share a name on the stack), and its bytes; ValueError saying why it cannot."""
    import hashlib
    if not spec.mechanisms.bootstrapping:
        raise ValueError("the run has mechanisms.bootstrapping off, so it has no warm start to replace")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {str(path)[:200]}: {e.strerror}") from None
    unpack(raw)  # a clear error now, not a failed run later
    data = spec.model_dump()
    data["bootstrapping"]["warm_start_from"] = "file-" + hashlib.sha256(raw).hexdigest()[:12]
    return RunSpec.model_validate(data), raw


def cmd_run(args) -> int:
    from evolver.stack import Stack
    try:
        spec = load_spec(args.config, {"steps": args.steps, "env_id": args.env, "seed": args.seed})
    except RunConfigError as e:
        console.print(f"[red]config error:[/] {e}")
        return 2
    warm_start = None
    if args.warm_start:
        try:
            spec, warm_start = with_warm_start(spec, Path(args.warm_start))
        except ValueError as e:
            console.print(f"[red]--warm-start:[/] {e}")
            return 2
    stack = Stack(_state_dir(args))
    state = stack.running()
    started_stack = False
    if state is None:
        os.environ["EVOLVER_POLICY__MODEL_DIR"] = _model_dir(spec)  # explorers and trainer load the same policy
        with console.status("starting the embedded stack...") as status:
            state = stack.up(replicas=spec.replicas,
                             on_progress=lambda m: (console.print(f"  [green]✓[/] {m}"), status.update(m)))
        started_stack = True
    args.run_id = args.run_id or time.strftime("run-%Y%m%d-%H%M%S")
    run_dir = Path(args.out) / args.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_run(args, spec, state, run_dir, stack, warm_start))
    finally:
        if started_stack and not args.keep_stack:
            with console.status("stopping the embedded stack..."):
                stack.down()
