"""Hostile bus input on a real nats-server: an oversized id is dead-lettered before it reaches NATS
as a key, every failing consumer keeps its own dead-letter copy, and a connection the server
closed is reopened with health NOT_SERVING meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from evolver.bus import Bus, Delivery, Worker, topology
from evolver.config import load_settings
from evolver.rpc import health_status
from evolver.service import ServiceRunner, register_address
from evolver.v1 import events_pb2 as ev
from evolver.v1 import trajectory_pb2 as tpb
from services.memory.app import build as build_memory
from tests.integration._helpers import dead_letters, wait_until

pytestmark = pytest.mark.integration


async def make_the_server_close(bus: Bus) -> None:
    """nats-server closes a connection that publishes to an oversized subject."""
    try:
        await bus.nc.publish("s" * 5000, b"")
        await bus.nc.flush(timeout=2)
    except Exception:
        pass


async def run_workers(workers: list[Worker], until, timeout: float = 20.0) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        assert await wait_until(until, timeout), "condition not reached in time"
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_an_oversized_id_is_dead_lettered_and_the_connection_lives(bus: Bus):
    index = await bus.kv(topology.ROLLOUT_INDEX_BUCKET)
    handled: list[str] = []

    async def on_attributed(d: Delivery) -> None:  # what the trainer does: the group id is a KV key
        await index.put(d.message.group.group_id, b"1")
        handled.append(d.message.group.group_id)

    poison = ev.RolloutAttributed(group=tpb.RolloutGroup(group_id="h" * 5000, run_id="r"))
    await bus.publish("rollout.attributed", poison, key="poison")
    await bus.publish("rollout.attributed", ev.RolloutAttributed(group=tpb.RolloutGroup(group_id="r.s0.t0")), key="ok")
    worker = Worker(bus, topology.consumer("trainer-rollout-attributed"), on_attributed)
    await run_workers([worker], lambda: handled)
    assert handled == ["r.s0.t0"] and not bus.nc.is_closed and not bus.lost.is_set()
    (dead,) = await dead_letters(bus, "rollout.attributed")
    reason = dead.headers["Dlq-Reason"]
    assert "group.group_id" in reason and "5000" in reason and "h" * 64 not in reason


async def test_every_failing_consumer_keeps_its_own_dead_letter_copy(bus: Bus):
    seen: list[str] = []

    async def refuse(d: Delivery) -> None:
        seen.append(d.subject)
        from evolver.errors import PoisonMessage
        raise PoisonMessage("refused on purpose")

    await bus.publish("rollout.completed", ev.RolloutCompleted(group=tpb.RolloutGroup(group_id="g.1")), key="g.1")
    durables = ["memory-rollout-completed", "task-gen-rollout-completed", "attributor-rollout-completed"]
    workers = [Worker(bus, topology.consumer(d), refuse) for d in durables]
    await run_workers(workers, lambda: len(seen) == 3)
    await asyncio.sleep(0.5)
    copies = await dead_letters(bus, "rollout.completed")
    assert sorted(m.headers["Dlq-Consumer"] for m in copies) == sorted(durables)


async def test_undecodable_bytes_are_dead_lettered_and_the_next_message_handled(bus: Bus):
    handled = []

    async def handle(d: Delivery) -> None:
        handled.append(d.message.ping_id)

    await bus.js.publish("diag.ping", b"\xff\xff\xff garbage", headers={"Nats-Msg-Id": "garbage"})
    await bus.publish("diag.ping", ev.DiagPing(ping_id="p1"), key="p1")
    await run_workers([Worker(bus, topology.diag_consumer("memory"), handle)], lambda: handled)
    assert handled == ["p1"]
    (dead,) = await dead_letters(bus, "diag.ping")
    assert "not a valid evolver.v1.DiagPing" in dead.headers["Dlq-Reason"]


async def test_a_connection_the_server_closed_is_reopened(bus: Bus, nats_url):
    other = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": nats_url}), name="victim")
    try:
        kv = await other.kv(topology.RUNS_BUCKET)
        await kv.put("before", b"1")
        # A control line past the server's limit: the server answers -ERR and drops the
        # connection, and nats-py gives up on it (what a 5 KB KV key used to do).
        try:
            await other.nc.publish("s" * 5000, b"")
            await other.nc.flush(timeout=2)
        except Exception:
            pass
        assert await wait_until(other.lost.is_set, 10)
        assert not other.connected.is_set()
        await other.reopen()
        assert other.connected.is_set() and not other.lost.is_set()
        await kv.put("after", b"2")  # a store taken before the reopen follows the new connection
        assert await kv.get("before") == b"1" and await kv.get("after") == b"2"
        published = await other.publish("diag.ping", ev.DiagPing(ping_id="after-reopen"), key="after-reopen")
        assert published.seq > 0
    finally:
        await other.close()


async def test_a_service_reports_not_serving_while_nats_is_lost_and_recovers(nats_url, tmp_path):
    settings = load_settings(environ={"EVOLVER_NATS__URL": nats_url, "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.3",
                                      "EVOLVER_STATE_DIR": str(tmp_path)})
    runner = ServiceRunner("memory", build_memory, settings)
    task = asyncio.create_task(runner.run())
    try:
        assert await wait_until(lambda: runner.server is not None and runner.bus is not None, 60)
        address = runner.server.address
        for _ in range(600):  # SERVING only once registered: the connection is broken after that
            if await health_status(address, timeout_s=0.5) == "SERVING":
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the service never became SERVING")
        await make_the_server_close(runner.bus)
        # NOT_SERVING while the connection is gone, SERVING once it is reopened (the window is
        # short on loopback, so the runner's record of its health changes is what is checked).
        assert await wait_until(lambda: runner.health_changes == ["NOT_SERVING", "SERVING"], 20), runner.health_changes
        assert await health_status(address, timeout_s=1) == "SERVING"
        assert runner.bus.generation == 1
        # The reopened service still answers on the bus.
        pongs = []

        async def on_pong(msg):
            pongs.append(msg.subject)
        sub = await runner.bus.nc.subscribe("diag.pong.memory", cb=on_pong)
        probe = await Bus.connect(settings, name="probe")
        try:
            await probe.publish("diag.ping", ev.DiagPing(ping_id="after"), key="ping-after-reopen")
            assert await wait_until(lambda: pongs, 20)
        finally:
            await sub.unsubscribe()
            await probe.close()
    finally:
        runner.stop_requested.set()
        await asyncio.wait_for(task, 30)


async def test_registration_reopens_a_connection_lost_at_startup(nats_url):
    # The bus watcher starts only once the service is registered; a connection the server closes
    # before that (here: an oversized subject) must delay registration, not kill the service.
    settings = load_settings(environ={"EVOLVER_NATS__URL": nats_url})
    bus = await Bus.connect(settings, name="registering")
    try:
        await bus.ensure_topology()
        await make_the_server_close(bus)
        assert await wait_until(lambda: bus.lost.is_set(), 20)
        await asyncio.wait_for(register_address(bus, "probe", "127.0.0.1:5", asyncio.Event(), max_delay_s=0.5), 30)
        assert bus.generation == 1 and not bus.lost.is_set()
        services = await bus.kv(topology.SERVICES_BUCKET)
        assert await services.get("probe") == b"127.0.0.1:5"
        await services.delete("probe")
    finally:
        await bus.close()
