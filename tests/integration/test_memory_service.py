"""The memory service over real NATS: rollout.completed -> experiences in embedded Qdrant ->
experience.stored, and Retrieve over gRPC by task query."""

from __future__ import annotations

import asyncio
import json

import pytest

from evolver.bus import Bus
from evolver.rpc import channel, stub
from evolver.service import ServiceRunner
from evolver.v1 import events_pb2 as ev
from evolver.v1 import memory_service_pb2 as pb
from evolver.v1 import memory_service_pb2_grpc as pb_grpc
from evolver.v1 import task_pb2, trajectory_pb2 as tr
from services.memory.app import build
from tests.integration._helpers import collect, service_settings, wait_until

pytestmark = pytest.mark.integration


def group(group_id: str, query: str, evaluation: bool = False) -> ev.RolloutCompleted:
    def step(name, args, content, ok):
        return tr.Step(tool_calls=[tr.ToolCall(call_id="c", name=name, arguments_json=json.dumps(args))],
                       observations=[tr.Observation(call_id="c", content=content, kind=(
                           tr.OBSERVATION_KIND_RESULT if ok else tr.OBSERVATION_KIND_TOOL_ERROR))])
    good = tr.Trajectory(trajectory_id="t0", reward=tr.Reward(score=1.0, success=True), steps=[
        step("mv", {"source": "r.pdf", "destination": "temp"}, '{"error": "mv: no such directory temp"}', False),
        step("mkdir", {"dir_name": "temp"}, "None", True),
        step("mv", {"source": "r.pdf", "destination": "temp"}, "None", True)])
    broken = tr.Trajectory(trajectory_id="t1", infra_failure=tr.InfraFailure(reason="env UNAVAILABLE"), steps=[
        step("rm", {"file_name": "x"}, "None", True)])
    return ev.RolloutCompleted(group=tr.RolloutGroup(group_id=group_id, trajectories=[good, broken]),
                               evaluation=evaluation,
                               task=task_pb2.Task(task_id="syn-1", env_id="bfcl", query=query))


async def test_memory_stores_training_experiences_and_retrieves_by_task_query(nats_url, bus: Bus, tmp_path):
    runner = ServiceRunner("memory", build, service_settings(nats_url, tmp_path))
    task = asyncio.create_task(runner.run())
    stored, sub = await collect(bus, "experience.stored")
    try:
        await wait_until(lambda: runner.server, timeout=5)
        await bus.publish("rollout.completed", group("g-eval", "Move r.pdf into temp", evaluation=True), key="g-eval")
        await bus.publish("rollout.completed", group("g1", "Move r.pdf into the temp folder"), key="g1")
        await bus.publish("rollout.completed", group("g2", "Move r.pdf into the temp folder"), key="g2")  # same lessons
        await wait_until(lambda: stored, timeout=30)
        await asyncio.sleep(1.0)
        assert [s.source_group_id for s in stored] == ["g1"]  # eval group: nothing; g2: deduplicated
        kinds = sorted(e.kind for e in stored[0].experiences)
        assert len(kinds) == 2 and "rm(" not in json.dumps([e.content for e in stored[0].experiences])
        async with channel(runner.server.address) as ch:
            memory = stub(pb_grpc.MemoryServiceStub, ch, 30)
            hits = await memory.Retrieve(pb.RetrieveRequest(query="how do I move a pdf into a folder that does not exist",
                                                            k=2, env_id="bfcl"))
            stats = await memory.Stats(pb.StatsRequest())
        assert len(hits.experiences) == 2 and hits.experiences[0].similarity > 0.3
        assert any("mkdir" in h.experience.content for h in hits.experiences)
        assert (stats.experiences, stats.success_experiences, stats.failure_experiences) == (2, 1, 1)
        assert stats.groups_processed == 3
    finally:
        await sub.unsubscribe()
        runner.stop_requested.set()
        await asyncio.wait_for(task, 30)
