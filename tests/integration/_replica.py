"""A worker replica run as its own process by the crash test.

usage: python -m tests.integration._replica hang|ack
Prints "got <request_id> attempt <n>" for each delivery; `hang` never finishes its handler."""

import asyncio
import sys

from evolver.bus import Bus, Delivery, Worker, topology
from evolver.config import load_settings


async def main(mode: str) -> None:
    bus = await Bus.connect(load_settings(), name=f"replica-{mode}")
    await bus.ensure_topology()

    async def handle(d: Delivery) -> None:
        print(f"got {d.message.request_id} attempt {d.attempt}", flush=True)
        if mode == "hang":
            await asyncio.Event().wait()

    await Worker(bus, topology.consumer("explorer-explore-requested"), handle).run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
