"""Shared setup for tests that run services in-process against the real nats-server."""

from __future__ import annotations

import asyncio
import time

from evolver.config import load_settings


def service_settings(nats_url: str, state_dir) -> object:
    return load_settings(environ={"EVOLVER_NATS__URL": nats_url, "EVOLVER_STATE_DIR": str(state_dir),
                                  "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.3"})


async def collect(bus, subject: str) -> tuple[list, object]:
    """Decoded events published on `subject` from now on, and the subscription to close."""
    seen: list = []

    async def on_msg(msg) -> None:
        seen.append(await bus.decode(msg.subject, msg.data, msg.headers))
    return seen, await bus.nc.subscribe(subject, cb=on_msg)


async def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


def embedded_stack(state_dir, tiny_model_dir, cli, **extra_env):
    """Generator for a module fixture: `evolver up` in state_dir with the tiny model as the
    policy, yields the folder, then `evolver down`. extra_env reaches every stack process."""
    import os
    env = {"EVOLVER_POLICY__MODEL_DIR": str(tiny_model_dir), "EVOLVER_BUS__ACK_WAIT_S": "6",
           "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.5", **extra_env}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the stack's processes inherit these
    try:
        up = cli(state_dir, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        yield state_dir
        cli(state_dir, "down")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def robustness_line(kind: str, **counts) -> None:
    """One line of figures for docs/RELIABILITY.md: printed, and appended to $ROBUSTNESS_JSONL
    when set (`make chaos`)."""
    import json
    import os
    line = json.dumps({"kind": kind, **counts})
    print("ROBUSTNESS " + line, flush=True)
    if out := os.environ.get("ROBUSTNESS_JSONL"):
        with open(out, "a") as f:
            f.write(line + "\n")
