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


async def test_llm_experiences_are_extracted_validated_and_rewritten_with_fallbacks(nats_url, bus: Bus, tmp_path):
    """navigating.extractor llm and rewrite against ScriptedOpenAIServer (a FAKE OpenAI-compatible
    server): extraction per attempt kind, validation keeps valid ones scoring >= 0.5, an unusable
    extraction falls back to the rules, and Retrieve rewrites the hits into one block."""
    from evolver.config import load_settings
    from evolver.v1 import experience_pb2 as exp_pb
    from tests.fake_openai_server import Reply, ScriptedOpenAIServer

    def extract(body: dict) -> Reply:
        system = body["messages"][0]["content"]
        kind = "success" if "succeeded" in system else "failure" if "went wrong" in system else "comparative"
        return Reply(f'Sure: [{{"when_to_use": "moving a file into a folder ({kind})", '
                     f'"experience": "create the folder first, lesson {kind}"}}]')
    validate = Reply('[{"index": 1, "is_valid": true, "score": 0.9}, {"index": 2, "is_valid": false, "score": 0.9},'
                     ' {"index": 3, "is_valid": true, "score": 0.3}]')
    with ScriptedOpenAIServer() as fake:
        fake.add("experience_extractor", *[extract] * 3, *[Reply("no idea")] * 3)
        fake.add("experience_validator", validate)
        fake.add("experience_rewriter", Reply("<context>- Make the folder, then move the file.</context>"))
        settings = load_settings(environ={
            "EVOLVER_NATS__URL": nats_url, "EVOLVER_STATE_DIR": str(tmp_path), "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.3",
            "EVOLVER_LLM_ROLES__EXPERIENCE_EXTRACTOR__ENDPOINT": fake.url,
            "EVOLVER_LLM_ROLES__EXPERIENCE_EXTRACTOR__MODEL": "reme-7b"})
        runner = ServiceRunner("memory", build, settings)
        task = asyncio.create_task(runner.run())
        stored, sub = await collect(bus, "experience.stored")
        try:
            await wait_until(lambda: runner.server, timeout=5)
            mixed = group("g-llm", "Archive r.pdf into a new temp folder")
            failed = tr.Trajectory(trajectory_id="t2", reward=tr.Reward(score=0.0), steps=[
                tr.Step(tool_calls=[tr.ToolCall(call_id="c", name="rm", arguments_json="{}")],
                        observations=[tr.Observation(call_id="c", content="{\"error\": \"rm: missing\"}",
                                                     kind=tr.OBSERVATION_KIND_TOOL_ERROR)])])
            mixed.group.trajectories.append(failed)
            mixed.experience_extractor = exp_pb.EXPERIENCE_EXTRACTOR_KIND_LLM
            await bus.publish("rollout.completed", mixed, key="g-llm")
            assert await wait_until(lambda: stored, timeout=30)
            (s1,) = stored
            (kept,) = s1.experiences  # 3 extracted; #2 invalid, #3 scored 0.3
            assert kept.kind == exp_pb.EXPERIENCE_KIND_SUCCESS and kept.score == pytest.approx(0.9)
            assert kept.when_to_use == "moving a file into a folder (success)"
            assert kept.prompt_version == "experience_extractor/v1"
            (usage,) = s1.role_usage
            assert (usage.role, usage.calls, usage.parse_failures, usage.fallbacks) == ("experience_extractor", 4, 0, 0)
            assert usage.prompt_tokens > 0
            # every extraction reply unusable: the rules' experiences, counted
            broken = group("g-rules", "Tidy the reports into a temp folder please")
            broken.experience_extractor = exp_pb.EXPERIENCE_EXTRACTOR_KIND_LLM
            await bus.publish("rollout.completed", broken, key="g-rules")
            assert await wait_until(lambda: len(stored) == 2, timeout=30)
            assert {e.kind for e in stored[1].experiences} == {exp_pb.EXPERIENCE_KIND_SUCCESS, exp_pb.EXPERIENCE_KIND_FAILURE}
            assert (stored[1].role_usage[0].parse_failures, stored[1].role_usage[0].fallbacks) == (1, 1)
            async with channel(runner.server.address) as ch:
                memory = stub(pb_grpc.MemoryServiceStub, ch, 60)
                r = await memory.Retrieve(pb.RetrieveRequest(query="put a pdf into a folder", k=2, env_id="bfcl",
                                                             rewrite=True))
                plain = await memory.Retrieve(pb.RetrieveRequest(query="put a pdf into a folder", k=2, env_id="bfcl"))
            assert r.rewritten_context == "- Make the folder, then move the file." and len(r.experiences) == 2
            assert r.role_usage[0].calls == 1 and not plain.rewritten_context and not plain.role_usage
            rewrite_prompt = fake.calls("experience_rewriter")[0]["messages"][1]["content"]
            assert "put a pdf into a folder" in rewrite_prompt and "Memory 1: when to use:" in rewrite_prompt
        finally:
            await sub.unsubscribe()
            runner.stop_requested.set()
            await asyncio.wait_for(task, 30)
