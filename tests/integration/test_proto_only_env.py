"""An environment written from the proto alone (examples/proto_only_env: grpcio, stubs generated
with grpc_tools.protoc into a package of its own, no `evolver` import) registers, is explored,
and runs scored episodes exactly like a built-in one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evolver.agent.exploration import run_walk
from evolver.agent.rollout import RolloutOptions, run_group
from evolver.algorithms.questioning import names_code
from evolver.envs.base import state_hash
from evolver.envs.client import RemoteEnvironment
from evolver.errors import FailedPrecondition
from evolver.models.backend import FakeBackend
from evolver.v1 import environment_pb2 as env_pb
from evolver.v1 import task_pb2
from tests.bfcl_tasks import call
from tests.integration._helpers import task_gen_on

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "proto_only_env"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    out = tmp_path_factory.mktemp("stubs")
    subprocess.run([sys.executable, str(EXAMPLE / "generate_stubs.py"), str(out)], check=True, capture_output=True)
    assert (out / "libenv_stubs" / "v1" / "environment_pb2_grpc.py").is_file()
    return out


def serve(stubs, *flags):
    # Run from a folder where `evolver` is not on the path; the server also refuses to import it.
    p = subprocess.Popen([sys.executable, str(EXAMPLE / "server.py"), "--stubs", str(stubs), "--port", "0", *flags],
                         cwd=stubs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"grpc=(\S+)", line)
    assert m, f"the example did not start: {line!r} {p.stderr.read() if p.poll() is not None else ''}"
    return p, m.group(1)


@pytest.fixture(scope="module")
def library_address(stubs):
    p, address = serve(stubs)
    yield address
    p.terminate()
    p.wait(10)


async def test_registered_from_the_proto_alone(library_address, bus):
    spec = await (await task_gen_on(bus)).register("library", library_address, "Library loans")
    assert spec.kind == env_pb.ENVIRONMENT_KIND_USER and spec.state_visible
    assert {t.name for t in spec.tools} == {"list_books", "borrow_book", "return_book", "list_loans"}


async def test_state_hash_and_exploration_follow_the_contract(library_address):
    async with RemoteEnvironment(library_address) as env:
        seeds = await env.seed_tasks("train")
        assert [s.seed_task_id for s in seeds] == ["lib-0", "lib-1"]
        ep = await env.create(seed_task_id="lib-0")
        state, digest = await ep.state()
        assert digest == state_hash(state)  # the canonical-JSON hash, computed by another program
        await ep.release()
        walk = await run_walk(env, walk_id="w0", seed=3, max_steps=6, seed_task_id="lib-0")
        assert len(walk.steps) == 6 and all(re.fullmatch(r"[0-9a-f]{32}", s.state_hash) for s in walk.steps)


async def test_episodes_are_scored_and_synthetic_instances_have_no_ground_truth(library_address, tokenizer):
    seed_task = task_pb2.Task(task_id="lib-0", env_id="library", source=task_pb2.TASK_SOURCE_SEED,
                              query="Lend Dune to bo.")
    script = [call("borrow_book", book_id="b1", member="bo"), "Done: loan l2.", call("list_books"), "Here they are."]
    async with RemoteEnvironment(library_address) as env:
        solved, unsolved = await run_group(FakeBackend(tokenizer, script), env, seed_task,
                                           RolloutOptions(group_size=2, guided_share=0.0, max_steps=3),
                                           group_id="lib-g", concurrent=False)
        assert (solved.reward.success, unsolved.reward.success) == (True, False)
        assert json.loads(solved.steps[0].observations[0].content) == {"loan_id": "l2"}
        # Two user turns: an answer moves to the next one; done after the last.
        ep = await env.create(seed_task_id="lib-2")
        first = await ep.step([], assistant_text="Lent.")
        assert first.next_user_message == "Now list cy's loans." and not first.done
        assert (await ep.step([], assistant_text="None.")).done
        synthetic = await env.create(seed_task_id="lib-0", query_override="Lend Emma to dee.")
        assert synthetic.user_message == "Lend Emma to dee."
        with pytest.raises(FailedPrecondition):
            await synthetic.evaluate()


async def test_an_environment_without_seed_tasks_is_explored_from_its_default_state(stubs, nats_url, bus, tmp_path,
                                                                                  tokenizer):
    """No human-written task at all: self-questioning starts from the default initial state."""
    import asyncio

    from evolver.service import ServiceRunner
    from evolver.v1 import task_gen_service_pb2 as tg
    from evolver.rpc import channel, stub
    from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc
    from services.explorer.app import build as build_explorer
    from services.task_gen.app import build as build_task_gen
    from tests.integration._helpers import collect, service_settings, wait_until

    p, address = serve(stubs, "--no-seed-tasks")
    settings = service_settings(nats_url, tmp_path)
    runners = [ServiceRunner("explorer", build_explorer, settings), ServiceRunner("task_gen", build_task_gen, settings)]
    running = [asyncio.create_task(r.run()) for r in runners]
    accepted, sub = await collect(bus, "tasks.accepted")
    try:
        await wait_until(lambda: all(r.server for r in runners), timeout=10)
        async with channel(runners[1].server.address) as ch:
            task_gen = stub(tg_grpc.TaskGenServiceStub, ch, 60)
            await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="library", address=address))
            r = await task_gen.GenerateTasks(tg.GenerateTasksRequest(
                env_id="library", explorations=2, walks_per_exploration=3, max_steps_per_walk=8, seed=1))
            assert len(r.explore_request_ids) == 2
            assert await wait_until(lambda: len(accepted) >= 2, timeout=120)
            tasks = [t for a in accepted for t in a.tasks]
            assert tasks and all(not t.provenance.seed_task_id and t.env_id == "library" for t in tasks)
            tools = await library_tools(address)
            assert all(not names_code(t.query, tools) for t in tasks)
        # A task made this way runs like any other: from the default state, scored by state match.
        task = tasks[0]
        script = [call(c.name, **json.loads(c.arguments_json)) for c in task.reference_solution] + ["Done."]
        async with RemoteEnvironment(address) as env:
            (traj,) = await run_group(FakeBackend(tokenizer, script), env, task,
                                      RolloutOptions(group_size=1, guided_share=0.0, max_steps=len(script)),
                                      group_id="nl-g", concurrent=False)
        assert traj.reward.success, traj
    finally:
        await sub.unsubscribe()
        for r in runners:
            r.stop_requested.set()
        await asyncio.gather(*running, return_exceptions=True)
        p.terminate()
        p.wait(10)


async def library_tools(address):
    async with RemoteEnvironment(address) as env:
        return (await env.tools())[0]
