"""The Environment protocol over real gRPC, with the BFCL environment behind it."""

from __future__ import annotations

import asyncio
import json
import random
import time

import grpc
import pytest

from evolver.envs.base import Call, StepOutcome, Tool
from evolver.envs.bfcl import BfclEnvironment, catalog, tasks
from evolver.envs.client import RemoteEnvironment
from evolver.envs.harness import evaluate, reference_agent
from evolver.envs.server import EnvironmentServicer
from evolver.rpc import GrpcServer, Registration, bad_request_fields
from evolver.v1 import environment_pb2 as pb
from evolver.v1 import environment_pb2_grpc as pb_grpc
from evolver.v1 import trajectory_pb2 as traj
from evolver.errors import EvolverError
from tests.integration._helpers import status_code

pytestmark = pytest.mark.integration


async def start(env, **kw):
    servicer = EnvironmentServicer(env, **kw)
    server = GrpcServer([Registration("evolver.v1.EnvironmentService", servicer,
                                      pb_grpc.add_EnvironmentServiceServicer_to_server)])
    await server.start()
    return server, servicer


@pytest.fixture
async def bfcl():
    server, servicer = await start(BfclEnvironment())
    async with RemoteEnvironment(server.address) as env:
        yield env
    await server.stop(0)
    await servicer.close()


def sample_args(schema: dict) -> dict:
    fill = {"string": "x", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    props = schema.get("properties", {})
    def first(t):  # a type union ["integer", "string"]: its first type
        return t[0] if isinstance(t, list) else t
    return {k: fill.get(first(props[k].get("type")), "x") for k in schema.get("required", [])}


async def test_every_tool_is_listed_and_callable_through_the_protocol(bfcl):
    tools, visible = await bfcl.tools()
    all_names = {t.name for c in catalog.CLASSES for t in catalog._docs(c)}
    assert visible and {t.name for t in tools} == all_names  # names shared by classes appear once
    by_class = {c: {t.name for t in catalog._docs(c)} for c in catalog.CLASSES}
    for cls, names in by_class.items():
        episode = await bfcl.create(initial_state={cls: {}}, toolsets=[cls])
        assert {t.name for t in episode.tools} == names
        for tool in episode.tools:
            json.dumps(tool.parameters)
            (result,) = (await episode.step([Call(tool.name, sample_args(tool.parameters), "c1")])).results
            # The method ran (its own answer or its own error), not rejected before it.
            assert not result.content.startswith(("Error: unknown tool", "Error: invalid arguments")), (tool.name, result)
        await episode.release()


async def test_instances_of_the_same_task_are_isolated_under_concurrency(bfcl):
    async def worker(tag: str) -> dict:
        ep = await bfcl.create(seed_task_id="multi_turn_base_0")
        for i in range(15):
            await ep.step([Call("touch", {"file_name": f"{tag}-{i}.txt"})])
            await asyncio.sleep(random.random() / 200)
        state, _ = await ep.state()
        await ep.release()
        return state

    a, b = await asyncio.gather(worker("a"), worker("b"))
    files_a = json.dumps(a["GorillaFileSystem"])
    files_b = json.dumps(b["GorillaFileSystem"])
    assert all(f"a-{i}.txt" in files_a and f"a-{i}.txt" not in files_b for i in range(15))
    assert all(f"b-{i}.txt" in files_b and f"b-{i}.txt" not in files_a for i in range(15))


async def test_injected_code_executes_nothing_and_malformed_calls_are_observations(bfcl, tmp_path):
    marker = tmp_path / "pwned"
    ep = await bfcl.create(seed_task_id="multi_turn_base_0")
    r = await ep.step_raw([
        traj.ToolCall(call_id="1", name="cd", arguments_json=json.dumps({"folder": f"__import__('os').system('touch {marker}')"})),
        traj.ToolCall(call_id="2", name="__import__", arguments_json=json.dumps({"name": "os"})),
        traj.ToolCall(call_id="3", name="ls", arguments_json="{not json"),
        traj.ToolCall(call_id="4", name="ls", arguments_json="[1, 2]"),
        traj.ToolCall(call_id="5", name="pwd", arguments_json="{}"),
    ])
    obs = {o.call_id: o for o in r.observations}
    assert [o.call_id for o in r.observations] == ["1", "2", "3", "4", "5"]
    assert all(obs[i].kind == traj.OBSERVATION_KIND_TOOL_ERROR for i in "1234")
    assert "unknown tool '__import__'" in obs["2"].content
    assert "not valid JSON" in obs["3"].content and "must be a JSON object" in obs["4"].content
    assert obs["5"].kind == traj.OBSERVATION_KIND_RESULT and "workspace" in obs["5"].content
    assert not marker.exists()


@pytest.mark.parametrize("task_id", ["multi_turn_base_0", "multi_turn_base_57", "multi_turn_base_103",
                                     "multi_turn_base_147", "multi_turn_base_199"])
async def test_ground_truth_scores_correct_and_a_perturbed_solution_incorrect(bfcl, task_id):
    seed = tasks.by_id()[task_id].seed
    good = await evaluate(bfcl, reference_agent(), [seed], k=1, temperature=0.0)
    bad = await evaluate(bfcl, reference_agent(drop_last_call=True), [seed], k=1, temperature=0.0)
    assert (good.avg_at_k, good.best_at_k) == (1.0, 1.0)
    assert (bad.avg_at_k, bad.best_at_k) == (0.0, 0.0)


async def test_harness_reports_avg_and_best_at_k_with_per_task_jsonl(bfcl, tmp_path):
    seeds = [tasks.by_id()[f"multi_turn_base_{i}"].seed for i in (100, 101, 102)]
    flaky_calls = {"n": 0}
    good, bad = reference_agent(), reference_agent(drop_last_call=True)

    async def alternating(episode, task, temperature, attempt):
        flaky_calls["n"] += 1
        await (good if attempt == 0 else bad)(episode, task, temperature, attempt)

    out = tmp_path / "eval.jsonl"
    s = await evaluate(bfcl, alternating, seeds, k=2, temperature=0.7, out_jsonl=out)
    assert flaky_calls["n"] == 6
    # best@2 is veRL's bootstrap: P(max of 2 draws from [1, 0] is 1) = 1 - 1/4 = 0.75.
    assert (s.avg_at_k, s.pass_at_k, s.temperature, s.tasks) == (0.5, 1.0, 0.7, 3)
    assert abs(s.best_at_k - 0.75) < 0.04
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["multi_turn_base_100", "multi_turn_base_101", "multi_turn_base_102"]
    assert all(r["successes"] == [True, False] and r["avg"] == 0.5 and r["pass"] == 1.0 for r in rows)


async def test_bad_requests_name_their_fields(bfcl):
    with pytest.raises(grpc.aio.AioRpcError) as e1:
        await bfcl.stub.Create(pb.CreateRequest())
    assert e1.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "source" in bad_request_fields(e1.value)
    with pytest.raises(grpc.aio.AioRpcError) as e2:
        await bfcl.stub.Create(pb.CreateRequest(initial_state_json="{nope"))
    assert "initial_state_json" in bad_request_fields(e2.value)
    with pytest.raises(grpc.aio.AioRpcError) as e3:
        await bfcl.stub.Create(pb.CreateRequest(seed_task_id="multi_turn_base_999"))
    assert e3.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as e4:
        await bfcl.stub.Step(pb.StepRequest(instance_id="missing"))
    assert e4.value.code() == grpc.StatusCode.NOT_FOUND
    ep = await bfcl.create(initial_state={"MathAPI": {}}, toolsets=["MathAPI"])
    with pytest.raises(EvolverError) as e5:
        await ep.evaluate()
    assert status_code(e5.value) == grpc.StatusCode.FAILED_PRECONDITION


class FlakyEpisode:
    user_message = "go"

    def tool_list(self):
        return [Tool("hang", "", {"type": "object", "properties": {}})]

    def step(self, calls, assistant_text=""):
        if calls and calls[0].name == "hang":
            time.sleep(3)
        if calls and calls[0].name == "boom":
            raise RuntimeError("step exploded")
        return StepOutcome([])

    def state(self):
        return {}

    def evaluate(self):
        raise RuntimeError("scorer exploded")

    def close(self):
        pass


class FlakyEnvironment:
    env_id = "flaky"
    state_visible = True

    def tools(self, toolsets=()):
        return FlakyEpisode().tool_list()

    def seed_tasks(self, split=""):
        return []

    def create(self, **kw):
        return FlakyEpisode()


async def test_hung_or_crashing_calls_fail_that_call_not_the_server():
    server, servicer = await start(FlakyEnvironment(), call_timeout_s=0.5, idle_expiry_s=0.3)
    try:
        async with RemoteEnvironment(server.address) as env:
            hung = await env.create(initial_state={})
            t0 = time.monotonic()
            with pytest.raises(EvolverError) as e:
                await hung.step([Call("hang", {})])
            assert status_code(e.value) == grpc.StatusCode.DEADLINE_EXCEEDED and "did not finish within 0.5s" in str(e.value)
            assert time.monotonic() - t0 < 2.0
            # The hung instance is dropped (its state is unknown); the server keeps serving.
            with pytest.raises(EvolverError) as gone:
                await hung.state()
            assert status_code(gone.value) == grpc.StatusCode.NOT_FOUND
            other = await env.create(initial_state={})
            with pytest.raises(EvolverError) as crash:
                await other.step([Call("boom", {})])
            assert status_code(crash.value) == grpc.StatusCode.INTERNAL and "step exploded" in str(crash.value)
            # A scorer that fails on what the agent left behind scores a failed attempt (with the
            # reason), not an infrastructure failure.
            score = await other.evaluate()
            assert (score.score, score.success) == (0.0, False)
            assert "scorer exploded" in score.details["evaluation_error"]
            assert (await other.step([])).results == []
            # Idle instances expire.
            await asyncio.sleep(0.5)
            assert servicer.reap_idle() >= 0 and other.instance_id not in servicer.instances
    finally:
        await server.stop(0)
        await servicer.close()


class SlowPolicy:
    """A scripted policy (FakeBackend, a fake: no model) whose every turn waits delay_s, as a
    turn queued behind other groups' generations waits on a loaded machine."""

    def __init__(self, tokenizer, script: list[str], delay_s: float):
        from evolver.models.backend import FakeBackend
        self.inner, self.delay_s = FakeBackend(tokenizer, script), delay_s
        self.tokenizer = tokenizer
        self.policy_version = 0

    async def generate(self, requests):
        await asyncio.sleep(self.delay_s)
        return await self.inner.generate(requests)


async def test_an_episode_waiting_on_a_slow_policy_keeps_its_instance_alive(tokenizer):
    # Found by the learning bench: warm-started turns queued for over 10 minutes, the server
    # reaped their instances, and whole evaluation groups were dead-lettered as poison.
    from evolver.agent.episode import run_episode
    from tests.bfcl_tasks import call
    server, servicer = await start(BfclEnvironment(), idle_expiry_s=0.3)
    servicer.start_reaper()  # reaps every 0.075 s
    try:
        async with RemoteEnvironment(server.address) as env:
            kept = await env.create(seed_task_id="multi_turn_base_0")
            record = await run_episode(SlowPolicy(tokenizer, [call("ls")], 0.9), kept, kept.tools, max_steps=1,
                                       keepalive_s=0.1)
            assert not record.infra_failure
            assert record.steps[0].calls[0].name == "ls" and not record.steps[0].results[0].is_error
            assert kept.instance_id in servicer.instances
            # Without the touches the same wait loses the instance: an infrastructure failure of
            # this attempt (left out of scores and training), not an exception that poisons the group.
            lost = await env.create(seed_task_id="multi_turn_base_0")
            record = await run_episode(SlowPolicy(tokenizer, [call("ls")], 0.9), lost, lost.tools, max_steps=1,
                                       keepalive_s=60.0)
            assert "no instance" in record.infra_failure and not record.steps
    finally:
        await server.stop(0)
        await servicer.close()
