"""TrainerService.WatchRun streams a run's run.progress events to gRPC clients."""

import asyncio

import grpc
import pytest

from types import SimpleNamespace

from evolver.bus import Bus
from evolver.rpc import GrpcServer, Registration, channel, stub
from evolver.v1 import events_pb2 as ev
from services.trainer.progress import phase_name
from evolver.v1 import trainer_service_pb2 as pb
from evolver.v1 import trainer_service_pb2_grpc as pb_grpc
from evolver.bus import topology
from evolver.v1 import run_pb2
from services.trainer.runs import Runs
from services.trainer.servicer import TrainerServicer
from tests.integration._helpers import no_updates

pytestmark = pytest.mark.integration


async def runs_with(bus: Bus, *run_ids: str) -> Runs:
    runs = Runs(SimpleNamespace(bus=bus), no_updates)
    kv = await bus.kv(topology.RUNS_BUCKET)
    for run_id in run_ids:
        await kv.put(run_id, run_pb2.Run(run_id=run_id, state=run_pb2.RUN_STATE_RUNNING).SerializeToString())
    return runs


async def test_watch_run_replays_then_follows_until_the_run_ends(bus: Bus):
    servicer = TrainerServicer(await runs_with(bus, "r1", "never-ends"))
    server = GrpcServer([Registration("evolver.v1.TrainerService", servicer, pb_grpc.add_TrainerServiceServicer_to_server)])
    await server.start()
    try:
        await bus.publish("run.progress", ev.RunProgress(run_id="r1", train_step=1, phase=ev.RUN_PHASE_ROLLOUT,
                                                         metrics={"reward": 0.25}), key="r1:1")
        await bus.publish("run.progress", ev.RunProgress(run_id="other", train_step=1, phase=ev.RUN_PHASE_ROLLOUT), key="o:1")
        async with channel(server.address) as ch:
            trainer = stub(pb_grpc.TrainerServiceStub, ch, 20)
            seen = []

            async def watch():
                async for r in trainer.WatchRun(pb.WatchRunRequest(run_id="r1")):
                    seen.append((r.progress.train_step, phase_name(r.progress.phase), dict(r.progress.metrics)))

            task = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            await bus.publish("run.progress", ev.RunProgress(run_id="r1", train_step=2, phase=ev.RUN_PHASE_UPDATE), key="r1:2")
            await bus.publish("run.progress", ev.RunProgress(run_id="r1", train_step=2, phase=ev.RUN_PHASE_FINISHED), key="r1:3")
            await asyncio.wait_for(task, 10)
            assert seen == [(1, "rollout", {"reward": 0.25}), (2, "update", {}), (2, "finished", {})]

            with pytest.raises(grpc.aio.AioRpcError) as bad:
                async for _ in trainer.WatchRun(pb.WatchRunRequest()):
                    pass
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as unknown:  # NOT_FOUND, not a watch that never ends
                async for _ in trainer.WatchRun(pb.WatchRunRequest(run_id="no-such-run")):
                    pass
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

            call = trainer.WatchRun(pb.WatchRunRequest(run_id="never-ends"))
            await asyncio.sleep(0.3)
            call.cancel()  # the server's generator cleans up its subscription
            with pytest.raises(asyncio.CancelledError):
                async for _ in call:
                    pass
    finally:
        await server.stop(0)


async def test_an_undecodable_progress_message_is_skipped_by_every_watcher(bus: Bus):
    servicer = TrainerServicer(await runs_with(bus, "r2"))
    server = GrpcServer([Registration("evolver.v1.TrainerService", servicer, pb_grpc.add_TrainerServiceServicer_to_server)])
    await server.start()
    try:
        await bus.publish("run.progress", ev.RunProgress(run_id="r2", train_step=0, phase=ev.RUN_PHASE_STARTING), key="r2:0")
        await bus.js.publish("run.progress", b"\xff\xfe not protobuf", headers={"Nats-Msg-Id": "bad-progress"})
        await bus.publish("run.progress", ev.RunProgress(run_id="r2", train_step=1, phase=ev.RUN_PHASE_FINISHED), key="r2:1")
        async with channel(server.address) as ch:
            trainer = stub(pb_grpc.TrainerServiceStub, ch, 20)
            for _ in range(2):  # every later watch too, not only the first
                phases = [phase_name(r.progress.phase) async for r in trainer.WatchRun(pb.WatchRunRequest(run_id="r2"))]
                assert phases == ["starting", "finished"]
    finally:
        await server.stop(0)


async def test_a_run_records_only_its_own_progress_when_its_folder_held_an_earlier_run(bus: Bus, tmp_path):
    # The learning bench runs twice into one folder with one run id; metrics.jsonl was appended
    # to, so the second run's figures read the first run's evaluations too.
    import json
    from evolver.cli._run import record_progress

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"run_id": "again", "train_step": 3, "phase": "evaluated",
                                                         "metrics": {"eval_synthetic_avg_at_k": 0.9}}) + "\n")
    servicer = TrainerServicer(await runs_with(bus, "again"))
    server = GrpcServer([Registration("evolver.v1.TrainerService", servicer, pb_grpc.add_TrainerServiceServicer_to_server)])
    await server.start()
    try:
        await bus.publish("run.progress", ev.RunProgress(run_id="again", train_step=0, phase=ev.RUN_PHASE_STARTING), key="a:0")
        await bus.publish("run.progress", ev.RunProgress(run_id="again", train_step=0, phase=ev.RUN_PHASE_EVALUATED,
                                                         metrics={"eval_synthetic_avg_at_k": 0.25}), key="a:1")
        await bus.publish("run.progress", ev.RunProgress(run_id="again", train_step=0, phase=ev.RUN_PHASE_FINISHED), key="a:2")
        watched = []
        await asyncio.wait_for(record_progress(lambda: server.address, "again",
                                               SimpleNamespace(on=lambda e: watched.append(phase_name(e.phase))),
                                               tmp_path), 20)
        lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert [x["phase"] for x in lines] == watched == ["starting", "evaluated", "finished"]
        assert [x["metrics"] for x in lines if x["phase"] == "evaluated"] == [{"eval_synthetic_avg_at_k": 0.25}]
    finally:
        await server.stop(0)
