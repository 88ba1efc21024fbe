"""A user's environment in its own process: registered with task_gen and driven through exactly
the client BFCL uses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from evolver.bus import Bus, topology
from evolver.envs.base import Call
from evolver.envs.client import RemoteEnvironment
from evolver.rpc import GrpcServer, Registration, bad_request_fields, channel, stub
from evolver.v1 import environment_pb2 as env_pb
from evolver.v1 import task_gen_service_pb2 as tg
from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc
from services.memory.servicer import MemoryServicer
from services.task_gen.servicer import TaskGenServicer
from tests.integration._helpers import empty_memory, task_gen_on
from evolver.v1 import memory_service_pb2_grpc as mem_grpc

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inventory_process():
    p = subprocess.Popen([sys.executable, "-m", "examples.inventory_env", "--port", "0"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = p.stdout.readline()
    m = re.search(r"grpc=(\S+)", line)
    assert m, f"example environment did not start: {line!r}"
    yield m.group(1)
    p.terminate()
    assert p.wait(10) == 0  # clean exit on SIGTERM


@pytest.fixture
async def task_gen(bus: Bus):
    server = GrpcServer([Registration("evolver.v1.TaskGenService", TaskGenServicer(await task_gen_on(bus)),
                                      tg_grpc.add_TaskGenServiceServicer_to_server)])
    await server.start()
    async with channel(server.address) as ch:
        yield stub(tg_grpc.TaskGenServiceStub, ch, 15.0)
    await server.stop(0)


async def test_user_environment_round_trips_end_to_end(inventory_process, task_gen, bus):
    r = await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="inventory", address=inventory_process))
    assert r.environment.kind == env_pb.ENVIRONMENT_KIND_USER and r.environment.state_visible
    assert {t.name for t in r.environment.tools} == {"list_items", "get_item", "add_stock", "create_order",
                                                     "cancel_order", "get_order"}
    listed = await task_gen.ListEnvironments(tg.ListEnvironmentsRequest())
    assert [e.env_id for e in listed.environments] == ["inventory"]
    # Durable: the registration is in NATS KV, not in the servicer's memory.
    assert env_pb.EnvironmentSpec.FromString(await (await bus.kv(topology.ENVIRONMENTS_BUCKET)).get("inventory")).address == inventory_process

    async with RemoteEnvironment(listed.environments[0].address) as env:
        seeds = await env.seed_tasks()
        assert [s.seed_task_id for s in seeds] == ["inv-0", "inv-1", "inv-2"]
        ep = await env.create(seed_task_id="inv-1")
        assert "tea samplers" in ep.user_message
        out = await ep.step([Call("add_stock", {"sku": "SKU-3", "qty": 5}, "a"),
                             Call("create_order", {"sku": "SKU-3", "qty": 9}, "b")])
        assert [r.is_error for r in out.results] == [False, True] and "5 in stock" in out.results[1].content
        await ep.step([Call("create_order", {"sku": "SKU-3", "qty": 2})])
        state, h = await ep.state()
        assert state["items"]["SKU-3"]["qty"] == 3 and state["orders"]["O-1"]["qty"] == 2 and len(h) == 32
        assert (await ep.evaluate()).success
        await ep.release()

        wrong = await env.create(seed_task_id="inv-1")
        await wrong.step([Call("add_stock", {"sku": "SKU-3", "qty": 5})])
        assert not (await wrong.evaluate()).success


async def test_unreachable_and_nonconforming_servers_get_clear_errors(task_gen):
    from evolver.stack.processes import free_port
    with pytest.raises(grpc.aio.AioRpcError) as unreachable:
        await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="gone", address=f"127.0.0.1:{free_port()}"))
    assert unreachable.value.code() == grpc.StatusCode.UNAVAILABLE and "no Environment server answers" in unreachable.value.details()

    other = GrpcServer([Registration("evolver.v1.MemoryService", MemoryServicer(empty_memory()), mem_grpc.add_MemoryServiceServicer_to_server)])
    await other.start()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="memory", address=other.address))
    finally:
        await other.stop(0)
    assert wrong.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "does not implement evolver.v1.EnvironmentService" in wrong.value.details()

    # An id that is no id at all is refused at the boundary (evolver.limits); one that is an id
    # but not an environment id, and a bad address, are both named by the registry.
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="Bad Id!", address="nowhere"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(bad.value)) == {"env_id"}
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="Bad_Id", address="nowhere"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(bad.value)) == {"env_id", "address"}


class DuplicateToolsEnvironment:
    """Lists one tool name twice (a call by that name would be ambiguous)."""

    env_id = "dupes"
    state_visible = True

    def tools(self, toolsets=()):
        from evolver.envs.base import Tool
        schema = {"type": "object", "properties": {}}
        return [Tool("ping", "first", schema), Tool("ping", "second", schema)]

    def seed_tasks(self, split=""):
        return []

    def create(self, **kw):
        raise NotImplementedError


async def test_duplicate_tool_names_are_refused_and_environments_can_be_removed(inventory_process, task_gen):
    from evolver.envs.server import EnvironmentServicer
    from evolver.v1 import environment_pb2_grpc as env_grpc
    servicer = EnvironmentServicer(DuplicateToolsEnvironment())
    server = GrpcServer([Registration("evolver.v1.EnvironmentService", servicer,
                                      env_grpc.add_EnvironmentServiceServicer_to_server)])
    await server.start()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as dupes:
            await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="dupes", address=server.address))
        assert dupes.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "ping" in dupes.value.details()
    finally:
        await server.stop(0)
        await servicer.close()
    await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="inventory", address=inventory_process))
    await task_gen.UnregisterEnvironment(tg.UnregisterEnvironmentRequest(env_id="inventory"))
    listed = await task_gen.ListEnvironments(tg.ListEnvironmentsRequest())
    assert "inventory" not in {e.env_id for e in listed.environments}
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await task_gen.UnregisterEnvironment(tg.UnregisterEnvironmentRequest(env_id="inventory"))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
