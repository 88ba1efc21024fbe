"""The embedded stack through the real CLI: up/down twice, clear errors, never a hang."""

from __future__ import annotations

import asyncio
import json
import signal
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evolver.bus import topology
from evolver.stack import processes as proc

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def cli(state_dir: Path, *args: str, env: dict | None = None, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolver.cli", "--state-dir", str(state_dir), *args], cwd=ROOT,
                          env={**os.environ, **(env or {}), "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def state_dir(tmp_path):
    yield tmp_path / "stack"
    cli(tmp_path / "stack", "down")  # never leave processes behind


def test_stack_up_ping_down_twice_cleanly(state_dir):
    for round_ in range(2):
        up = cli(state_dir, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((state_dir / "stack.json").read_text())
        pids = [state["nats_pid"]] + [s["pid"] for s in state["services"] + state["environments"]]
        assert [e["name"] for e in state["environments"]] == ["env-bfcl"]
        assert [s["name"] for s in state["services"]] == list(topology.SERVICES)

        status = cli(state_dir, "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("SERVING") == 6  # five services and the BFCL environment server

        tail = subprocess.Popen([sys.executable, "-m", "evolver.cli", "--state-dir", str(state_dir), "events", "tail",
                                 "diag.>", "--max", "6"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)  # the tail's consumers exist before the ping
        ping = cli(state_dir, "ping")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        for name in topology.SERVICES:
            assert f"✓ {name}" in ping.stdout
        tailed = tail.communicate(timeout=30)[0].splitlines()
        assert tailed[0].startswith("diag.ping") and "DiagPing" in tailed[0]
        assert {line.split()[0] for line in tailed[1:]} == {f"diag.pong.{n}" for n in topology.SERVICES}
        trace_id = ping.stdout.split("(trace ", 1)[1].split(")", 1)[0]

        if round_ == 0:
            envs = cli(state_dir, "env", "list")
            assert envs.returncode == 0 and "bfcl" in envs.stdout and "builtin" in envs.stdout
            out = state_dir / "eval.jsonl"
            ev = cli(state_dir, "eval", "--split", "test", "--limit", "3", "--k", "2", "--out", str(out))
            assert ev.returncode == 0, ev.stdout + ev.stderr
            assert "avg@2 = 1.000, best@2 = 1.000" in " ".join(ev.stdout.split())
            assert len(out.read_text().splitlines()) == 3

        down = cli(state_dir, "down")
        assert down.returncode == 0 and "stack down" in down.stdout
        assert "killed" not in down.stdout  # every service stopped on SIGTERM
        assert not any(proc.pid_alive(p) for p in pids), f"round {round_}: processes left"
        assert not (state_dir / "stack.json").exists()
        for name in topology.SERVICES:
            log = (state_dir / "logs" / f"{name}.log").read_text()
            assert log.count(f"{name} stopped") == round_ + 1, log[-2000:]

        tree = cli(state_dir, "trace", trace_id)
        assert tree.returncode == 0, tree.stdout
        for name in topology.SERVICES:
            assert f"{name}: process diag.ping [consumer]" in tree.stdout

    # Spans from the CLI and all five services landed in one trace per ping.
    rows = [json.loads(line) for line in (state_dir / "traces" / "spans.jsonl").read_text().splitlines()]
    by_trace: dict[str, set] = {}
    for r in rows:
        by_trace.setdefault(r["trace_id"], set()).add(r["service"])
    assert sum(1 for services in by_trace.values() if services >= {"evolver-cli", *topology.SERVICES}) == 2


async def _pullers(nats_url: str, durable: str) -> int:
    """Pull requests waiting on a durable consumer: one per replica fetching from it."""
    import nats
    nc = await nats.connect(nats_url)
    try:
        spec = topology.consumer(durable)
        best = 0
        for _ in range(40):  # each replica re-issues its fetch every fetch_timeout_s
            best = max(best, (await nc.jetstream().consumer_info(spec.stream.name, durable)).num_waiting)
            if best >= 2:
                break
            await asyncio.sleep(0.25)
        return best
    finally:
        await nc.close()


def test_replicas_share_their_services_work_queues(state_dir):
    bad = cli(state_dir, "up", "--replicas", "trainer=2")
    assert bad.returncode != 0 and "trainer runs one replica" in bad.stdout + bad.stderr
    up = cli(state_dir, "up", "--replicas", "explorer=2")
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((state_dir / "stack.json").read_text())
    explorers = [s for s in state["services"] if s["service"] == "explorer"]
    assert [s["name"] for s in explorers] == ["explorer", "explorer-2"] and explorers[0]["pid"] != explorers[1]["pid"]
    status = cli(state_dir, "status")
    assert status.stdout.count("SERVING") == 7, status.stdout
    # Both processes pull from the same durable consumers, as two pods under KEDA.
    for durable in ("explorer-rollout-requested", "explorer-explore-requested"):
        assert asyncio.run(_pullers(state["nats_url"], durable)) >= 2, durable
    killed = cli(state_dir, "restart", "explorer-2", "--kill")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert cli(state_dir, "status").stdout.count("SERVING") == 7


def test_second_up_and_taken_port_fail_clearly(state_dir):
    assert cli(state_dir, "up").returncode == 0
    again = cli(state_dir, "up")
    assert again.returncode == 1 and "already running" in again.stdout
    assert cli(state_dir, "status").returncode == 0  # the first stack is untouched
    assert cli(state_dir, "down").returncode == 0

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli(state_dir, "up", "--nats-port", str(port))
    assert r.returncode == 1 and f"port {port}" in r.stdout and "already in use" in r.stdout
    assert not (state_dir / "stack.json").exists()


def test_service_that_fails_to_start_gives_clear_error_and_no_leftovers(state_dir):
    r = cli(state_dir, "up", env={"EVOLVER_BUS__MAX_DELIVER": "0"}, timeout=120)
    assert r.returncode == 1
    out = " ".join(r.stdout.split())  # rich wraps long lines
    assert "exited with code 2" in out and "bus.max_deliver" in out
    assert not (state_dir / "stack.json").exists()
    assert cli(state_dir, "status").returncode == 1


def test_status_and_ping_without_a_stack(state_dir):
    r = cli(state_dir, "status")
    assert r.returncode == 1 and "no stack is running" in r.stdout
    assert cli(state_dir, "ping").returncode == 1
    assert cli(state_dir, "down").returncode == 0  # idempotent


def test_service_exits_cleanly_on_sigterm_and_fails_fast_without_nats():
    port = proc.free_port()
    r = subprocess.run([sys.executable, "-m", "services.attributor"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "EVOLVER_NATS__URL": f"nats://127.0.0.1:{port}"})
    assert r.returncode == 3 and "cannot connect to NATS" in r.stderr
    bad = subprocess.run([sys.executable, "-m", "services.attributor"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "EVOLVER_GRPC__PORT": "99999"})
    assert bad.returncode == 2 and "grpc.port" in bad.stderr


def test_sigterm_stops_a_service_busy_in_a_worker_thread(nats_url, tmp_path):
    """A handler computing in a thread (a generation batch) must not hold SIGTERM past the drain
    timeout: the process exits, its message unacked (another replica gets it)."""
    import asyncio as aio

    from evolver.bus import Bus
    from evolver.config import load_settings
    from evolver.v1 import events_pb2, trajectory_pb2
    env = {**os.environ, "EVOLVER_NATS__URL": nats_url, "EVOLVER_BUS__DRAIN_TIMEOUT_S": "2",
           "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.3", "EVOLVER_STATE_DIR": str(tmp_path)}
    p = subprocess.Popen([sys.executable, "-m", "tests.integration._busy_service"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "memory ready" in p.stdout.readline()

        async def publish():
            bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": nats_url}), name="t")
            try:
                await bus.publish("rollout.completed", events_pb2.RolloutCompleted(
                    group=trajectory_pb2.RolloutGroup(group_id="busy.g1")), key="busy.g1")
            finally:
                await bus.close()
        aio.run(publish())
        assert "busy with busy.g1" in p.stdout.readline()
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
        assert time.monotonic() - t0 < 10
    finally:
        if p.poll() is None:
            p.kill()


def test_sigterm_to_a_run_takes_down_the_stack_it_started(state_dir, tmp_path, tiny_model_dir):
    # The stack's processes run in sessions of their own: a run killed by Python's default
    # SIGTERM (no `finally`) left them all running. Now the run stops them on its way out.
    cfg = tmp_path / "run.yaml"
    cfg.write_text("steps: 1\ntasks_per_step: 1\ngroup_size: 2\neval_every: 0\n")
    p = subprocess.Popen([sys.executable, "-m", "evolver.cli", "--state-dir", str(state_dir), "run", "--config",
                          str(cfg), "--run-id", "sigterm", "--out", str(tmp_path / "runs")], cwd=ROOT,
                         env={**os.environ, "EVOLVER_POLICY__MODEL_DIR": str(tiny_model_dir), "COLUMNS": "200"},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        state = None
        while time.monotonic() < deadline and p.poll() is None:
            if (state_dir / "stack.json").exists():
                state = json.loads((state_dir / "stack.json").read_text())
                if state.get("started_at"):
                    break
            time.sleep(0.5)
        assert state and state.get("started_at"), p.communicate(timeout=5)[0] if p.poll() is not None else state
        procs = [(state["nats_pid"], "nats-server")] + [(s["pid"], s["marker"])
                                                         for s in state["services"] + state["environments"]]
        assert all(proc.pid_alive(pid, marker) for pid, marker in procs)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 143, out[-2000:]
        assert [pid for pid, marker in procs if proc.pid_alive(pid, marker)] == []
        assert not (state_dir / "stack.json").exists()
    finally:
        if p.poll() is None:
            p.kill()
