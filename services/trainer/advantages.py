"""Attributed rollout groups -> training samples with per-token advantages (pure).

Attributing on: ADCA-GRPO from the step labels (evolver.algorithms.adca). Attributing off, or a
trajectory without labels: plain GRPO, the group-normalised outcome on every action token; ADCA
with alpha = 0 gives exactly that, so both paths share one implementation. Trajectories that
failed for infrastructure reasons take no part: no sample, no statistic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evolver.algorithms.adca import AdcaConfig, step_advantages, token_advantages
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import events_pb2


@dataclass
class Sample:
    trajectory_id: str
    group_id: str
    token_ids: list[int]
    loss_mask: list[int]
    advantages: list[float]
    behaviour_logprobs: list[float]
    logprobs_exact: bool
    guided: bool  # had experiences injected: trained with the wider upper clip
    reward: float
    policy_version: int | None = None  # the version that generated it (None: unknown)


def token_balance(samples: Sequence[Sample]) -> dict[str, float]:
    """Where a token-level loss (TRL's bnpo: every policy token weighs the same) pushes. Group
    advantages sum to zero per trajectory, not per token: when failing attempts are longer than
    successful ones, token_advantage_mean < 0 and tokens both share (the call format) are pushed
    down on balance. Mean policy tokens of positive- and negative-advantage samples say why."""
    tokens = [(a, m) for s in samples for a, m in zip(s.advantages, s.loss_mask) if m]
    def mean_len(sign: int) -> float:
        lens = [sum(s.loss_mask) for s in samples
                if sign * sum(a for a, m in zip(s.advantages, s.loss_mask) if m) > 0]
        return sum(lens) / len(lens) if lens else 0.0
    return {"token_advantage_mean": sum(a for a, _ in tokens) / len(tokens) if tokens else 0.0,
            "policy_tokens_positive": mean_len(1), "policy_tokens_negative": mean_len(-1)}


def completion_sample(c, advantage: float = 1.0, trajectory_id: str = "t") -> Sample:
    """One generated completion (prompt_token_ids, token_ids, logprobs, logprobs_exact) as a
    sample: the completion's tokens are the policy's, each with `advantage`. For benchmarks and
    checks that score or train on raw completions rather than attributed rollouts."""
    n_prompt, n = len(c.prompt_token_ids), len(c.token_ids)
    mask = [0] * n_prompt + [1] * n
    logprobs = list(c.logprobs) if c.logprobs is not None else [0.0] * n
    return Sample(trajectory_id, "g", list(c.prompt_token_ids) + list(c.token_ids), mask,
                  [advantage * m for m in mask], [0.0] * n_prompt + logprobs,
                  bool(c.logprobs_exact) and c.logprobs is not None, False, 1.0 if advantage > 0 else 0.0)


@dataclass
class GroupStats:
    good_steps: int = 0
    bad_steps: int = 0
    valid: int = 0
    infra_failed: int = 0


def group_samples(event: events_pb2.RolloutAttributed, cfg: AdcaConfig, *, attributing: bool,
                  alpha: float | None = None) -> tuple[list[Sample], GroupStats]:
    trajs = list(event.group.trajectories)
    labels = {a.trajectory_id: [lab == apb.STEP_LABEL_GOOD for lab in a.labels] for a in event.attributions}
    stats = GroupStats()
    valid = []
    for t in trajs:
        ok = not t.infra_failure.reason and any(r.token_ids for r in records(t))
        valid.append(ok)
        stats.infra_failed += 0 if ok else 1
    stats.valid = sum(valid)
    n_steps = [max([s for r in records(t) for s in r.step_ids if s >= 0], default=-1) + 1 for t in trajs]
    use_labels = attributing and all(t.trajectory_id in labels for t, ok in zip(trajs, valid) if ok)
    flags: list[Sequence[bool]] = []
    for t, ok, n in zip(trajs, valid, n_steps):
        f = labels.get(t.trajectory_id, []) if use_labels and ok else []
        f = (list(f) + [True] * n)[:n]  # one flag per trained step (labels cover recorded steps)
        flags.append(f)
        if use_labels and ok:
            stats.good_steps += sum(f)
            stats.bad_steps += len(f) - sum(f)
    rewards = [t.reward.score for t in trajs]
    adv = step_advantages(flags, rewards, cfg, alpha=(alpha if use_labels else 0.0), valid=valid)
    samples = []
    for t, a in zip(trajs, adv):
        if a is None:
            continue
        for tok in records(t):  # one sample per attempt, or per turn when the template rewrote history
            samples.append(Sample(t.trajectory_id, event.group.group_id, list(tok.token_ids), list(tok.loss_mask),
                                  token_advantages(a, list(tok.step_ids)), list(tok.behaviour_logprobs),
                                  tok.logprobs_exact, bool(t.experience_ids), t.reward.score,
                                  t.policy_version))
    return samples, stats


def records(t) -> list:
    """An attempt's exact token records: its per-turn records when its context template
    rewrote history, else its one whole-episode record."""
    return list(t.turn_records) if len(t.turn_records) else [t.tokens]


def imitation_samples(samples: Sequence[Sample], successes: set[str]) -> list[Sample]:
    """The successful trajectories among samples as supervised samples: each once, advantage 1
    on every token the policy produced (its loss mask), 0 elsewhere."""
    seen: set[tuple[str, int]] = set()
    out = []
    for s in samples:
        key = (s.trajectory_id, hash(tuple(s.token_ids)))  # a per-turn attempt has one sample per turn
        if s.trajectory_id in successes and key not in seen:
            seen.add(key)
            out.append(Sample(s.trajectory_id, s.group_id, s.token_ids, s.loss_mask, [float(m) for m in s.loss_mask],
                              s.behaviour_logprobs, False, s.guided, s.reward))
    return out


def demonstration_sample(task_id: str, seq) -> Sample:
    """A demonstration's TrainingSequence as a supervised sample (advantage 1 on its policy
    tokens)."""
    return Sample(f"demo.{task_id}", "bootstrap", seq.token_ids, seq.loss_mask, [float(m) for m in seq.loss_mask],
                  seq.behaviour_logprobs, False, False, 1.0)
