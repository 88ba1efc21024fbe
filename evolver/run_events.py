"""What a run put on the bus, read back from the replayable EVENTS stream: counts for the report
and the raw groups for tests and audits (which tasks were rolled out, which experiences were
injected, which groups were attributed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.js import api

from evolver.bus import Bus, topology
from evolver.errors import PoisonMessage


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
        training = [c for c in self.completed if not c.evaluation]
        trajs = [t for c in training for t in c.group.trajectories]
        return {
            "walks_explored": float(sum(len(e.walks) for e in self.explored)),
            "tasks_generated": float(sum(a.candidates for a in self.accepted)),
            "tasks_accepted": float(sum(len(a.tasks) for a in self.accepted)),
            "experiences_stored": float(sum(len(s.experiences) for s in self.stored)),
            "experiences_injected": float(sum(len(t.experience_ids) for t in trajs)),
            "guided_trajectories": float(sum(1 for t in trajs if t.experience_ids)),
            "training_groups": float(len(training)),
            "evaluation_groups": float(len(self.completed) - len(training)),
            "infra_failed_trajectories": float(sum(1 for t in trajs if t.infra_failure.reason)),
            "policy_versions_published": float(len(self.policies)),
        }


async def read_run_events(bus: Bus, run_id: str, since_s: float = 0.0, idle_s: float = 1.0) -> RunEvents:
    out = RunEvents()
    sub = await bus.js.subscribe(">", stream=topology.EVENTS.name, ordered_consumer=True,
                                 deliver_policy=api.DeliverPolicy.ALL)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except TimeoutError:
                break
            meta = msg.metadata
            if meta.timestamp and meta.timestamp.timestamp() < since_s:
                if meta.num_pending == 0:
                    break
                continue
            try:
                ev = await bus.decode(msg.subject, msg.data, msg.headers)
            except PoisonMessage:  # someone else's bad message: not part of any run's record
                out.undecodable += 1
                if meta.num_pending == 0:
                    break
                continue
            subject = msg.subject
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
            if meta.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out
