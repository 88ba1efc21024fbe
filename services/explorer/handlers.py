"""The explorer's bus handlers: explore.requested -> explore.completed and rollout.requested ->
rollout.completed. A request the environment refuses (unknown seed task, bad arguments) can
never succeed: it goes to the dead-letter stream; anything else is retried."""

from __future__ import annotations

from evolver.bus import Bus, Delivery, Handler
from evolver.errors import FailedPrecondition, InvalidArgument, NotFound, PoisonMessage
from evolver.v1 import events_pb2
from services.explorer.explorer import Explorer

NEVER_SUCCEEDS = (InvalidArgument, NotFound, FailedPrecondition)


def handlers(explorer: Explorer, bus: Bus) -> dict[str, Handler]:
    async def on_rollout(d: Delivery) -> None:
        req: events_pb2.RolloutRequested = d.message  # type: ignore[assignment]
        try:
            group, usage = await explorer.rollout_judged(req)
        except NEVER_SUCCEEDS as e:
            raise PoisonMessage(str(e)) from None
        await bus.publish("rollout.completed", events_pb2.RolloutCompleted(
            group=group, evaluation=req.evaluation, task=req.task, attribute=req.attribute,
            step_labeler=req.step_labeler, step_label_skip=req.step_label_skip, role_usage=usage,
            experience_extractor=req.experience_extractor, experience_key=req.experience_key), key=req.job_id)

    async def on_explore(d: Delivery) -> None:
        req: events_pb2.ExploreRequested = d.message  # type: ignore[assignment]
        try:
            walks, usage = await explorer.walks_counted(req)
        except NEVER_SUCCEEDS as e:
            raise PoisonMessage(str(e)) from None
        await bus.publish("explore.completed", events_pb2.ExploreCompleted(
            request_id=req.request_id, env_id=req.env_id, seed_task_id=req.seed_task_id, walks=walks,
            max_calls_per_task=req.max_calls_per_task, task_writer=req.task_writer, feasibility=req.feasibility,
            role_usage=usage),
            key=req.request_id)

    return {"explorer-explore-requested": on_explore, "explorer-rollout-requested": on_rollout}
