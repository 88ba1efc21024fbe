"""A consumer process killed with an unacked message: another replica gets the message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evolver.bus import Bus
from evolver.v1 import events_pb2 as ev

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def start_replica(mode: str, nats_url: str) -> subprocess.Popen:
    env = {**os.environ, "EVOLVER_NATS__URL": nats_url, "EVOLVER_BUS__ACK_WAIT_S": "2",
           "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.5", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.integration._replica", mode], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def read_line(p: subprocess.Popen, timeout: float) -> str:
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.2):
            line = p.stdout.readline()
            if line:
                return line.strip()
        if p.poll() is not None:
            break
    raise AssertionError(f"no output from replica within {timeout}s")


async def test_killed_replica_message_is_redelivered_to_another(bus: Bus, nats_url):
    # Bind the durable with the test's short ack_wait before the replicas do.
    from tests.conftest import make_settings
    b = await Bus.connect(make_settings(nats_url, ack_wait_s=2), name="cfg")
    await b.ensure_topology()
    await b.close()

    first = start_replica("hang", nats_url)
    second = None
    try:
        await bus.publish("explore.requested", ev.ExploreRequested(request_id="job-1"), key="job-1")
        assert read_line(first, 20) == "got job-1 attempt 1"
        first.kill()  # SIGKILL with the message unacked
        first.wait(5)
        second = start_replica("ack", nats_url)
        assert read_line(second, 30) == "got job-1 attempt 2"
        for _ in range(50):
            if (await bus.js.stream_info("EXPLORE_JOBS")).state.messages == 0:
                break
            time.sleep(0.1)
        assert (await bus.js.stream_info("EXPLORE_JOBS")).state.messages == 0
    finally:
        for p in (first, second):
            if p and p.poll() is None:
                p.kill()
                p.wait(5)
