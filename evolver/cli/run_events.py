"""What a run put on the bus, read back from the replayable EVENTS stream: counts for the report
and the raw groups for tests and audits (which tasks were rolled out, which experiences were
injected, which groups were attributed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from evolver.bus import Bus, topology
from evolver.models.roles import usage_metrics


@dataclass
class RunEvents:
    completed: list = field(default_factory=list)  # RolloutCompleted of the run
    attributed: list = field(default_factory=list)  # RolloutAttributed of the run
    accepted: list = field(default_factory=list)  # TasksAccepted since the run started
    explored: list = field(default_factory=list)  # ExploreCompleted since the run started
    stored: list = field(default_factory=list)  # ExperienceStored from the run's groups
    policies: list = field(default_factory=list)  # PolicyUpdated of the run
    undecodable: int = 0  # messages in EVENTS that are not valid for their subject (skipped)

    def summary(self) -> dict[str, float]:
        training = [c for c in self.completed if not c.evaluation and not c.demonstration]
        demonstrations = [c for c in self.completed if c.demonstration]
        trajs = [t for c in training for t in c.group.trajectories]
        return {
            "walks_explored": float(sum(len(e.walks) for e in self.explored)),
            "tasks_generated": float(sum(a.candidates for a in self.accepted)),
            "tasks_accepted": float(sum(len(a.tasks) for a in self.accepted)),
            "experiences_stored": float(sum(len(s.experiences) for s in self.stored)),
            "experiences_injected": float(sum(len(t.experience_ids) for t in trajs)),
            "guided_trajectories": float(sum(1 for t in trajs if t.experience_ids)),
            "training_groups": float(len(training)),
            "evaluation_groups": float(sum(1 for c in self.completed if c.evaluation)),
            "demonstrations": float(len(demonstrations)),
            "infra_failed_trajectories": float(sum(1 for t in trajs if t.infra_failure.reason)),
            "policy_versions_published": float(len(self.policies)),
            **{f"rejected: {kind}": float(n) for kind, n in sorted(self.rejections().items())},
            # memory's LLM role reports on experience.stored (the trainer never sees it)
            **{k: v for k, v in usage_metrics(u for s in self.stored for u in s.role_usage).items()},
        }

    def rejections(self) -> dict[str, int]:
        """Self-questioning's rejected candidates, counted per reason."""
        from evolver.algorithms.questioning import rejection_kind
        counts: dict[str, int] = {}
        for a in self.accepted:
            for r in a.rejection_reasons:
                counts[rejection_kind(r)] = counts.get(rejection_kind(r), 0) + 1
        return counts


async def read_run_events(bus: Bus, run_id: str, since_s: float = 0.0, idle_s: float = 1.0) -> RunEvents:
    out = RunEvents()
    async for event in bus.replay(">", topology.EVENTS, idle_s=idle_s):
        if event.message is None:  # someone else's bad message: not part of any run's record
            out.undecodable += 1
            continue
        ev, subject = event.message, event.subject
        if event.stored_at and event.stored_at < since_s:
            continue
        if subject == "rollout.completed" and ev.group.run_id == run_id:
            out.completed.append(ev)
        elif subject == "rollout.attributed" and ev.group.run_id == run_id:
            out.attributed.append(ev)
        elif subject == "tasks.accepted":
            out.accepted.append(ev)
        elif subject == "explore.completed":
            out.explored.append(ev)
        elif subject == "experience.stored" and ev.source_group_id.startswith(f"{run_id}."):
            out.stored.append(ev)
        elif subject == "policy.updated" and ev.policy.run_id == run_id:
            out.policies.append(ev)
    return out
