"""Per-service NATS users with the permissions evolver.bus.permissions derives from the topology,
on a real nats-server: every service starts and works under its own user, and none can forge
another's events or state."""

from __future__ import annotations

import asyncio
import os

import pytest

from evolver.bus import Bus, topology
from evolver.bus.permissions import EMITS, nats_authorization
from evolver.config import load_settings
from evolver.rpc import health_status
from evolver.service import ServiceRunner
from evolver.v1 import events_pb2 as ev
from evolver.v1 import trajectory_pb2 as tpb
from tests.conftest import start_nats_server, stop_nats_server
from tests.integration._helpers import wait_until

pytestmark = pytest.mark.integration
PASSWORDS = {name: f"pw-{name}-x1" for name in [*EMITS, "admin"]}


@pytest.fixture(scope="module")
def secured_nats():
    env = {**os.environ, **{f"NATS_{k.upper()}_PASSWORD": v for k, v in PASSWORDS.items()}}
    url, p, store = start_nats_server(nats_authorization(), env)
    yield url
    stop_nats_server(p, store)


def settings_as(url: str, user: str, state_dir=None):
    env = {"EVOLVER_NATS__URL": url, "EVOLVER_NATS__USER": user, "EVOLVER_NATS__PASSWORD": PASSWORDS[user],
           "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.3"}
    if state_dir:
        env["EVOLVER_STATE_DIR"] = str(state_dir)
    return load_settings(environ=env)


async def test_no_service_can_forge_another_services_events_or_state(secured_nats):
    admin = await Bus.connect(settings_as(secured_nats, "admin"), name="admin")
    await admin.ensure_topology()
    explorer = await Bus.connect(settings_as(secured_nats, "explorer"), name="explorer")
    attributor = await Bus.connect(settings_as(secured_nats, "attributor"), name="attributor")
    try:
        forged = ev.RolloutAttributed(group=tpb.RolloutGroup(group_id="forged.s0.t0"))
        with pytest.raises(Exception):  # no PubAck ever comes: the server refused the publish
            await explorer.publish("rollout.attributed", forged, key="forged", timeout=1.5)
        with pytest.raises(Exception):
            await (await explorer.kv(topology.RUNS_BUCKET)).put("run-x", b"forged")
        # Nor listen to what it does not consume: a core subscription gets nothing (the
        # trainer's, which the topology allows, gets the same message).
        trainer = await Bus.connect(settings_as(secured_nats, "trainer"), name="trainer")
        heard: dict[str, list] = {"explorer": [], "trainer": []}
        for name, b in (("explorer", explorer), ("trainer", trainer)):
            async def on_msg(msg, name=name) -> None:
                heard[name].append(msg)
            await b.nc.subscribe("tasks.accepted", cb=on_msg)
            await b.nc.flush(timeout=1)
        task_gen = await Bus.connect(settings_as(secured_nats, "task_gen"), name="task_gen")
        await task_gen.publish("tasks.accepted", ev.TasksAccepted(env_id="e", explore_request_id="x"), key="x")
        assert await wait_until(lambda: heard["trainer"], 5)
        await asyncio.sleep(0.3)
        assert heard["explorer"] == []
        await trainer.close()
        await task_gen.close()
        # The owner may.
        ok = await attributor.publish("rollout.attributed", forged, key="real")
        assert ok.seq > 0
        stored = await admin.js.get_msg(topology.EVENTS.name, ok.seq)
        assert stored.subject == "rollout.attributed"
        info = await admin.js.stream_info(topology.EVENTS.name)
        assert info.state.messages == 2  # the owners' messages landed, the forged one did not
    finally:
        for b in (explorer, attributor, admin):
            await b.close()


async def test_every_service_runs_under_its_own_user(secured_nats, tmp_path):
    from services.attributor.app import build as attributor
    from services.explorer.app import build as explorer
    from services.memory.app import build as memory
    from services.task_gen.app import build as task_gen
    from services.trainer.app import build as trainer
    builds = {"explorer": explorer, "task_gen": task_gen, "memory": memory, "attributor": attributor,
              "trainer": trainer}
    runners = {n: ServiceRunner(n, b, settings_as(secured_nats, n, tmp_path / n)) for n, b in builds.items()}
    tasks = [asyncio.create_task(r.run()) for r in runners.values()]
    admin = await Bus.connect(settings_as(secured_nats, "admin"), name="admin")
    try:
        async def serving() -> bool:
            for r in runners.values():
                if r.server is None or await health_status(r.server.address, timeout_s=0.5) != "SERVING":
                    return False
            return True
        for _ in range(600):
            if await serving():
                break
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            await asyncio.sleep(0.1)
        assert await serving()
        pongs: set[str] = set()

        async def on_pong(msg) -> None:
            pongs.add((await admin.decode(msg.subject, msg.data, msg.headers)).service)
        sub = await admin.nc.subscribe("diag.pong.*", cb=on_pong)
        await admin.publish("diag.ping", ev.DiagPing(ping_id="perm"), key="perm")
        assert await wait_until(lambda: pongs == set(builds), 30), pongs
        await sub.unsubscribe()
        # Each registered its address in the services bucket under its own user.
        assert set(await (await admin.kv(topology.SERVICES_BUCKET)).keys()) >= set(builds)
    finally:
        for r in runners.values():
            r.stop_requested.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await admin.close()
