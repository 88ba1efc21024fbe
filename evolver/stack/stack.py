"""The embedded stack: nats-server (JetStream, loopback) and the five services as separate
processes, with a log per service under the state directory. Same code paths as a cluster;
only addresses differ."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evolver.bus import topology
from evolver.rpc import health_status
from evolver.stack import processes as proc

SERVICE_START_TIMEOUT_S = 90.0
BUILTIN_ENVIRONMENTS = ("bfcl",)
ENV_MARKER = "evolver.envs.serve"
NATS_START_TIMEOUT_S = 10.0


class StackError(Exception):
    """A clear, user-facing reason the stack could not start or stop."""


@dataclass
class ServiceInfo:
    name: str
    pid: int
    address: str
    log: str
    marker: str = "services."  # in the process's command line; guards against pid reuse
    service: str = ""  # the package it runs (services.<service>); "" = name (replica 1, environments)


@dataclass
class StackState:
    state_dir: str
    nats_pid: int
    nats_url: str
    nats_monitor_url: str
    services: list[ServiceInfo] = field(default_factory=list)
    # Built-in environment servers, registered with task_gen like any user environment.
    environments: list[ServiceInfo] = field(default_factory=list)
    started_at: float = 0.0

    def all_processes(self) -> list[ServiceInfo]:
        return [*self.services, *self.environments]

    def address_of(self, name: str) -> str:
        for s in self.all_processes():
            if s.name == name:
                return s.address
        raise StackError(f"the running stack has no {name}")

    @property
    def spans_path(self) -> Path:
        return Path(self.state_dir) / "traces" / "spans.jsonl"


# One trainer: two would both resume every RUNNING run.
SINGLE_REPLICA = ("trainer",)


def check_replicas(replicas: dict[str, int], services: tuple[str, ...] = topology.SERVICES) -> dict[str, int]:
    for name, n in replicas.items():
        if name not in services:
            raise StackError(f"replicas: no service {name!r}; services: {', '.join(services)}")
        if not 1 <= n <= 16:
            raise StackError(f"replicas: {name}={n} must be between 1 and 16")
        if name in SINGLE_REPLICA and n != 1:
            raise StackError(f"replicas: {name} runs one replica (two would both resume every run)")
    return dict(replicas)


def parse_replicas(items: list[str]) -> dict[str, int]:
    """["explorer=2", "attributor=2"] (or comma-separated) -> {"explorer": 2, "attributor": 2}."""
    out: dict[str, int] = {}
    for item in (x for arg in items for x in arg.split(",") if x):
        name, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise StackError(f"replicas: {item[:40]!r} is not SERVICE=N")
        out[name.strip()] = int(n)
    return check_replicas(out)


class Stack:
    def __init__(self, state_dir: str | Path = ".evolver"):
        self.state_dir = Path(state_dir).resolve()
        self.state_file = self.state_dir / "stack.json"
        self.log_dir = self.state_dir / "logs"

    # --- state ---------------------------------------------------------------------------------

    def read_state(self) -> StackState | None:
        if not self.state_file.exists():
            return None
        raw = json.loads(self.state_file.read_text())
        raw["services"] = [ServiceInfo(**s) for s in raw.get("services", [])]
        raw["environments"] = [ServiceInfo(**s) for s in raw.get("environments", [])]
        return StackState(**raw)

    def _write_state(self, state: StackState) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2))

    def running(self) -> StackState | None:
        """The recorded stack if its nats-server still runs; clears a stale record."""
        state = self.read_state()
        if state is None:
            return None
        if proc.pid_alive(state.nats_pid, "nats-server"):
            return state
        # nats died: stop any orphaned services, forget the record.
        orphans = {s.pid: s.marker for s in state.all_processes() if proc.pid_alive(s.pid, s.marker)}
        proc.terminate(list(orphans), 5.0, orphans.get)
        self.state_file.unlink(missing_ok=True)
        return None

    # --- up ------------------------------------------------------------------------------------

    def up(self, *, nats_port: int | None = None, services: tuple[str, ...] = topology.SERVICES,
           environments: tuple[str, ...] = BUILTIN_ENVIRONMENTS, replicas: dict[str, int] | None = None,
           on_progress=lambda msg: None) -> StackState:
        """replicas: processes per service (default 1), e.g. {"explorer": 2}: replicas share the
        service's durable work-queue consumers, as pods do under KEDA."""
        replicas = check_replicas(replicas or {}, services)
        existing = self.running()
        if existing:
            raise StackError(f"a stack is already running from {self.state_dir} (nats pid {existing.nats_pid}, "
                             f"{existing.nats_url}); run `evolver down` first")
        if nats_port is not None and proc.port_in_use(nats_port):
            raise StackError(f"port {nats_port} on 127.0.0.1 is already in use; choose another with --nats-port "
                             f"or leave it out to pick a free one")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "traces").mkdir(exist_ok=True)
        state = self._start_nats(nats_port or proc.free_port(), on_progress)
        self._write_state(state)
        try:
            self._start_services(state, services, replicas, on_progress)
            self._start_environments(state, environments, on_progress)
        except BaseException:
            self.down()
            raise
        state.started_at = time.time()
        self._write_state(state)
        return state

    def _start_nats(self, port: int, on_progress) -> StackState:
        monitor_port = proc.free_port()
        store = self.state_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.state_dir / "nats.conf"
        # max_payload stays at the 1 MiB default: larger payloads travel via the Object Store.
        conf.write_text(f"listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n"
                        f"jetstream {{ store_dir: {json.dumps(str(store))} }}\n")
        log = open(self.log_dir / "nats-server.log", "ab")
        p = subprocess.Popen([proc.nats_server_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        if not proc.wait_for_tcp("127.0.0.1", port, NATS_START_TIMEOUT_S, alive=lambda: p.poll() is None):
            p.kill()
            raise StackError(f"nats-server did not start on 127.0.0.1:{port}:\n"
                             f"{proc.tail(self.log_dir / 'nats-server.log')}")
        on_progress(f"nats-server pid {p.pid} on nats://127.0.0.1:{port}")
        return StackState(str(self.state_dir), p.pid, f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{monitor_port}")

    def _spawn(self, state: StackState, name: str, argv: list[str], marker: str) -> tuple[ServiceInfo, subprocess.Popen]:
        port = proc.free_port()
        log_path = self.log_dir / f"{name}.log"
        # The user's EVOLVER_* settings pass through; addresses are the stack's.
        env = dict(os.environ)
        env.update({"EVOLVER_NATS__URL": state.nats_url, "EVOLVER_GRPC__PORT": str(port),
                    "EVOLVER_GRPC__HOST": "127.0.0.1", "EVOLVER_STATE_DIR": str(self.state_dir),
                    "EVOLVER_TELEMETRY__SPANS_JSONL": str(state.spans_path),
                    "PYTHONUNBUFFERED": "1"})
        log = open(log_path, "ab")
        p = subprocess.Popen([sys.executable, *[a.replace("{port}", str(port)) for a in argv]], stdout=log,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True,
                             cwd=Path(__file__).resolve().parents[2])
        return ServiceInfo(name, p.pid, f"127.0.0.1:{port}", str(log_path), marker), p

    def _start_services(self, state: StackState, services: tuple[str, ...], replicas: dict[str, int],
                        on_progress) -> None:
        children: dict[str, subprocess.Popen] = {}
        for service in services:
            for i in range(replicas.get(service, 1)):
                name = service if i == 0 else f"{service}-{i + 1}"
                info, p = self._spawn(state, name, ["-m", f"services.{service}"], "services.")
                info.service = service
                children[name] = p
                state.services.append(info)
        self._write_state(state)
        asyncio.run(self._wait_healthy(state.services, children, on_progress))

    def _start_environments(self, state: StackState, environments: tuple[str, ...], on_progress) -> None:
        children: dict[str, subprocess.Popen] = {}
        for env_id in environments:
            info, p = self._spawn(state, f"env-{env_id}", ["-m", ENV_MARKER, env_id, "--port", "{port}"], ENV_MARKER)
            children[info.name] = p
            state.environments.append(info)
        self._write_state(state)
        asyncio.run(self._wait_healthy(state.environments, children, on_progress))
        if environments and "task_gen" in {s.name for s in state.services}:
            asyncio.run(self._register(state, environments, on_progress))

    async def _register(self, state: StackState, environments: tuple[str, ...], on_progress) -> None:
        from evolver.rpc import channel, stub
        from evolver.v1 import task_gen_service_pb2 as tg
        from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc
        async with channel(state.address_of("task_gen")) as ch:
            task_gen = stub(tg_grpc.TaskGenServiceStub, ch, 30.0)
            for env_id in environments:
                r = await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(
                    env_id=env_id, address=state.address_of(f"env-{env_id}")))
                on_progress(f"environment {env_id} registered ({len(r.environment.tools)} tools)")

    async def _wait_healthy(self, infos: list[ServiceInfo], children: dict[str, subprocess.Popen], on_progress) -> None:
        deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
        pending = {s.name: s for s in infos}
        while pending:
            for name, info in list(pending.items()):
                code = children[name].poll()
                if code is not None:
                    raise StackError(f"service {name} exited with code {code} during start; last log lines "
                                     f"({info.log}):\n{proc.tail(Path(info.log))}")
                if await health_status(info.address, timeout_s=1.0) == "SERVING":
                    on_progress(f"{name} SERVING on {info.address} (pid {info.pid})")
                    del pending[name]
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                raise StackError(f"services not healthy after {SERVICE_START_TIMEOUT_S:.0f}s: {names}; see "
                                 + ", ".join(pending[n].log for n in pending))
            await asyncio.sleep(0.2)

    def restart(self, name: str, *, kill: bool = False, on_progress=lambda msg: None) -> ServiceInfo:
        """Restarts one service while the rest keep running (SIGTERM, or SIGKILL with kill=True,
        to rehearse a crash). The new process serves on a new port; peers find it through the
        `services` bucket."""
        state = self.running()
        if state is None:
            raise StackError(f"no stack is running from {self.state_dir}; start one with `evolver up`")
        old = next((s for s in state.services if s.name == name), None)
        if old is None:
            raise StackError(f"the running stack has no service {name!r}; services: "
                             + ", ".join(s.name for s in state.services))
        if proc.pid_alive(old.pid, old.marker):
            if kill:
                os.kill(old.pid, signal.SIGKILL)
                deadline = time.monotonic() + 10.0
                while proc.pid_alive(old.pid, old.marker) and time.monotonic() < deadline:
                    time.sleep(0.05)
            else:
                proc.terminate([old.pid], 20.0, lambda pid: old.marker)
        info, p = self._spawn(state, name, ["-m", f"services.{old.service or old.name}"], "services.")
        info.service = old.service
        state.services = [info if s.name == name else s for s in state.services]
        self._write_state(state)
        asyncio.run(self._wait_healthy([info], {name: p}, on_progress))
        return info

    # --- status / down -------------------------------------------------------------------------

    def status(self) -> dict[str, str]:
        state = self.running()
        if state is None:
            raise StackError(f"no stack is running from {self.state_dir}; start one with `evolver up`")

        async def check() -> dict[str, str]:
            out = {"nats-server": "RUNNING" if proc.pid_alive(state.nats_pid, "nats-server") else "DEAD"}
            for s in state.all_processes():
                out[s.name] = (await health_status(s.address, timeout_s=2.0)
                               if proc.pid_alive(s.pid, s.marker) else "DEAD")
            return out
        return asyncio.run(check())

    def down(self, timeout_s: float = 20.0) -> list[str]:
        """Stops services (SIGTERM, then SIGKILL after timeout), then nats-server. Idempotent."""
        state = self.read_state()
        if state is None:
            return []
        messages = []
        markers = {s.pid: s.marker for s in state.all_processes() if proc.pid_alive(s.pid, s.marker)}
        killed = proc.terminate(list(markers), timeout_s, markers.get)
        for s in state.all_processes():
            if s.pid in killed:
                messages.append(f"{s.name} did not stop within {timeout_s:.0f}s and was killed")
        if proc.pid_alive(state.nats_pid, "nats-server"):
            proc.terminate([state.nats_pid], 10.0, lambda pid: "nats-server")
        self.state_file.unlink(missing_ok=True)
        return messages
