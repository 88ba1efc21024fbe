"""What one training step's groups add up to: the samples to train on and the step's sums
(reward and success means, step labels, guided, infrastructure failures, episodes cut at the
context length). Pure: the run loop hands it the collected groups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from evolver.algorithms.adca import AdcaConfig
from evolver.models.roles import usage_metrics
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import events_pb2, task_pb2
from services.trainer.advantages import Sample, group_samples


@dataclass
class StepTally:
    samples: list[Sample] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)  # valid trajectories only
    successes: list[float] = field(default_factory=list)
    good: int = 0
    bad: int = 0
    infra: int = 0
    guided: int = 0
    exhausted: int = 0  # episodes the server ended at the model's context length
    own_successes: set[str] = field(default_factory=set)  # successful trajectories of synthetic train tasks
    role_usage: list = field(default_factory=list)  # RoleUsage of the LLM roles that labelled these groups
    llm_labelled: int = 0  # trajectories whose labels came from the LLM
    compared: int = 0  # LLM-labelled steps that also have state-progress labels
    agreed: int = 0  # ... on which the two agree
    llm_good: int = 0  # ... that the LLM labelled GOOD
    progress_good: int = 0  # ... that state progress labelled GOOD (with llm_good: is the labeller constant?)

    def metrics(self, *, alpha: float, groups: int) -> dict[str, float]:
        n = len(self.rewards) or 1
        labelled = self.good + self.bad
        out = dict(reward_mean=sum(self.rewards) / n, success_rate=sum(self.successes) / n,
                   trajectories=len(self.rewards), infra_failed=self.infra, guided_trajectories=self.guided,
                   good_steps=self.good, bad_steps=self.bad, good_rate=self.good / labelled if labelled else 0.0,
                   alpha=alpha, groups=groups, context_exhausted=self.exhausted)
        if self.role_usage:
            out |= usage_metrics(self.role_usage)
            out |= dict(llm_labelled_trajectories=self.llm_labelled, label_compared_steps=self.compared,
                        label_agreed_steps=self.agreed, label_llm_good_steps=self.llm_good,
                        label_progress_good_steps=self.progress_good)
        return out


def tally(groups: Sequence[events_pb2.RolloutAttributed], cfg: AdcaConfig, *, attributing: bool,
          alpha: float) -> StepTally:
    t = StepTally()
    for g in groups:
        t.role_usage += g.role_usage
        for a in g.attributions:
            if a.method == apb.ATTRIBUTION_METHOD_LLM_JUDGE:
                t.llm_labelled += 1
                if a.state_progress_labels:
                    t.compared += len(a.labels)
                    t.agreed += sum(x == y for x, y in zip(a.labels, a.state_progress_labels))
                    t.llm_good += sum(x == apb.STEP_LABEL_GOOD for x in a.labels)
                    t.progress_good += sum(x == apb.STEP_LABEL_GOOD for x in a.state_progress_labels)
        s, st = group_samples(g, cfg, attributing=attributing, alpha=alpha)
        t.samples += s
        t.good, t.bad, t.infra = t.good + st.good_steps, t.bad + st.bad_steps, t.infra + st.infra_failed
        for traj in g.group.trajectories:
            t.exhausted += traj.context_exhausted
            if traj.infra_failure.reason:
                continue
            t.rewards.append(traj.reward.score)
            t.successes.append(1.0 if traj.reward.success else 0.0)
            t.guided += bool(traj.experience_ids)
            if traj.reward.success and g.task.split == "train" and g.task.source == task_pb2.TASK_SOURCE_SYNTHETIC:
                t.own_successes.add(traj.trajectory_id)
    return t
