"""The bus over a real nats-server: ack, retry with backoff, dead letters, dedupe, offload."""

from __future__ import annotations

import asyncio
import time

import pytest

from evolver.bus import Bus, DeadLetterSweeper, Delivery, Worker, topology
from evolver.bus.client import PAYLOAD_REF
from evolver.errors import PoisonMessage
from evolver.v1 import events_pb2 as ev
from services.trainer.progress import phase_name

pytestmark = pytest.mark.integration

JOBS = topology.consumer("explorer-explore-requested")


def explore(i: int, **kw) -> ev.ExploreRequested:
    return ev.ExploreRequested(request_id=f"r{i}", env_id="bfcl", walks=1, **kw)


async def run_until(worker: Worker, predicate, timeout: float = 15.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def dead_letters(bus: Bus) -> list:
    info = await bus.js.stream_info(topology.DEAD.name)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else []:
        out.append(await bus.js.get_msg(topology.DEAD.name, seq))
    return out


async def test_publish_consume_ack(bus: Bus):
    seen: list[Delivery] = []

    async def handle(d: Delivery) -> None:
        seen.append(d)

    for i in range(3):
        await bus.publish("explore.requested", explore(i), key=f"r{i}")
    worker = Worker(bus, JOBS, handle)
    await run_until(worker, lambda: len(seen) == 3)
    assert [d.message.request_id for d in seen] == ["r0", "r1", "r2"]
    assert all(d.attempt == 1 and d.msg_id == f"explore.requested:{d.message.request_id}" for d in seen)
    # Acked on a WorkQueue stream: removed.
    assert (await bus.js.stream_info("EXPLORE_JOBS")).state.messages == 0


async def test_failing_handler_is_redelivered_with_backoff_then_succeeds(bus: Bus):
    attempts: list[tuple[int, float]] = []

    async def handle(d: Delivery) -> None:
        attempts.append((d.attempt, time.monotonic()))
        if d.attempt < 3:
            raise RuntimeError("transient")

    await bus.publish("explore.requested", explore(1), key="r1")
    await run_until(Worker(bus, JOBS, handle), lambda: len(attempts) == 3)
    assert [a for a, _ in attempts] == [1, 2, 3]
    gap1, gap2 = attempts[1][1] - attempts[0][1], attempts[2][1] - attempts[1][1]
    # retry_base 0.3 s: delays 0.3 then 0.6 (plain nak would redeliver at once).
    assert gap1 >= 0.25 and gap2 >= 0.5 and gap2 > gap1
    assert (await bus.js.stream_info("EXPLORE_JOBS")).state.messages == 0
    assert await dead_letters(bus) == []


async def test_poison_goes_to_dead_letter_with_reason_and_consumer_continues(bus: Bus):
    handled: list[str] = []

    async def handle(d: Delivery) -> None:
        if d.message.request_id == "bad":
            raise PoisonMessage("env_id unknown")
        handled.append(d.message.request_id)

    await bus.publish("explore.requested", explore(0), key="r0")
    await bus.publish("explore.requested", ev.ExploreRequested(request_id="bad"), key="bad",
                      headers={"x-origin": "test"})
    await bus.publish("explore.requested", explore(2), key="r2")
    # Garbage bytes on the subject: undecodable, also dead-lettered.
    await bus.js.publish("explore.requested", b"\xff\xff\xff", headers={"Nats-Msg-Id": "garbage"})
    await bus.publish("explore.requested", explore(4), key="r4")
    await run_until(Worker(bus, JOBS, handle), lambda: len(handled) == 3)
    dead = await dead_letters(bus)
    assert {d.subject for d in dead} == {"dead.explore.requested"}
    reasons = {d.headers["Dlq-Reason"] for d in dead}
    assert any("poison: env_id unknown" in r for r in reasons)
    assert any("not a valid evolver.v1.ExploreRequested" in r for r in reasons)
    bad = next(d for d in dead if "env_id unknown" in d.headers["Dlq-Reason"])
    assert ev.ExploreRequested.FromString(bad.data).request_id == "bad"  # original payload kept
    assert bad.headers["x-origin"] == "test"  # original headers kept
    assert bad.headers["Dlq-Consumer"] == JOBS.durable
    assert handled == ["r0", "r2", "r4"]


async def test_exhausted_retries_are_dead_lettered(settings_for):
    b = await Bus.connect(settings_for(max_deliver=2, retry_base_s=0.1, fetch_timeout_s=0.5), name="t")
    try:
        await b.ensure_topology()
        calls = []

        async def handle(d: Delivery) -> None:
            calls.append(d.attempt)
            raise ValueError("always broken")

        await b.publish("explore.requested", explore(1), key="r1")
        await run_until(Worker(b, JOBS, handle), lambda: len(calls) == 2)
        for _ in range(50):
            if await dead_letters(b):
                break
            await asyncio.sleep(0.1)
        (dead,) = await dead_letters(b)
        assert "failed 2 deliveries" in dead.headers["Dlq-Reason"]
        assert "ValueError: always broken" in dead.headers["Dlq-Reason"]
    finally:
        from tests.conftest import wipe
        await wipe(b)
        await b.close()


async def test_same_publish_twice_is_stored_once(bus: Bus):
    first = await bus.publish("rollout.completed", ev.RolloutCompleted(), key="group-7")
    second = await bus.publish("rollout.completed", ev.RolloutCompleted(), key="group-7")
    other = await bus.publish("rollout.completed", ev.RolloutCompleted(), key="group-8")
    assert not first.duplicate and second.duplicate and second.seq == first.seq
    assert other.seq == first.seq + 1
    assert (await bus.js.stream_info("EVENTS")).state.messages == 2


async def test_publish_rejects_wrong_payload_type_and_unknown_subject(bus: Bus):
    with pytest.raises(TypeError, match="RolloutCompleted"):
        await bus.publish("rollout.completed", ev.DiagPing(), key="k")
    with pytest.raises(KeyError, match="no event declared"):
        await bus.publish("nope.subject", ev.DiagPing(), key="k")
    with pytest.raises(ValueError, match="business key"):
        await bus.publish("diag.ping", ev.DiagPing(), key="")


async def test_publish_failures_raise_nats_errors(bus: Bus):
    """The bus's own PubAck round trip (evolver/bus/_replies.py) fails as nats-py's would."""
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import APIError, NoStreamResponseError

    # No stream listens: the server's 503 becomes NoStreamResponseError.
    with pytest.raises(NoStreamResponseError):
        await bus.replies.publish("no.stream.here", b"x", headers=None, timeout=2)
    # The stream rejects the message: its API error is raised with the server's code.
    with pytest.raises(APIError) as e:
        await bus.replies.publish("diag.ping", b"x", headers={"Nats-Expected-Stream": "OTHER"}, timeout=2)
    assert e.value.err_code == 10060  # expected stream does not match
    # A responder that never answers: TimeoutError, and the pending request is cleaned up.
    silent = await bus.nc.subscribe("silent.service")
    with pytest.raises(NatsTimeout):
        await bus.replies.request("silent.service", b"?", timeout=0.2)
    assert not bus.replies._pending
    await silent.unsubscribe()
    with pytest.raises(NoRespondersError):
        await bus.replies.request("silent.service", b"?", timeout=2)
    # Many concurrent publishes each get their own PubAck.
    acks = await asyncio.gather(*(bus.publish("diag.ping", ev.DiagPing(ping_id=str(i)), key=f"c{i}") for i in range(50)))
    seqs = [a.seq for a in acks]
    assert sorted(seqs) == list(range(min(seqs), min(seqs) + 50))
    for i in (0, 17, 49):  # each ack names the sequence its own message was stored at
        stored = await bus.js.get_msg("DIAG", seqs[i])
        assert ev.DiagPing.FromString(stored.data).ping_id == str(i)


async def test_large_payload_travels_through_object_store(bus: Bus):
    big = ev.RolloutCompleted()
    traj = big.group.trajectories.add(trajectory_id="t0")
    traj.tokens.token_ids.extend(range(400_000))  # ~1.2 MB: above NATS' 1 MiB max_payload
    got: list[ev.RolloutCompleted] = []
    await bus.publish("rollout.completed", big, key="big")
    raw = await bus.js.get_msg("EVENTS", 1)
    assert raw.headers[PAYLOAD_REF].startswith(topology.PAYLOAD_BUCKET + "/") and not raw.data

    async def handle(d: Delivery) -> None:
        got.append(d.message)

    await run_until(Worker(bus, topology.consumer("memory-rollout-completed"), handle), lambda: got)
    assert got[0] == big


async def test_long_handler_heartbeats_prevent_redelivery(bus: Bus):
    # ack_wait is 3 s in this fixture; the handler takes 4.5 s and must not be redelivered.
    attempts = []

    async def handle(d: Delivery) -> None:
        attempts.append(d.attempt)
        await asyncio.sleep(4.5)

    await bus.publish("explore.requested", explore(1), key="r1")
    worker = Worker(bus, JOBS, handle)
    await run_until(worker, lambda: worker.handled == 1, timeout=20)
    assert attempts == [1]


async def test_sweeper_dead_letters_messages_that_ran_out_of_deliveries(settings_for):
    # A handler that never acks (the process died) on the final delivery: only the server's
    # MAX_DELIVERIES advisory is left, and the sweeper turns it into a dead letter.
    b = await Bus.connect(settings_for(max_deliver=1, ack_wait_s=1, fetch_timeout_s=0.3), name="t")
    try:
        await b.ensure_topology()
        await b.publish("explore.requested", explore(9), key="r9")
        sub = await b.js.pull_subscribe_bind(durable=JOBS.durable, stream="EXPLORE_JOBS")
        (msg,) = await sub.fetch(1, timeout=2)  # received, never acked
        await asyncio.sleep(2.5)
        sweeper = DeadLetterSweeper(b)
        stop = asyncio.Event()
        task = asyncio.create_task(sweeper.run(stop))
        for _ in range(100):
            if sweeper.swept:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 5)
        (dead,) = await dead_letters(b)
        assert "max deliveries (1) reached without ack" in dead.headers["Dlq-Reason"]
        assert ev.ExploreRequested.FromString(dead.data).request_id == "r9"
        assert (await b.js.stream_info("EXPLORE_JOBS")).state.messages == 0
    finally:
        from tests.conftest import wipe
        await wipe(b)
        await b.close()


async def test_topology_is_idempotent_and_updates_mutable_consumer_fields(bus: Bus, settings_for):
    await bus.ensure_topology()  # second run: no error
    b2 = await Bus.connect(settings_for(ack_wait_s=7, max_deliver=9), name="t2")
    try:
        await b2.ensure_topology()
        info = await b2.js.consumer_info("EXPLORE_JOBS", JOBS.durable)
        assert info.config.ack_wait == 7 and info.config.max_deliver == 9
    finally:
        await b2.close()


async def test_nats_credentials_are_honoured(tmp_path):
    import subprocess
    from evolver.config import load_settings
    from evolver.errors import Unavailable
    from evolver.stack import processes as proc
    port = proc.free_port()
    server = subprocess.Popen([proc.nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                               str(tmp_path), "--user", "evolver", "--pass", "s3cret"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert proc.wait_for_tcp("127.0.0.1", port, 10)
        url = {"EVOLVER_NATS__URL": f"nats://127.0.0.1:{port}"}
        for creds in ({}, {"EVOLVER_NATS__USER": "evolver", "EVOLVER_NATS__PASSWORD": "wrong"}):
            with pytest.raises(Unavailable, match="cannot connect to NATS.*[Aa]uthorization"):
                await Bus.connect(load_settings(environ={**url, **creds}), name="t")
        ok = await Bus.connect(load_settings(environ={**url, "EVOLVER_NATS__USER": "evolver",
                                                      "EVOLVER_NATS__PASSWORD": "s3cret"}), name="t")
        await ok.ensure_topology()
        assert (await ok.publish("diag.ping", ev.DiagPing(ping_id="x"), key="x")).seq == 1
        await ok.close()
    finally:
        server.terminate()
        server.wait(10)


async def test_publish_and_consume_survive_a_nats_restart(tmp_path):
    """The reply subscription behind PubAcks and acks, and the worker's pull subscription, come
    back after the server restarts on the same port and store."""
    import subprocess
    from evolver.stack import processes as proc
    from tests.conftest import make_settings
    port = proc.free_port()
    cmd = [proc.nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b = None
    try:
        assert proc.wait_for_tcp("127.0.0.1", port, 10)
        b = await Bus.connect(make_settings(f"nats://127.0.0.1:{port}", fetch_timeout_s=0.5), name="t")
        await b.ensure_topology()
        seen: list[str] = []

        async def handle(d: Delivery) -> None:
            seen.append(d.message.request_id)

        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(b, JOBS, handle).run(stop))
        await b.publish("explore.requested", explore(1), key="before")
        server.terminate()
        server.wait(10)
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert proc.wait_for_tcp("127.0.0.1", port, 10)
        deadline = time.monotonic() + 20
        while True:  # publishes fail until the client has reconnected
            try:
                await b.publish("explore.requested", explore(2), key="after", timeout=1)
                break
            except Exception:
                assert time.monotonic() < deadline, "publish never succeeded after the restart"
                await asyncio.sleep(0.2)
        while sorted(set(seen)) != ["r1", "r2"]:
            assert time.monotonic() < deadline, f"consumed only {seen}"
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(worker, 10)
        assert (await b.js.stream_info("EXPLORE_JOBS")).state.messages == 0  # both acked
    finally:
        if b is not None:
            await b.close()
        server.terminate()
        server.wait(10)


async def test_a_slow_job_does_not_hold_back_the_others(bus: Bus):
    # Two slots: the slow job takes one; every other job runs through the other slot while it
    # waits (a worker that waited for its whole fetched batch held them for the slow one).
    done: dict[str, float] = {}
    t0 = time.monotonic()

    async def handle(d: Delivery) -> None:
        if d.message.request_id == "r0":
            await asyncio.sleep(4.0)
        done[d.message.request_id] = time.monotonic() - t0

    for i in range(5):
        await bus.publish("explore.requested", explore(i), key=f"r{i}")
    await run_until(Worker(bus, JOBS, handle, concurrency=2), lambda: len(done) == 5, timeout=20)
    assert all(done[f"r{i}"] < 2.0 for i in range(1, 5)), done
    assert done["r0"] >= 4.0


async def test_readers_get_events_decoded_or_explained_without_touching_nats(bus: Bus):
    """subscribe (live, or an ordered replay from the start), replay (until caught up) and
    read_event: a bad message arrives as an Event with its error, never as an exception."""
    from evolver.errors import NotFound
    first = await bus.publish("run.progress", ev.RunProgress(run_id="r", phase=ev.RUN_PHASE_STARTING), key="p1")
    await bus.js.publish("run.progress", b"\xff\xfe", headers={"Nats-Msg-Id": "bad"})
    replayed = [e async for e in bus.replay("run.progress", topology.EVENTS, idle_s=0.5)]
    assert [(phase_name(e.message.phase) if e.message else None) for e in replayed] == ["starting", None]
    assert "not a valid evolver.v1.RunProgress" in replayed[1].error and replayed[0].stored_at > 0
    stored = await bus.read_event(topology.EVENTS, first.seq)
    assert phase_name(stored.message.phase) == "starting" and stored.seq == first.seq
    with pytest.raises(NotFound):
        await bus.read_event(topology.EVENTS, 999)
    live, from_start = [], []

    async def on_live(e):
        live.append(e)

    async def on_all(e):
        from_start.append(e)
    sub_live = await bus.subscribe("run.progress", on_live)  # core, live only
    sub_all = await bus.subscribe("run.progress", on_all, stream=topology.EVENTS, from_start=True)
    await asyncio.sleep(0.3)
    await bus.publish("run.progress", ev.RunProgress(run_id="r", phase=ev.RUN_PHASE_FINISHED), key="p2")
    deadline = time.monotonic() + 5
    while (len(from_start) < 3 or not live) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await sub_live.close()
    await sub_all.close()
    assert [phase_name(e.message.phase) for e in live] == ["finished"] and live[0].seq == 0
    assert [phase_name(e.message.phase) if e.message else None for e in from_start] == ["starting", None, "finished"]
