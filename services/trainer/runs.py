"""The trainer's domain: training runs (start, stop, look up, watch) and the run loops running
them in this process.

Runs live in the `runs` KV bucket, so a restarted trainer finds every RUNNING run and resumes it
from its checkpoint (`run-checkpoints`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

from evolver.bus import topology
from evolver.envs.registry import environment_spec
from evolver.errors import FailedPrecondition, InvalidArgument, NotFound
from evolver.service import ServiceContext, endpoint
from evolver.v1 import events_pb2, run_pb2
from services.trainer.progress import is_terminal
from services.trainer.run_config import RunConfigError, from_run_config
from services.trainer.collection import GroupArrivals
from services.trainer.run_loop import RunLoop

log = logging.getLogger(__name__)
KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def is_terminal_state(state: int) -> bool:
    return state in (run_pb2.RUN_STATE_SUCCEEDED, run_pb2.RUN_STATE_FAILED, run_pb2.RUN_STATE_STOPPED)


class Runs:
    """Run records and the loops running them in this process."""

    def __init__(self, ctx: ServiceContext, updater_factory, arrivals: GroupArrivals | None = None):
        """arrivals: the waiters the trainer's rollout.attributed consumer wakes (app.py)."""
        self.ctx = ctx
        self.arrivals = arrivals or GroupArrivals()
        self.loops: dict[str, RunLoop] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.updater_factory = updater_factory

    async def kv(self):
        return await self.ctx.bus.kv(topology.RUNS_BUCKET)

    async def get(self, run_id: str) -> run_pb2.Run | None:
        raw = await (await self.kv()).get(run_id)
        return run_pb2.Run.FromString(raw) if raw else None

    async def existing(self, run_id: str) -> run_pb2.Run:
        if not run_id:
            raise InvalidArgument("run_id", "must be non-empty")
        run = await self.get(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return run

    def launch(self, run: run_pb2.Run) -> None:
        spec = from_run_config(run.config)
        loop = RunLoop(self.ctx, run, spec, self.updater_factory, lambda name: endpoint(self.ctx, name), self.arrivals)
        self.loops[run.run_id] = loop
        self.tasks[run.run_id] = asyncio.create_task(loop.run(), name=f"run-{run.run_id}")

    async def start(self, run_id: str, config: run_pb2.RunConfig) -> run_pb2.Run:
        """A new run (launched here), or the existing run of that id: starting is idempotent."""
        run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        if not set(run_id) <= KEY_CHARS or len(run_id) > 64:
            raise InvalidArgument("run_id", "use at most 64 letters, digits, '-' or '_'")
        try:
            spec = from_run_config(config)
        except RunConfigError as e:
            raise InvalidArgument(f"config.{e.field}" if e.field != "config_yaml" else "config.config_yaml",
                                  e.message) from None
        existing = await self.get(run_id)
        if existing is not None:
            return existing
        try:
            await environment_spec(await self.ctx.bus.kv(topology.ENVIRONMENTS_BUCKET), spec.env_id)
        except NotFound as e:
            raise FailedPrecondition(str(e)) from None
        run = run_pb2.Run(run_id=run_id, config=config, state=run_pb2.RUN_STATE_PENDING)
        run.created_at.GetCurrentTime()
        run.updated_at.GetCurrentTime()
        await (await self.kv()).put(run_id, run.SerializeToString())
        self.launch(run)
        return run

    async def stop(self, run_id: str) -> run_pb2.Run:
        run = await self.existing(run_id)
        if is_terminal_state(run.state):
            return run
        run.stop_requested = True  # recorded first: a trainer restart must not resume it
        await (await self.kv()).put(run.run_id, run.SerializeToString())
        loop, task = self.loops.get(run_id), self.tasks.get(run_id)
        if loop is not None and task is not None and not task.done():
            loop.run_pb.stop_requested = True
            loop.stop_requested = True  # the loop unwinds at its next wait or step boundary
        else:  # no loop runs it here (never launched, or its loop is gone): end it now
            await self.finish_stopped(run)
        return run

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
        ev = events_pb2.RunProgress(run_id=run.run_id, train_step=run.train_step, phase=events_pb2.RUN_PHASE_STOPPED,
                                    metrics={"policy_version": float(run.policy_version)})
        ev.at.GetCurrentTime()
        await self.ctx.bus.publish("run.progress", ev, key=f"{run.run_id}.stopped.{run.train_step}")

    async def watch(self, run_id: str) -> AsyncIterator[events_pb2.RunProgress]:
        """The run's progress from the start, then live, until a terminal phase or the caller
        stops iterating. An ordered ephemeral consumer: watching takes nothing from anyone else.
        A message that cannot be decoded is skipped (it is someone else's poison, not this
        watcher's end)."""
        await self.existing(run_id)  # NOT_FOUND rather than waiting forever
        queue: asyncio.Queue = asyncio.Queue()
        sub = await self.ctx.bus.subscribe("run.progress", queue.put, stream=topology.EVENTS, from_start=True)
        try:
            while True:
                event = await queue.get()
                if event.message is None:
                    log.warning("WatchRun: skipping an undecodable run.progress message (%s)", event.error[:200])
                    continue
                progress = event.message
                if progress.run_id != run_id:
                    continue
                yield progress
                if is_terminal(progress.phase):
                    return
        finally:  # also on client cancellation
            await sub.close()

    async def close(self) -> None:
        for t in self.tasks.values():
            t.cancel()
