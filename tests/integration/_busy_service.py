"""A service whose handler is busy in a worker thread (as the explorer is while it generates),
run as its own process by the shutdown test: `python -m tests.integration._busy_service`."""

import asyncio
import time

from evolver.service import ServiceParts, main


async def build(ctx) -> ServiceParts:
    async def busy(d) -> None:
        print(f"busy with {d.message.group.group_id}", flush=True)
        await asyncio.to_thread(time.sleep, 120)

    return ServiceParts([], handlers={"memory-rollout-completed": busy})


if __name__ == "__main__":
    main("memory", build)
