"""`events tail` reaches every stream the filter covers, and only those, without taking jobs."""

import asyncio

import pytest

from evolver.bus import Bus
from evolver.cli.observe import tail
from evolver.v1 import events_pb2 as ev

pytestmark = pytest.mark.integration


async def _tail(bus: Bus, subject_filter: str, n: int, publish_live=None) -> list[str]:
    lines: list[str] = []
    ready = asyncio.Event()
    task = asyncio.create_task(tail(bus, subject_filter, max_messages=n, deliver_new_only=False,
                                    emit=lines.append, ready=ready))
    await asyncio.wait_for(ready.wait(), 5)
    if publish_live:
        await publish_live()
    await asyncio.wait_for(task, 10)
    return sorted(line.split()[0] for line in lines)


async def test_tail_covers_every_subject_and_watches_jobs_without_taking_them(bus: Bus):
    await bus.publish("rollout.completed", ev.RolloutCompleted(), key="g1")
    await bus.publish("rollout.attributed", ev.RolloutAttributed(), key="g1")
    await bus.publish("run.progress", ev.RunProgress(run_id="r"), key="r1")

    async def a_job():
        await bus.publish("explore.requested", ev.ExploreRequested(request_id="e"), key="e")
    everything = await _tail(bus, ">", 4, publish_live=a_job)
    assert everything == ["explore.requested", "rollout.attributed", "rollout.completed", "run.progress"]
    assert (await bus.js.stream_info("EXPLORE_JOBS")).state.messages == 1  # the job is still there
    assert await _tail(bus, "rollout.>", 2) == ["rollout.attributed", "rollout.completed"]
    assert await _tail(bus, "run.progress", 1) == ["run.progress"]
