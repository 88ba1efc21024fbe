"""StopRun ends a run wherever it waits (it used to stay RUNNING while waiting for rollouts, with
no terminal event, and a trainer restart resumed it)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from evolver.bus import Bus, topology
from services.trainer.run_config import RunSpec, to_run_config
from evolver.v1 import run_pb2, task_pb2
from evolver.v1 import trainer_service_pb2 as pb
from services.trainer.progress import phase_name
from services.trainer.runs import Runs
from services.trainer.servicer import TrainerServicer
from tests.integration._helpers import collect, no_updates, wait_until

pytestmark = pytest.mark.integration


async def test_stop_run_ends_a_run_waiting_for_rollouts_and_it_is_not_resumed(bus: Bus):
    progress, sub = await collect(bus, "run.progress")
    ctx = SimpleNamespace(bus=bus, settings=None)
    runs = Runs(ctx, updater_factory=lambda spec: object())
    servicer = TrainerServicer(runs)
    spec = RunSpec.model_validate({"steps": 2, "tasks_per_step": 1, "group_size": 2,
                                   "mechanisms": {"questioning": False, "navigating": False, "attributing": False}})
    run = run_pb2.Run(run_id="stop-me", config=to_run_config(spec), state=run_pb2.RUN_STATE_PENDING)
    await (await runs.kv()).put(run.run_id, run.SerializeToString())
    runs.launch(run)
    loop = runs.loops["stop-me"]
    task = task_pb2.Task(task_id="t1", env_id="bfcl", source=task_pb2.TASK_SOURCE_SEED)

    async def no_eval(step, version, ckpt):
        return {}

    async def one_task(step):
        return [task]
    loop.evaluate, loop.sample_train_tasks = no_eval, one_task  # no other service runs here
    try:
        # The loop requests its groups, then waits for them (no explorer answers).
        assert await wait_until(lambda: any(phase_name(p.phase) == "rollout" for p in progress), 20)
        await asyncio.sleep(1.0)
        assert (await runs.get("stop-me")).state == run_pb2.RUN_STATE_RUNNING
        await servicer.StopRun(pb.StopRunRequest(run_id="stop-me"), None)
        assert await wait_until(lambda: runs.tasks["stop-me"].done(), 10)
        record = await runs.get("stop-me")
        assert record.state == run_pb2.RUN_STATE_STOPPED and record.stop_requested
        assert await wait_until(lambda: any(phase_name(p.phase) == "stopped" and p.run_id == "stop-me" for p in progress), 5)
        # A restarted trainer does not resume it.
        fresh = Runs(ctx, updater_factory=lambda spec: object())
        await fresh.resume_all()
        assert "stop-me" not in fresh.tasks
    finally:
        await sub.unsubscribe()
        for t in runs.tasks.values():
            t.cancel()


async def test_stop_run_of_a_run_no_loop_holds_ends_it_at_once(bus: Bus):
    runs = Runs(SimpleNamespace(bus=bus, settings=None), no_updates)
    servicer = TrainerServicer(runs)
    kv = await bus.kv(topology.RUNS_BUCKET)
    await kv.put("orphan", run_pb2.Run(run_id="orphan", state=run_pb2.RUN_STATE_RUNNING).SerializeToString())
    await servicer.StopRun(pb.StopRunRequest(run_id="orphan"), None)
    assert (await runs.get("orphan")).state == run_pb2.RUN_STATE_STOPPED
    await runs.resume_all()
    assert "orphan" not in runs.tasks


async def test_a_transient_failure_resumes_the_run_and_a_real_one_fails_it(bus: Bus):
    """A NATS timeout mid-run resumes the run from its checkpoint (as a trainer restart would);
    only a reason a person must act on fails it."""
    import nats.errors

    from evolver.errors import FailedPrecondition
    runs = Runs(SimpleNamespace(bus=bus, settings=None), updater_factory=lambda spec: object())
    spec = RunSpec.model_validate({"steps": 1, "mechanisms": {"questioning": False}})
    outcomes = {"blip": [nats.errors.TimeoutError(), None], "broken": [FailedPrecondition("checkpoint weights missing")]}
    for run_id, script in outcomes.items():
        run = run_pb2.Run(run_id=run_id, config=to_run_config(spec), state=run_pb2.RUN_STATE_PENDING)
        await (await runs.kv()).put(run_id, run.SerializeToString())
        runs.launch(run)
        loop = runs.loops[run_id]
        calls = []

        async def once(script=script, calls=calls, loop=loop):
            calls.append(1)
            outcome = script[len(calls) - 1]
            if outcome is not None:
                raise outcome
            await loop.save_run(run_pb2.RUN_STATE_SUCCEEDED, "done")
        loop._run_once = once
        await asyncio.wait_for(runs.tasks[run_id], 20)
        record = await runs.get(run_id)
        if run_id == "blip":
            assert len(calls) == 2 and record.state == run_pb2.RUN_STATE_SUCCEEDED
        else:
            assert len(calls) == 1 and record.state == run_pb2.RUN_STATE_FAILED
            assert "checkpoint weights missing" in record.message


async def test_checkpoints_live_in_their_own_bucket_and_old_ones_are_still_read(bus: Bus):
    import json

    from services.trainer.checkpoint import Checkpoint
    from services.trainer.run_loop import RunLoop
    spec = RunSpec.model_validate({"steps": 1})
    ctx = SimpleNamespace(bus=bus, settings=None)
    new = RunLoop(ctx, run_pb2.Run(run_id="new-run"), spec, None, None)
    await new.save_checkpoint(Checkpoint(step=1, version=1, consumed=["new-run.s0.t0"]), None)
    assert json.loads(await (await bus.kv(topology.RUN_CHECKPOINTS_BUCKET)).get("new-run"))["step"] == 1
    assert await (await bus.kv(topology.RUNS_BUCKET)).get("ckpt.new-run") is None  # runs holds runs only
    old = RunLoop(ctx, run_pb2.Run(run_id="old-run"), spec, None, None)
    await (await bus.kv(topology.RUNS_BUCKET)).put("ckpt.old-run", json.dumps({"step": 2, "version": 2}).encode())
    assert (await old.load_checkpoint()).step == 2
