"""Memory's bus handler: rollout.completed -> experiences stored -> experience.stored."""

from __future__ import annotations

from evolver.bus import Bus, Delivery, Handler
from evolver.v1 import events_pb2
from services.memory.memory import Memory, to_pb


def handlers(memory: Memory, bus: Bus) -> dict[str, Handler]:
    async def on_rollout_completed(d: Delivery) -> None:
        event: events_pb2.RolloutCompleted = d.message  # type: ignore[assignment]
        kept = await memory.add_group(event)
        if kept:
            await bus.publish("experience.stored", events_pb2.ExperienceStored(
                source_group_id=event.group.group_id, experiences=[to_pb(e) for e in kept]),
                key=event.group.group_id)

    return {"memory-rollout-completed": on_rollout_completed}
