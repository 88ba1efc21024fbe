"""rollout.completed -> trajectory views for the experience extractor (pure).

Evaluation groups never feed memory (spec B3). Rollouts that failed for infrastructure reasons
are not the policy's behaviour and are skipped."""

from __future__ import annotations

from evolver.memory.experiences import CallOutcome, TrajectoryView
from evolver.v1 import events_pb2, trajectory_pb2


def trajectory_views(event: events_pb2.RolloutCompleted) -> list[TrajectoryView]:
    if event.evaluation or not event.task.query:
        return []
    import json
    views = []
    for t in event.group.trajectories:
        if t.infra_failure.reason:
            continue
        calls = []
        for step in t.steps:
            results = {o.call_id: o for o in step.observations}
            for i, call in enumerate(step.tool_calls):
                obs = results.get(call.call_id) or (step.observations[i] if i < len(step.observations) else None)
                try:
                    args = json.loads(call.arguments_json or "{}")
                except json.JSONDecodeError:
                    args = {}
                calls.append(CallOutcome(call.name, args if isinstance(args, dict) else {},
                                         obs.content if obs else "",
                                         obs is None or obs.kind != trajectory_pb2.OBSERVATION_KIND_RESULT))
        views.append(TrajectoryView(event.task.query, t.reward.success, calls))
    return views
