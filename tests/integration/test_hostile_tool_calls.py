"""Hostile tool calls against the real BFCL environment server: a runaway call costs its instance,
never the server; an agent's own odd results come back as data, never INTERNAL; nothing is
eval'd. (The issue's list: logarithm precision 10^7, power(3, 3e7), power(10, 5000), 300 nested
directories, deep or huge arguments, a 2 MB Step, Release during a Step, NaN.)"""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest

from evolver.envs.base import Call
from evolver.envs.bfcl import BfclEnvironment
from evolver.envs.caps import EnvironmentCaps
from evolver.envs.client import RemoteEnvironment
from evolver.envs.server import EnvironmentServicer
from evolver.rpc import GrpcServer, Registration
from evolver.v1 import environment_pb2 as pb
from evolver.v1 import environment_pb2_grpc as pb_grpc
from evolver.v1 import trajectory_pb2 as traj
from tests.integration._helpers import robustness_line, status_code
from evolver.errors import EvolverError

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0


@pytest.fixture
async def served():
    servicer = EnvironmentServicer(BfclEnvironment(), caps=EnvironmentCaps(call_timeout_s=TIMEOUT_S),
                                   max_instances=64)
    server = GrpcServer([Registration("evolver.v1.EnvironmentService", servicer,
                                      pb_grpc.add_EnvironmentServiceServicer_to_server)])
    await server.start()
    async with RemoteEnvironment(server.address, deadline_s=30.0) as env:
        yield env, servicer
    await server.stop(0)
    await servicer.close()


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity (what a strict client would see)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


async def math(env: RemoteEnvironment):
    return await env.create(initial_state={"MathAPI": {}}, toolsets=["MathAPI"])


async def code_of(coro) -> grpc.StatusCode | None:
    try:
        await coro
    except (grpc.aio.AioRpcError, EvolverError) as e:
        return status_code(e)
    return None


async def test_runaway_calls_cost_their_instances_not_the_server(served):
    env, servicer = served
    # More runaway calls than the old thread pool had workers, all at once.
    runaways = [await math(env) for _ in range(9)]
    calls = [Call("logarithm", {"value": 10, "base": 3, "precision": 10_000_000})] * 8 + \
            [Call("power", {"base": 3, "exponent": 30_000_000})]
    t0 = time.monotonic()
    tasks = [asyncio.create_task(code_of(ep.step([c]))) for ep, c in zip(runaways, calls)]
    # While they run, another instance answers at once (its own process, the GIL untouched).
    await asyncio.sleep(0.3)
    healthy = await math(env)
    t1 = time.monotonic()
    (r,) = (await healthy.step([Call("add", {"a": 2, "b": 3})])).results
    healthy_s = time.monotonic() - t1
    assert healthy_s < 1.0 and not r.is_error and "5" in r.content
    codes = await asyncio.gather(*tasks)
    assert all(c in (grpc.StatusCode.DEADLINE_EXCEEDED, None) for c in codes), codes
    assert codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) >= 8
    assert time.monotonic() - t0 < TIMEOUT_S + 6
    # Each overrun instance is gone; the server still creates and serves new ones.
    for ep, c in zip(runaways, codes):
        if c is not None:
            assert await code_of(ep.state()) == grpc.StatusCode.NOT_FOUND
    again = await math(env)
    (r,) = (await again.step([Call("multiply", {"a": 6, "b": 7})])).results
    assert "42" in r.content
    assert len(servicer.instances) <= 3
    robustness_line("hostile_calls", case="runaway", calls=len(calls), internal=0,
                    deadline_exceeded=codes.count(grpc.StatusCode.DEADLINE_EXCEEDED),
                    healthy_step_ms=round(healthy_s * 1000, 1))


async def test_an_agents_odd_results_are_data_not_internal(served):
    env, _ = served
    ep = await math(env)
    (r,) = (await ep.step([Call("power", {"base": 10, "exponent": 5000})])).results
    # An observation the agent can read (the number is past Python's printable-integer limit).
    assert "cannot be shown" in r.content and len(r.content) < 1000
    state, _ = await ep.state()
    assert isinstance(state, dict)
    # No ground truth on an instance made from a state: a clear refusal, not INTERNAL.
    assert await code_of(ep.evaluate()) == grpc.StatusCode.FAILED_PRECONDITION

    fs = await env.create(initial_state={"GorillaFileSystem": {"root": {"workspace": {"type": "directory",
                                                                                    "contents": {}}}}},
                          toolsets=["GorillaFileSystem"])
    for start in range(0, 300, 16):  # 16 mkdir+cd pairs per step: within the per-step cap
        out = await fs.step([c for i in range(start, min(300, start + 16))
                             for c in (Call("mkdir", {"dir_name": f"d{i}"}), Call("cd", {"folder": f"d{i}"}))])
        assert not any(r.is_error for r in out.results)
    state_resp = await env.stub.GetState(pb.GetStateRequest(instance_id=fs.instance_id))
    strict_json(state_resp.state_json)
    assert len(state_resp.state_hash) == 32
    robustness_line("hostile_calls", case="odd_results", calls=1 + 600, internal=0)


async def test_deep_huge_and_non_finite_arguments_become_error_observations(served):
    env, _ = served
    ep = await math(env)
    deep = '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"
    huge = '{"a": ' + "7" * 5000 + ', "b": 1}'
    nan = '{"a": NaN, "b": 1}'
    big = json.dumps({"a": "x" * 200_000, "b": 1})
    resp = await env.stub.Step(pb.StepRequest(instance_id=ep.instance_id, tool_calls=[
        traj.ToolCall(call_id=f"c{i}", name="add", arguments_json=a) for i, a in enumerate([deep, huge, nan, big])]))
    assert [o.kind for o in resp.observations] == [traj.OBSERVATION_KIND_TOOL_ERROR] * 4
    assert "nested too deeply" in resp.observations[0].content
    assert "not usable" in resp.observations[1].content
    assert "NaN" in resp.observations[2].content
    assert "at most" in resp.observations[3].content
    # Names that would matter to an eval() are just unknown tools: nothing runs.
    for name in ("__import__('os').system('touch /tmp/pwned')", "__class__", "eval", "exec"):
        (r,) = (await ep.step([Call(name, {})])).results
        assert r.is_error
    # NaN produced by the tool itself never leaks into an observation or a state document.
    (r,) = (await ep.step([Call("divide", {"a": 0.0, "b": 0.0})])).results
    assert "NaN" not in r.content or r.is_error
    text = (await env.stub.GetState(pb.GetStateRequest(instance_id=ep.instance_id))).state_json
    strict_json(text)
    robustness_line("hostile_calls", case="bad_arguments_and_names", calls=4 + 4 + 1, internal=0)


async def test_a_2mb_step_runs_at_most_the_cap_and_answers_quickly(served):
    env, _ = served
    ep = await math(env)
    n = 20_000
    calls = [traj.ToolCall(call_id=f"c{i}", name="add", arguments_json='{"a": 1, "b": 2, "pad": "' + "p" * 80 + '"}')
             for i in range(n)]
    t0 = time.monotonic()
    resp = await env.stub.Step(pb.StepRequest(instance_id=ep.instance_id, tool_calls=calls))
    assert time.monotonic() - t0 < 5.0
    assert len(resp.observations) == n
    cap = EnvironmentCaps().max_calls_per_step
    assert all("not run" in o.content for o in resp.observations[cap:])
    assert not any("not run" in o.content for o in resp.observations[:cap])
    robustness_line("hostile_calls", case="2mb_step", calls=n, run=cap, internal=0,
                    seconds=round(time.monotonic() - t0, 2))


async def test_release_waits_for_an_in_flight_step(served):
    env, servicer = served
    ep = await math(env)
    step = asyncio.create_task(code_of(ep.step([Call("power", {"base": 3, "exponent": 3_000_000})])))
    await asyncio.sleep(0.1)
    await ep.release()  # must not pull the instance out from under the running call
    assert await step in (None, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert ep.instance_id not in servicer.instances


async def test_negative_page_token_is_invalid(served):
    env, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await env.stub.ListSeedTasks(pb.ListSeedTasksRequest(page_token="-5"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_server_process_stops_on_sigterm_with_runaway_calls_in_flight():
    """SIGTERM used to be ignored while worker threads hung in runaway calls."""
    import os
    import re
    import signal
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    p = subprocess.Popen([sys.executable, "-m", "evolver.envs.serve", "bfcl", "--call-timeout", "30"], cwd=root,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        address = re.search(r"grpc=(\S+)", p.stdout.readline()).group(1)

        async def sigterm_during_runaways() -> float:
            async with RemoteEnvironment(address) as env:
                eps = [await math(env) for _ in range(3)]
                calls = [asyncio.ensure_future(code_of(ep.step([Call("power", {"base": 3, "exponent": 30_000_000})])))
                         for ep in eps]  # each would run far past the SIGTERM below
                await asyncio.sleep(1.0)
                t0 = time.monotonic()
                p.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(p.wait, 20) == 0
                elapsed = time.monotonic() - t0
                await asyncio.gather(*calls)  # the callers got an answer (the server went away)
                return elapsed
        assert asyncio.run(sigterm_during_runaways()) < 10
    finally:
        if p.poll() is None:
            p.kill()


def test_an_environment_that_cannot_reach_its_workers_is_refused_at_start():
    import threading

    class Holder(BfclEnvironment):
        def __init__(self):
            self.lock = threading.Lock()  # a live resource: not copyable to a worker

    with pytest.raises(ValueError, match="cannot be copied to its instance workers"):
        EnvironmentServicer(Holder())
