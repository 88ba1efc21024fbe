"""ADCA-GRPO advantages, exactly as AgentEvolver computes them (spec §5.4), with its documented
knobs honoured (B6) and one std convention throughout (B16, below).

For trajectory i of a group (the N rollouts of one task) with step labels f_{i,k} and outcome
R_i:
  PRM raw    p_{i,k}: decouple = +fix_base for GOOD, -fix_base for BAD;
                      allocation = sgn_i * w(f_{i,k}) / sum_k w(f_{i,k})
  PRM z      per group (equal trajectory weight: mean of per-trajectory means; or pooled)
  ORM z      O_i = (R_i - mean R) / (pop std R + 1e-12), or R_i - mean R when std <= 1e-8
  combine    c_{i,k} = alpha * z_{i,k} + [k = K_i - 1] * O_i      (last_step)
                     = alpha * z_{i,k} + O_i                      (all_steps)
                     = z_{i,k}                                    (only_prm)
             optionally / sqrt(K_i)                               (length normalisation)
  step adv   A_{i,k} = sum_{j >= k} c_{i,j}                       (undiscounted suffix sum)
  token adv  A_{i, step_ids[t]} on action tokens, 0 on observation tokens (step id -1)

Std convention (B16): AgentEvolver's plain GRPO uses the unbiased std (eps 1e-6) while its ADCA
ORM uses the population std (eps 1e-12). Evolver uses the ADCA convention everywhere, so
attributing off (plain GRPO) equals ADCA with alpha = 0 exactly.

Rollouts that failed for infrastructure reasons are not trajectories of the policy: callers
pass valid=False for them; they get no advantage and take no part in any statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

GOOD, BAD = True, False


@dataclass(frozen=True)
class AdcaConfig:
    scheme: str = "decouple"  # decouple | allocation
    alpha: float = 0.1  # AgentEvolver yaml default (run_overall.sh uses 0.2)
    alpha_min: float = 0.0
    alpha_cosine_decay: bool = False
    orm_distribution: str = "last_step"  # last_step | all_steps | only_prm
    length_normalization: bool = False
    fix_base: float = 0.2
    do_batch_norm: bool = True
    equal_trajectory_weight: bool = True
    consistent_scale: float = 1.0
    pos_unconsistent_scale: float = 0.2
    neg_unconsistent_scale: float = 0.2
    success_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.scheme not in ("decouple", "allocation"):
            raise ValueError(f"scheme must be decouple or allocation, not {self.scheme!r}")
        if self.orm_distribution not in ("last_step", "all_steps", "only_prm"):
            raise ValueError(f"orm_distribution must be last_step, all_steps or only_prm, not {self.orm_distribution!r}")


def alpha_at(cfg: AdcaConfig, step: int, total_steps: int, progress: float | None = None) -> float:
    """alpha_t = alpha_min + (alpha0 - alpha_min)(1 + cos(pi p)) / 2, p = clamp(step/total); or
    the constant alpha when the schedule is off."""
    if not cfg.alpha_cosine_decay:
        return cfg.alpha
    p = progress if progress is not None else (step / total_steps if total_steps > 0 else 1.0)
    p = min(1.0, max(0.0, p))
    return cfg.alpha_min + 0.5 * (cfg.alpha - cfg.alpha_min) * (1 + math.cos(math.pi * p))


def orm_zscores(rewards: Sequence[float]) -> list[float]:
    if not rewards:
        return []
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
    if std > 1e-8:
        return [(r - mean) / (std + 1e-12) for r in rewards]
    return [r - mean for r in rewards]


def grpo_outcome_advantages(rewards: Sequence[float]) -> list[float]:
    """Plain GRPO: the group-normalised outcome (same convention as the ADCA ORM term)."""
    return orm_zscores(rewards)


def prm_raw(flags: Sequence[bool], reward: float, cfg: AdcaConfig) -> list[float]:
    if cfg.scheme == "decouple":
        return [cfg.fix_base if f else -cfg.fix_base for f in flags]
    success = reward > cfg.success_threshold
    w_good, w_bad = ((cfg.consistent_scale, cfg.pos_unconsistent_scale) if success
                     else (cfg.neg_unconsistent_scale, cfg.consistent_scale))
    sgn = 1.0 if success else -1.0
    weights = [w_good if f else w_bad for f in flags]
    total = sum(weights)
    return [sgn * w / total for w in weights] if total > 0 else [0.0] * len(flags)


def prm_zscores(raw: Sequence[Sequence[float]], cfg: AdcaConfig) -> list[list[float]]:
    if not cfg.do_batch_norm:
        return [list(r) for r in raw]
    nonempty = [r for r in raw if r]
    if not nonempty:
        return [[] for _ in raw]
    if cfg.equal_trajectory_weight:
        mu = sum(sum(r) / len(r) for r in nonempty) / len(nonempty)
        var = sum(sum((p - mu) ** 2 for p in r) / len(r) for r in nonempty) / len(nonempty)
        sigma = math.sqrt(var + 1e-8)
    else:
        pooled = [p for r in nonempty for p in r]
        mu = sum(pooled) / len(pooled)
        sigma = max(math.sqrt(sum((p - mu) ** 2 for p in pooled) / len(pooled)), 1e-8)
    return [[(p - mu) / (sigma + 1e-12) for p in r] for r in raw]


def step_advantages(flags: Sequence[Sequence[bool]], rewards: Sequence[float], cfg: AdcaConfig, *,
                    alpha: float | None = None, valid: Sequence[bool] | None = None) -> list[list[float] | None]:
    """Per-step advantages for one group. flags[i] holds trajectory i's step labels. Entries for
    invalid (infrastructure-failed) trajectories are None."""
    if len(flags) != len(rewards):
        raise ValueError("one flag list and one reward per trajectory")
    valid = list(valid) if valid is not None else [True] * len(flags)
    idx = [i for i, ok in enumerate(valid) if ok]
    a = cfg.alpha if alpha is None else alpha
    raw = [prm_raw(flags[i], rewards[i], cfg) for i in idx]
    z = prm_zscores(raw, cfg)
    orm = orm_zscores([rewards[i] for i in idx])
    out: list[list[float] | None] = [None] * len(flags)
    for j, i in enumerate(idx):
        k_i = len(flags[i])
        c = []
        for k in range(k_i):
            if cfg.orm_distribution == "only_prm":
                value = z[j][k]
            elif cfg.orm_distribution == "all_steps":
                value = a * z[j][k] + orm[j]
            else:
                value = a * z[j][k] + (orm[j] if k == k_i - 1 else 0.0)
            c.append(value / math.sqrt(k_i) if cfg.length_normalization else value)
        suffix, acc = [0.0] * k_i, 0.0
        for k in range(k_i - 1, -1, -1):
            acc += c[k]
            suffix[k] = acc
        out[i] = suffix
    return out


def token_advantages(step_adv: Sequence[float], step_ids: Sequence[int]) -> list[float]:
    """Action tokens get their step's advantage; observation and prompt tokens (-1) get 0."""
    return [step_adv[s] if s >= 0 else 0.0 for s in step_ids]
