"""Advantages for attributed groups and the TRL-based LoRA update, on a real tiny transformer."""

from __future__ import annotations

import pytest
import torch

from evolver.algorithms.adca import AdcaConfig, grpo_outcome_advantages
from services.trainer.advantages import Sample, group_samples, imitation_samples
from services.trainer.updater import PolicyUpdater, build_inputs
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import events_pb2
from evolver.v1 import trajectory_pb2 as tpb


def _traj(tid: str, reward: float, n_steps: int, *, guided=False, infra=False) -> tpb.Trajectory:
    # prompt(3) then per step: 2 action tokens + 1 observation token
    ids, loss, steps = [1, 2, 3], [0, 0, 0], [-1, -1, -1]
    for k in range(n_steps):
        ids += [10 + k, 11 + k, 5]
        loss += [1, 1, 0]
        steps += [k, k, -1]
    t = tpb.Trajectory(trajectory_id=tid, reward=tpb.Reward(score=reward, success=reward >= 1),
                       tokens=tpb.TokenRecord(token_ids=ids, loss_mask=loss, step_ids=steps,
                                              behaviour_logprobs=[-1.0 if m else 0.0 for m in loss],
                                              logprobs_exact=True))
    t.steps.extend(tpb.Step(index=k) for k in range(n_steps))
    if guided:
        t.experience_ids.append("e1")
    if infra:
        t.infra_failure.reason = "UNAVAILABLE"
    return t


def _event(trajs, labels=None) -> events_pb2.RolloutAttributed:
    ev = events_pb2.RolloutAttributed(group=tpb.RolloutGroup(group_id="g", trajectories=trajs))
    for tid, flags in (labels or {}).items():
        ev.attributions.append(apb.StepAttribution(trajectory_id=tid, labels=[
            apb.STEP_LABEL_GOOD if f else apb.STEP_LABEL_BAD for f in flags]))
    return ev


def test_attributing_off_is_plain_grpo_on_every_action_token():
    ev = _event([_traj("a", 1.0, 2), _traj("b", 0.0, 3), _traj("c", 0.5, 1)],
                labels={"a": [True, False], "b": [False, False, True], "c": [True]})
    samples, stats = group_samples(ev, AdcaConfig(alpha=0.5), attributing=False)
    expected = grpo_outcome_advantages([1.0, 0.0, 0.5])
    for s, e in zip(samples, expected):
        assert [a for a, m in zip(s.advantages, s.loss_mask) if m] == pytest.approx([e] * sum(s.loss_mask))
        assert all(a == 0.0 for a, m in zip(s.advantages, s.loss_mask) if not m)
    assert stats.good_steps == 0 and stats.bad_steps == 0


def test_attributing_on_uses_labels_and_changes_advantages():
    ev = _event([_traj("a", 1.0, 2), _traj("b", 0.0, 2)], labels={"a": [True, False], "b": [False, True]})
    on, stats = group_samples(ev, AdcaConfig(alpha=0.5), attributing=True)
    off, _ = group_samples(ev, AdcaConfig(alpha=0.5), attributing=False)
    assert stats.good_steps == 2 and stats.bad_steps == 2
    assert on[0].advantages != off[0].advantages
    # step 0 of "a" (GOOD) gets more credit than step 1 (BAD) relative to plain GRPO
    a_steps = [on[0].advantages[3], on[0].advantages[6]]
    assert a_steps[0] > a_steps[1]


def test_infrastructure_failures_take_no_part():
    ev = _event([_traj("a", 1.0, 1), _traj("b", 0.0, 1), _traj("x", 0.0, 1, infra=True)])
    samples, stats = group_samples(ev, AdcaConfig(), attributing=False)
    assert [s.trajectory_id for s in samples] == ["a", "b"]
    assert stats.infra_failed == 1
    # statistics over the two valid ones only: +1 and -1
    assert samples[0].advantages[3] == pytest.approx(1.0) and samples[1].advantages[3] == pytest.approx(-1.0)


def test_build_inputs_aligns_completion_and_clip_per_sequence():
    s1 = Sample("a", "g", [1, 2, 3, 9, 9, 5, 9], [0, 0, 0, 1, 1, 0, 1], [0, 0, 0, .5, .5, 0, .5],
                [0, 0, 0, -1, -2, 0, -3], True, False, 1.0)
    s2 = Sample("b", "g", [1, 2, 9, 9], [0, 0, 1, 1], [0, 0, -.5, -.5], [0, 0, -4, -5], True, True, 0.0)
    x = build_inputs([s1, s2], pad_id=0, epsilon_high=0.28, off_cliprange_high=0.6)
    assert x["prompt_ids"].tolist() == [[1, 2, 3], [0, 1, 2]]
    assert x["completion_ids"].tolist() == [[9, 9, 5, 9], [9, 9, 0, 0]]
    assert x["tool_mask"].tolist() == [[1, 1, 0, 1], [1, 1, 0, 0]]
    assert x["old_per_token_logps"][0].tolist() == [-1, -2, 0, -3]
    assert x["epsilon_high"].flatten().tolist() == pytest.approx([0.28, 0.6])


def _logp(updater: PolicyUpdater, sample: Sample) -> float:
    x = build_inputs([sample], updater.pad_id, epsilon_high=0.28, off_cliprange_high=0.6)
    ids = torch.cat([x["prompt_ids"], x["completion_ids"]], 1)
    mask = torch.cat([x["prompt_mask"], x["completion_mask"]], 1)
    with torch.no_grad():
        lp, _, _ = updater.trainer._get_per_token_logps_and_entropies(updater.model, ids, mask, x["completion_ids"].size(1))
    return float((lp * x["tool_mask"]).sum())


def test_update_moves_the_policy_toward_positive_advantage_and_resumes_exactly(tiny_model_dir):
    upd = PolicyUpdater(tiny_model_dir, learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.001, epsilon=0.2,
                        epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0)
    good = Sample("a", "g", [1, 2, 3, 40, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0.0] * 6, False, False, 1.0)
    bad = Sample("b", "g", [1, 2, 3, 50, 51, 52], [0, 0, 0, 1, 1, 1], [0, 0, 0, -1, -1, -1], [0.0] * 6, False, False, 0.0)
    before_good, before_bad = _logp(upd, good), _logp(upd, bad)
    for _ in range(4):
        metrics = upd.update([good, bad])
    assert upd.version == 4 and metrics["samples"] == 2 and metrics["tokens"] == 6
    assert _logp(upd, good) > before_good and _logp(upd, bad) < before_bad

    blob = upd.checkpoint_blob()
    again = PolicyUpdater(tiny_model_dir, learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.001, epsilon=0.2,
                          epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0, seed=7)
    again.restore(blob)
    assert again.version == 4
    assert _logp(again, good) == pytest.approx(_logp(upd, good), abs=1e-5)
    upd.update([good, bad])
    again.update([good, bad])  # same optimizer state -> the same next step
    assert _logp(again, good) == pytest.approx(_logp(upd, good), abs=1e-4)
    assert len(upd.adapter_blob()) > 1000


def test_imitation_samples_are_the_successes_once_each_with_advantage_one_on_policy_tokens():
    win = Sample("t1", "g", [1, 2, 3, 4], [0, 1, 0, 1], [0.0, -0.3, 0.0, 0.2], [0.0, -1.0, 0.0, -2.0], True, True, 1.0)
    lose = Sample("t2", "g", [1, 2, 5], [0, 1, 1], [0.0, -1.0, -1.0], [0.0] * 3, True, False, 0.0)
    out = imitation_samples([win, lose, win], {"t1"})
    assert [s.trajectory_id for s in out] == ["t1"]
    assert out[0].advantages == [0.0, 1.0, 0.0, 1.0] and out[0].token_ids == win.token_ids
    assert out[0].guided and not out[0].logprobs_exact
    assert imitation_samples([lose], {"t1"}) == []
