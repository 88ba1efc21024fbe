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
