"""task_gen's bus handlers: explore.completed -> tasks.accepted; rollout.completed -> the
curriculum counters."""

from __future__ import annotations

from evolver.bus import Bus, Delivery, Handler
from evolver.errors import NotFound, PoisonMessage
from evolver.v1 import events_pb2
from services.task_gen.task_gen import TaskGen


def handlers(task_gen: TaskGen, bus: Bus) -> dict[str, Handler]:
    async def on_explore_completed(d: Delivery) -> None:
        event: events_pb2.ExploreCompleted = d.message  # type: ignore[assignment]
        try:
            accepted = await task_gen.accept_exploration(event)
        except NotFound as e:  # the environment is not (or no longer) registered
            raise PoisonMessage(str(e)) from None
        await bus.publish("tasks.accepted", accepted, key=event.request_id)

    async def on_rollout_completed(d: Delivery) -> None:
        await task_gen.record_group(d.message)  # type: ignore[arg-type]

    return {"task-gen-explore-completed": on_explore_completed, "task-gen-rollout-completed": on_rollout_completed}
