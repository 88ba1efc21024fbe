"""The attributor's bus handler: rollout.completed -> rollout.attributed. Evaluation groups and
runs with attribution off pass through unlabelled, so the trainer has one input stream."""

from __future__ import annotations

from evolver.bus import Bus, Delivery, Handler
from evolver.errors import FailedPrecondition, InvalidArgument, NotFound, PoisonMessage
from evolver.v1 import events_pb2
from services.attributor.attribution import Attributor


def handlers(attributor: Attributor, bus: Bus) -> dict[str, Handler]:
    async def on_rollout_completed(d: Delivery) -> None:
        event: events_pb2.RolloutCompleted = d.message  # type: ignore[assignment]
        attributions, usage = [], []
        if event.attribute and not event.evaluation and not event.demonstration:
            try:
                attributions, usage = await attributor.attribute(event.task, event.group, labeler=event.step_labeler,
                                                                 skip=event.step_label_skip)
            except (InvalidArgument, NotFound, FailedPrecondition) as e:  # can never succeed
                raise PoisonMessage(str(e)) from None
        await bus.publish("rollout.attributed", events_pb2.RolloutAttributed(
            group=event.group, attributions=attributions, evaluation=event.evaluation, task=event.task,
            demonstration=event.demonstration, role_usage=[*event.role_usage, *usage]),
            key=event.group.group_id)

    return {"attributor-rollout-completed": on_rollout_completed}
