"""ADCA-GRPO advantages (spec §5.4): hand-computed examples and properties."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolver.algorithms.adca import (BAD, GOOD, AdcaConfig, alpha_at, grpo_outcome_advantages, orm_zscores,
                                     step_advantages, token_advantages)

SIGMA = math.sqrt(0.03 + 1e-8)  # see the worked example below


def test_decouple_last_step_worked_example():
    # Group: A = [GOOD, BAD] with R=1; B = [BAD] with R=0; alpha 0.2, equal trajectory weights.
    # p_A = [0.2, -0.2], p_B = [-0.2]; mu = mean(0, -0.2) = -0.1
    # var = mean(mean(0.3^2, 0.1^2), 0.1^2) = mean(0.05, 0.01) = 0.03; sigma = sqrt(0.03 + 1e-8)
    # z_A = [0.3, -0.1]/sigma, z_B = [-0.1]/sigma; O = [1, -1] (pop std 0.5)
    # c_A = [0.2*z_A0, 0.2*z_A1 + 1]; A_A = suffix sums; c_B = [0.2*z_B0 - 1]
    cfg = AdcaConfig(alpha=0.2)
    a, b = step_advantages([[GOOD, BAD], [BAD]], [1.0, 0.0], cfg)
    zA0, zA1, zB0 = 0.3 / SIGMA, -0.1 / SIGMA, -0.1 / SIGMA
    assert a == pytest.approx([0.2 * zA0 + 0.2 * zA1 + 1.0, 0.2 * zA1 + 1.0])
    assert b == pytest.approx([0.2 * zB0 - 1.0])
    assert a == pytest.approx([1.2309401, 0.8845299], abs=1e-6)
    assert b == pytest.approx([-1.1154701], abs=1e-6)


def test_all_steps_only_prm_and_length_normalisation():
    flags, rewards = [[GOOD, BAD], [BAD]], [1.0, 0.0]
    zA0, zA1, zB0 = 0.3 / SIGMA, -0.1 / SIGMA, -0.1 / SIGMA
    a, b = step_advantages(flags, rewards, AdcaConfig(alpha=0.2, orm_distribution="all_steps"))
    assert a == pytest.approx([(0.2 * zA0 + 1) + (0.2 * zA1 + 1), 0.2 * zA1 + 1])
    assert b == pytest.approx([0.2 * zB0 - 1])
    a, b = step_advantages(flags, rewards, AdcaConfig(orm_distribution="only_prm"))
    assert a == pytest.approx([zA0 + zA1, zA1]) and b == pytest.approx([zB0])
    a, _ = step_advantages(flags, rewards, AdcaConfig(alpha=0.2, length_normalization=True))
    r2 = math.sqrt(2)
    assert a == pytest.approx([(0.2 * zA0) / r2 + (0.2 * zA1 + 1) / r2, (0.2 * zA1 + 1) / r2])


def test_pooled_normalisation_and_no_batch_norm():
    flags, rewards = [[GOOD, BAD], [BAD]], [1.0, 0.0]
    pooled = [0.2, -0.2, -0.2]
    mu = sum(pooled) / 3
    sd = math.sqrt(sum((p - mu) ** 2 for p in pooled) / 3)
    _, b = step_advantages(flags, rewards, AdcaConfig(orm_distribution="only_prm", equal_trajectory_weight=False))
    assert b == pytest.approx([(-0.2 - mu) / sd])
    a, _ = step_advantages(flags, rewards, AdcaConfig(orm_distribution="only_prm", do_batch_norm=False))
    assert a == pytest.approx([0.0, -0.2])


def test_allocation_scheme_raw_rewards_sum_to_plus_or_minus_one():
    from evolver.algorithms.adca import prm_raw
    cfg = AdcaConfig(scheme="allocation", do_batch_norm=False, orm_distribution="only_prm")
    assert prm_raw([GOOD, BAD], 1.0, cfg) == pytest.approx([1.0 / 1.2, 0.2 / 1.2])
    assert prm_raw([GOOD, BAD], 0.0, cfg) == pytest.approx([-0.2 / 1.2, -1.0 / 1.2])
    assert sum(prm_raw([GOOD, GOOD, BAD], 1.0, cfg)) == pytest.approx(1.0)


def test_uniform_flags_fall_back_to_the_outcome():
    # All steps share a flag: sigma = 1e-4 and every z is 0, so A = outcome z-score.
    steps = step_advantages([[GOOD, GOOD], [GOOD]], [1.0, 0.0], AdcaConfig(alpha=0.5))
    assert steps == [pytest.approx([1.0, 1.0]), pytest.approx([-1.0])]


def test_equal_outcomes_give_raw_centred_orm():
    assert orm_zscores([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]
    assert orm_zscores([0.3, 0.3 + 1e-10]) == pytest.approx([-5e-11, 5e-11])


def test_cosine_alpha_schedule():
    cfg = AdcaConfig(alpha=0.2, alpha_min=0.02, alpha_cosine_decay=True)
    assert alpha_at(cfg, 0, 100) == pytest.approx(0.2)
    assert alpha_at(cfg, 50, 100) == pytest.approx(0.11)
    assert alpha_at(cfg, 100, 100) == pytest.approx(0.02)
    assert alpha_at(cfg, 500, 100) == pytest.approx(0.02)
    assert alpha_at(AdcaConfig(alpha=0.3), 50, 100) == 0.3


def test_token_advantages_zero_observation_tokens():
    assert token_advantages([0.7, -0.2], [-1, 0, 0, -1, -1, 1, 1, -1]) == [0, 0.7, 0.7, 0, 0, -0.2, -0.2, 0]


def test_infrastructure_failures_are_excluded_not_zero_scored():
    cfg = AdcaConfig(alpha=0.2)
    base = step_advantages([[GOOD, BAD], [BAD]], [1.0, 0.0], cfg)
    with_failure = step_advantages([[GOOD, BAD], [BAD], [BAD, BAD]], [1.0, 0.0, 0.0], cfg, valid=[True, True, False])
    assert with_failure[2] is None
    assert with_failure[:2] == [pytest.approx(base[0]), pytest.approx(base[1])]


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="orm_distribution"):
        AdcaConfig(orm_distribution="first_step")
    with pytest.raises(ValueError, match="scheme"):
        AdcaConfig(scheme="mix")


groups = st.lists(st.tuples(st.lists(st.booleans(), min_size=1, max_size=6),
                            st.sampled_from([0.0, 0.25, 0.5, 1.0])), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(groups, st.sampled_from(["decouple", "allocation"]))
def test_alpha_zero_is_grpo_on_every_action_token(group, scheme):
    flags, rewards = [f for f, _ in group], [r for _, r in group]
    adv = step_advantages(flags, rewards, AdcaConfig(alpha=0.0, scheme=scheme))
    outcome = grpo_outcome_advantages(rewards)
    for i, steps in enumerate(adv):
        assert steps == pytest.approx([outcome[i]] * len(flags[i]), abs=1e-9)
        step_ids = [-1] + [k for k in range(len(flags[i])) for _ in range(2)] + [-1]
        tokens = token_advantages(steps, step_ids)
        assert [t for t, s in zip(tokens, step_ids) if s >= 0] == pytest.approx([outcome[i]] * 2 * len(flags[i]))


@settings(max_examples=200, deadline=None)
@given(groups, st.floats(0.0, 1.0), st.sampled_from(["last_step", "all_steps", "only_prm"]), st.booleans())
def test_step_advantages_are_suffix_sums_and_prm_is_centred(group, alpha, dist, norm):
    flags, rewards = [f for f, _ in group], [r for _, r in group]
    cfg = AdcaConfig(alpha=alpha, orm_distribution=dist, length_normalization=norm)
    adv = step_advantages(flags, rewards, cfg)
    prm_only = step_advantages(flags, rewards, AdcaConfig(orm_distribution="only_prm"))
    # only_prm step rewards (differences of suffix sums) average to 0 per group, trajectory-weighted.
    means = []
    for steps in prm_only:
        c = [steps[k] - (steps[k + 1] if k + 1 < len(steps) else 0.0) for k in range(len(steps))]
        means.append(sum(c) / len(c))
    assert sum(means) / len(means) == pytest.approx(0.0, abs=1e-6)
    for steps in adv:
        diffs = [steps[k] - steps[k + 1] for k in range(len(steps) - 1)]
        assert all(math.isfinite(x) for x in steps + diffs)
