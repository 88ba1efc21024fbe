"""Trainer: training runs over gRPC (StartRun, GetRun, StopRun, WatchRun) and the run loops.

Runs live in the `runs` KV bucket, so a restarted trainer finds every RUNNING run and resumes it
from its checkpoint. The trainer's consumer indexes each rollout.attributed event by group id
(stream sequence in the `rollout-index` bucket); run loops read their groups from there."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from evolver.bus import Bus, Delivery, topology
from evolver.envs.registry import environment_spec
from evolver.errors import FailedPrecondition, InvalidArgument, NotFound
from evolver.rpc import Registration
from evolver.run_config import RunConfigError, from_run_config
from evolver.service import ServiceContext, ServiceParts, endpoint
from evolver.v1 import events_pb2, run_pb2
from evolver.v1 import trainer_service_pb2 as pb
from evolver.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer.progress import is_terminal
from services.trainer.run_loop import RunLoop, default_updater_factory

log = logging.getLogger(__name__)
KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class Runs:
    """Run records and the loops running them in this process."""

    def __init__(self, ctx: ServiceContext | None, updater_factory=None):
        self.ctx = ctx
        self.loops: dict[str, RunLoop] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.updater_factory = updater_factory

    async def kv(self):
        return await self.ctx.bus.kv(topology.RUNS_BUCKET)

    async def get(self, run_id: str) -> run_pb2.Run | None:
        raw = await (await self.kv()).get(run_id)
        return run_pb2.Run.FromString(raw) if raw else None

    def launch(self, run: run_pb2.Run) -> None:
        spec = from_run_config(run.config)
        loop = RunLoop(self.ctx, run, spec, self.updater_factory, lambda name: endpoint(self.ctx, name))
        self.loops[run.run_id] = loop
        self.tasks[run.run_id] = asyncio.create_task(loop.run(), name=f"run-{run.run_id}")

    async def resume_all(self) -> None:
        kv = await self.kv()
        for key in await kv.keys():
            if key.startswith("ckpt."):  # checkpoints of runs from before the run-checkpoints bucket
                continue
            run = await self.get(key)
            if run and run.state in (run_pb2.RUN_STATE_RUNNING, run_pb2.RUN_STATE_PENDING) and key not in self.tasks:
                if run.stop_requested:  # stopped while no loop ran it: record the end, do not resume
                    await self.finish_stopped(run)
                    continue
                log.info("resuming run %s at step %d", key, run.train_step)
                self.launch(run)

    async def finish_stopped(self, run: run_pb2.Run) -> None:
        run.state, run.message = run_pb2.RUN_STATE_STOPPED, "stopped by request"
        run.updated_at.GetCurrentTime()
        await (await self.kv()).put(run.run_id, run.SerializeToString())
        ev = events_pb2.RunProgress(run_id=run.run_id, train_step=run.train_step, phase="stopped",
                                    metrics={"policy_version": float(run.policy_version)})
        ev.at.GetCurrentTime()
        await self.ctx.bus.publish("run.progress", ev, key=f"{run.run_id}.stopped.{run.train_step}")


def is_terminal_state(state: int) -> bool:
    return state in (run_pb2.RUN_STATE_SUCCEEDED, run_pb2.RUN_STATE_FAILED, run_pb2.RUN_STATE_STOPPED)


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    def __init__(self, bus: Bus | None = None, runs: Runs | None = None):
        self.bus = bus
        self.runs = runs

    async def StartRun(self, request: pb.StartRunRequest, context) -> pb.StartRunResponse:
        run_id = request.run_id or f"run-{uuid.uuid4().hex[:12]}"
        if not set(run_id) <= KEY_CHARS or len(run_id) > 64:
            raise InvalidArgument("run_id", "use at most 64 letters, digits, '-' or '_'")
        try:
            spec = from_run_config(request.config)
        except RunConfigError as e:
            raise InvalidArgument(f"config.{e.field}" if e.field != "config_yaml" else "config.config_yaml",
                                  e.message) from None
        existing = await self.runs.get(run_id)
        if existing is not None:  # idempotent: the same id returns the same run
            return pb.StartRunResponse(run=existing)
        try:
            await environment_spec(await self.bus.kv(topology.ENVIRONMENTS_BUCKET), spec.env_id)
        except NotFound as e:
            raise FailedPrecondition(str(e)) from None
        run = run_pb2.Run(run_id=run_id, config=request.config, state=run_pb2.RUN_STATE_PENDING)
        run.created_at.GetCurrentTime()
        run.updated_at.GetCurrentTime()
        await (await self.runs.kv()).put(run_id, run.SerializeToString())
        self.runs.launch(run)
        return pb.StartRunResponse(run=run)

    async def _existing(self, run_id: str) -> run_pb2.Run:
        if not run_id:
            raise InvalidArgument("run_id", "must be non-empty")
        run = await self.runs.get(run_id) if self.runs else None
        if run is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return run

    async def GetRun(self, request: pb.GetRunRequest, context) -> pb.GetRunResponse:
        return pb.GetRunResponse(run=await self._existing(request.run_id))

    async def StopRun(self, request: pb.StopRunRequest, context) -> pb.StopRunResponse:
        run = await self._existing(request.run_id)
        if is_terminal_state(run.state):
            return pb.StopRunResponse(run=run)
        run.stop_requested = True  # recorded first: a trainer restart must not resume it
        await (await self.runs.kv()).put(run.run_id, run.SerializeToString())
        loop = self.runs.loops.get(request.run_id)
        task = self.runs.tasks.get(request.run_id)
        if loop is not None and task is not None and not task.done():
            loop.run_pb.stop_requested = True
            loop.stop_requested = True  # the loop unwinds at its next wait or step boundary
        else:  # no loop runs it here (never launched, or its loop is gone): end it now
            await self.runs.finish_stopped(run)
        return pb.StopRunResponse(run=run)

    async def WatchRun(self, request: pb.WatchRunRequest, context):
        """Replays the run's progress from the start, then follows it live, until a terminal
        phase or the client cancels. An ordered ephemeral consumer: watching takes nothing from
        anyone else. A message that cannot be decoded is skipped (it is someone else's poison,
        not this watcher's end)."""
        await self._existing(request.run_id)  # NOT_FOUND rather than waiting forever
        queue: asyncio.Queue = asyncio.Queue()
        sub = await self.bus.subscribe("run.progress", queue.put, stream=topology.EVENTS, from_start=True)
        try:
            while True:
                event = await queue.get()
                if event.message is None:
                    log.warning("WatchRun: skipping an undecodable run.progress message (%s)", event.error[:200])
                    continue
                progress = event.message
                if progress.run_id != request.run_id:
                    continue
                yield pb.WatchRunResponse(progress=progress)
                if is_terminal(progress.phase):
                    return
        finally:  # also on client cancellation
            await sub.close()


async def build(ctx: ServiceContext) -> ServiceParts:
    runs = Runs(ctx, default_updater_factory(ctx.settings))
    index = await ctx.bus.kv(topology.ROLLOUT_INDEX_BUCKET)

    async def on_attributed(d: Delivery) -> None:
        trace_headers = {k: v for k, v in d.headers.items() if k.lower() in ("traceparent", "tracestate")}
        await index.put(d.message.group.group_id,  # type: ignore[attr-defined]
                        json.dumps({"seq": d.stream_seq, "trace": trace_headers}).encode())

    async def resume(stop: asyncio.Event) -> None:
        await runs.resume_all()
        await stop.wait()
        for t in runs.tasks.values():
            t.cancel()

    return ServiceParts([Registration("evolver.v1.TrainerService", TrainerServicer(ctx.bus, runs),
                                      pb_grpc.add_TrainerServiceServicer_to_server)],
                        handlers={"trainer-rollout-attributed": on_attributed}, background=[resume])
