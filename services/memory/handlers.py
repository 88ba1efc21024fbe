"""Memory's bus handler: rollout.completed -> experiences stored -> experience.stored."""

from __future__ import annotations

from evolver.bus import Bus, Delivery, Handler
from evolver.v1 import events_pb2
from services.memory.memory import Memory, to_pb


def handlers(memory: Memory, bus: Bus) -> dict[str, Handler]:
    async def on_rollout_completed(d: Delivery) -> None:
        event: events_pb2.RolloutCompleted = d.message  # type: ignore[assignment]
        kept, usage = await memory.add_group_counted(event)
        if kept or usage:  # an LLM extraction that kept nothing still reports its cost
            await bus.publish("experience.stored", events_pb2.ExperienceStored(
                source_group_id=event.group.group_id, experiences=[to_pb(e) for e in kept], role_usage=usage),
                key=event.group.group_id)

    return {"memory-rollout-completed": on_rollout_completed}
