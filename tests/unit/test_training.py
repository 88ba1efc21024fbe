"""Advantages for attributed groups and the TRL-based LoRA update, on a real tiny transformer."""

from __future__ import annotations

import pytest
import torch

from evolver.algorithms.adca import AdcaConfig, grpo_outcome_advantages
from services.trainer.advantages import Sample, group_samples, imitation_samples, token_balance
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
    # float32: this checks resume exactness, and bfloat16 kernels on a CPU need not repeat a step
    # bit for bit (seen once at 1e-4); the bfloat16 path has tests of its own below.
    upd = PolicyUpdater(tiny_model_dir, learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.001, epsilon=0.2,
                        epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0, compute_dtype=torch.float32)
    good = Sample("a", "g", [1, 2, 3, 40, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0.0] * 6, False, False, 1.0)
    bad = Sample("b", "g", [1, 2, 3, 50, 51, 52], [0, 0, 0, 1, 1, 1], [0, 0, 0, -1, -1, -1], [0.0] * 6, False, False, 0.0)
    before_good, before_bad = _logp(upd, good), _logp(upd, bad)
    for _ in range(4):
        metrics = upd.update([good, bad])
    assert upd.version == 4 and metrics["samples"] == 2 and metrics["tokens"] == 6
    assert _logp(upd, good) > before_good and _logp(upd, bad) < before_bad

    blob = upd.checkpoint_blob()
    again = PolicyUpdater(tiny_model_dir, learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.001, epsilon=0.2,
                          epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0, seed=7,
                          compute_dtype=torch.float32)
    again.restore(blob)
    assert again.version == 4
    assert _logp(again, good) == pytest.approx(_logp(upd, good), abs=1e-5)
    upd.update([good, bad])
    again.update([good, bad])  # same optimizer state -> the same next step
    assert _logp(again, good) == pytest.approx(_logp(upd, good), abs=1e-4)
    assert len(upd.adapter_blob()) > 1000


def test_token_balance_says_when_longer_failures_outweigh_a_success_per_token():
    win = Sample("w", "g", [1, 2, 3, 4], [0, 1, 1, 0], [0.0, 1.0, 1.0, 0.0], [0.0] * 4, True, False, 1.0)
    lose = Sample("l", "g", [1, 2, 3, 4, 5, 6], [0, 1, 1, 1, 1, 1], [0.0] + [-1.0] * 5, [0.0] * 6, True, False, 0.0)
    b = token_balance([win, lose])  # sequence advantages +1 / -1, but 2 policy tokens against 5
    assert b["token_advantage_mean"] == pytest.approx((2 - 5) / 7)
    assert b["policy_tokens_positive"] == 2 and b["policy_tokens_negative"] == 5
    assert token_balance([win])["token_advantage_mean"] == 1.0 and token_balance([])["policy_tokens_negative"] == 0.0


def test_imitation_samples_are_the_successes_once_each_with_advantage_one_on_policy_tokens():
    win = Sample("t1", "g", [1, 2, 3, 4], [0, 1, 0, 1], [0.0, -0.3, 0.0, 0.2], [0.0, -1.0, 0.0, -2.0], True, True, 1.0)
    lose = Sample("t2", "g", [1, 2, 5], [0, 1, 1], [0.0, -1.0, -1.0], [0.0] * 3, True, False, 0.0)
    out = imitation_samples([win, lose, win], {"t1"})
    assert [s.trajectory_id for s in out] == ["t1"]
    assert out[0].advantages == [0.0, 1.0, 0.0, 1.0] and out[0].token_ids == win.token_ids
    assert out[0].guided and not out[0].logprobs_exact
    assert imitation_samples([lose], {"t1"}) == []


# --- AgentEvolver's loss (spec 4.6): asymmetric clip, guided upper clip, dual clip ------------

def _loss_at_ratios(upd: PolicyUpdater, ratios: list[float], advantages: list[float], *, guided: bool) -> float:
    """TRL's loss (through our subclass) on one sample whose tokens sit at the given ratios
    pi/pi_old: the old log-probs are set to the current ones minus log(ratio)."""
    n = len(ratios)
    s = Sample("t", "g", [1, 2, 3] + [40 + i for i in range(n)], [0, 0, 0] + [1] * n, [0.0] * 3 + advantages,
               [0.0] * (3 + n), True, guided, 0.0)
    inputs = build_inputs([s], upd.pad_id, epsilon_high=upd.epsilon_high, off_cliprange_high=upd.off_cliprange_high)
    current = upd._recompute_old(inputs)
    inputs["old_per_token_logps"] = current - torch.log(torch.tensor([ratios]))
    with torch.no_grad():
        return float(upd.trainer.compute_loss(upd.model, inputs))


def _hand(ratios, advantages, *, low=0.2, high=0.28, c=None) -> float:
    """-min(r*A, clip(r, 1-low, 1+high)*A), then for A < 0 at most -A*c; the token mean."""
    out = []
    for r, a in zip(ratios, advantages):
        loss = -min(r * a, min(max(r, 1 - low), 1 + high) * a)
        if c is not None and a < 0:
            loss = min(loss, -a * c)
        out.append(loss)
    return sum(out) / len(out)


@pytest.fixture(scope="module")
def updaters(tiny_model_dir):
    kw = dict(learning_rate=1e-3, lora_r=4, lora_alpha=8, beta=0.0, epsilon=0.2, epsilon_high=0.28,
              off_cliprange_high=0.6, temperature=1.0)
    return PolicyUpdater(tiny_model_dir, **kw), PolicyUpdater(tiny_model_dir, clip_ratio_c=None, **kw)


@pytest.mark.parametrize("ratios,advantages", [
    ([1.5], [1.0]),     # positive advantage above 1+0.28: the asymmetric upper clip binds
    ([0.5], [1.0]),     # positive advantage below: min takes the ratio itself
    ([0.5], [-1.0]),    # negative advantage below 1-0.2: the lower clip binds
    ([5.0], [-1.0]),    # negative advantage far above: only the dual clip (c=3) bounds it
    ([1.5, 5.0, 0.5, 2.0], [1.0, -2.0, -1.0, 0.5]),
])
def test_the_loss_is_the_hand_computed_dual_clip_ppo_loss(updaters, ratios, advantages):
    dual, plain = updaters
    assert _loss_at_ratios(dual, ratios, advantages, guided=False) == pytest.approx(_hand(ratios, advantages, c=3.0), abs=1e-5)
    assert _loss_at_ratios(plain, ratios, advantages, guided=False) == pytest.approx(_hand(ratios, advantages), abs=1e-5)


def test_each_clip_changes_the_loss(updaters):
    dual, plain = updaters
    # dual clip: a negative advantage at ratio 5 costs 3 instead of 5
    assert _loss_at_ratios(plain, [5.0], [-1.0], guided=False) == pytest.approx(5.0, abs=1e-5)
    assert _loss_at_ratios(dual, [5.0], [-1.0], guided=False) == pytest.approx(3.0, abs=1e-5)
    # asymmetric clip: a positive advantage at ratio 1.5 is clipped at 1.28 (not 1.2)
    assert _loss_at_ratios(dual, [1.5], [1.0], guided=False) == pytest.approx(-1.28, abs=1e-5)
    # guided trajectories: the wider upper clip (1 + 0.6) lets ratio 1.5 through
    assert _loss_at_ratios(dual, [1.5], [1.0], guided=True) == pytest.approx(-1.5, abs=1e-5)
    assert _loss_at_ratios(dual, [1.9], [1.0], guided=True) == pytest.approx(-1.6, abs=1e-5)


def test_a_dual_clip_that_would_cut_positive_advantages_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="clip_ratio_c"):
        PolicyUpdater(tiny_model_dir, learning_rate=1e-3, lora_r=4, lora_alpha=8, beta=0.0, epsilon=0.2,
                      epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0, clip_ratio_c=1.5)


def test_mini_batches_step_the_optimizer_per_share_against_fixed_behaviour_logprobs(tiny_model_dir):
    kw = dict(learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.001, epsilon=0.2, epsilon_high=0.28,
              off_cliprange_high=0.6, temperature=1.0)
    samples = [Sample(f"s{i}", "g", [1, 2, 3, 40 + i, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1] if i % 2 else
                      [0, 0, 0, -1, -1, -1], [0.0] * 6, False, False, 1.0) for i in range(4)]
    one, four = PolicyUpdater(tiny_model_dir, **kw), PolicyUpdater(tiny_model_dir, **kw)
    steps, prepared_at = [], []
    opt_step = four.trainer.optimizer.step
    four.trainer.optimizer.step = lambda *a, **k: (steps.append(1), opt_step(*a, **k))[1]
    prep = four._prepared
    four._prepared = lambda chunk, **kw: (prepared_at.append(len(steps)), prep(chunk, **kw))[1]
    m1 = one.update(samples, micro_batch=1)
    m4 = four.update(samples, micro_batch=1, mini_batches=4)
    assert m1["optimizer_steps"] == 1 and m4["optimizer_steps"] == 4 and len(steps) == 4
    assert one.version == four.version == 1  # one training step either way
    # every micro-batch's behaviour (recomputed: not exact) and reference log-probs were taken
    # before the first optimizer step
    assert prepared_at == [0, 0, 0, 0]
    moved = [float((a - b).detach().abs().sum()) for (_, a), (_, b) in zip(
        [(k, v) for k, v in one.model.named_parameters() if v.requires_grad],
        [(k, v) for k, v in four.model.named_parameters() if v.requires_grad])]
    assert sum(moved) > 0  # four steps land elsewhere than one


def test_gradient_checkpointing_gives_the_same_step(tiny_model_dir):
    kw = dict(learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.0, epsilon=0.2, epsilon_high=0.28,
              off_cliprange_high=0.6, temperature=1.0)
    s = Sample("a", "g", [1, 2, 3, 40, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0.0] * 6, False, False, 1.0)
    plain, ckpt = PolicyUpdater(tiny_model_dir, **kw), PolicyUpdater(tiny_model_dir, gradient_checkpointing=True, **kw)
    a, b = plain.update([s]), ckpt.update([s])
    assert a["grad_norm"] > 0 and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    assert _logp(ckpt, s) == pytest.approx(_logp(plain, s), abs=1e-4)


def test_old_logprobs_are_the_behaviour_ones_in_float32_and_recomputed_in_bfloat16(tiny_model_dir):
    """The importance ratio's denominator: exact behaviour log-probs agree with a float32 trainer
    to ~1e-5 nats and are used as they are; in bfloat16 they differ by ~0.05 (up to 0.23 on
    SmolLM2, bench/logprob_agreement.py), so a bfloat16 trainer recomputes them, as
    AgentEvolver's actor does. Its frozen base weights are bfloat16, its LoRA weights float32."""
    kw = dict(learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.0, epsilon=0.2, epsilon_high=0.28,
              off_cliprange_high=0.6, temperature=1.0)
    s = Sample("a", "g", [1, 2, 3, 40, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0.0, 0, 0, -5, -5, -5],
               True, False, 1.0)
    f32 = PolicyUpdater(tiny_model_dir, compute_dtype=torch.float32, **kw)
    bf16 = PolicyUpdater(tiny_model_dir, compute_dtype=torch.bfloat16, **kw)
    assert not f32.recompute_old and bf16.recompute_old
    assert f32._prepared([s])["old_per_token_logps"][0].tolist() == [-5, -5, -5]
    old = bf16._prepared([s])["old_per_token_logps"][0]
    assert old.tolist() != [-5, -5, -5]
    assert old.float().tolist() == pytest.approx(bf16.recompute_logprobs(s), abs=1e-6)
    dtypes = {n: p.dtype for n, p in bf16.model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if "lora_" not in n} == {torch.bfloat16}
    assert PolicyUpdater(tiny_model_dir, compute_dtype=torch.bfloat16, recompute_old=False, **kw)._prepared(
        [s])["old_per_token_logps"][0].tolist() == [-5, -5, -5]


def test_a_lagged_sample_is_recomputed_under_the_weights_that_generated_it(tiny_model_dir):
    """The asynchronous pipeline trains groups one version behind: their ratio must stay the
    importance weight, so their old log-probs are recomputed under the version that generated
    them (kept for keep_versions versions, and in the checkpoint), not the current weights."""
    kw = dict(learning_rate=5e-2, lora_r=4, lora_alpha=8, beta=0.0, epsilon=0.2, epsilon_high=0.28,
              off_cliprange_high=0.6, temperature=1.0, compute_dtype=torch.bfloat16, keep_versions=2)
    upd = PolicyUpdater(tiny_model_dir, **kw)

    def at(version):
        return Sample("a", "g", [1, 2, 3, 40, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1],
                      [0.0, 0, 0, -5, -5, -5], True, False, 1.0, version)
    at_v0 = upd.recompute_logprobs(at(0))
    upd.update([at(0)])
    assert upd.version == 1 and upd.recompute_logprobs(at(1)) != pytest.approx(at_v0, abs=1e-3)  # it moved
    assert upd._prepared([at(0)])["old_per_token_logps"][0].tolist() == pytest.approx(at_v0, abs=1e-6)
    assert upd._prepared([at(1)])["old_per_token_logps"][0].tolist() == pytest.approx(
        upd.recompute_logprobs(at(1)), abs=1e-6)
    mixed = upd._prepared([at(0), at(1)])["old_per_token_logps"]  # one micro-batch, two versions
    assert mixed[0].tolist() == pytest.approx(at_v0, abs=1e-2) and mixed[1].tolist() != pytest.approx(at_v0, abs=1e-3)
    upd.update([at(1)])
    upd.update([at(2)])  # version 3: version 0 is no longer kept, its exact behaviour log-probs stand
    assert sorted(upd._weights_at) == [2, 3]
    assert upd._prepared([at(0)])["old_per_token_logps"][0].tolist() == [-5, -5, -5]
    again = PolicyUpdater(tiny_model_dir, **kw)
    again.restore(upd.checkpoint_blob())
    assert again._prepared([at(2)])["old_per_token_logps"][0].tolist() == pytest.approx(
        upd._prepared([at(2)])["old_per_token_logps"][0].tolist(), abs=1e-6)


def test_on_policy_rows_take_their_old_logprobs_from_the_loss_forward(tiny_model_dir):
    """Before the step's first optimizer step, a row generated by the current weights has as old
    log-probs exactly what the loss's own forward computes: that forward supplies them (ratio 1)
    instead of a separate no-grad one. Lagged rows, and rows of later mini-batches, still get
    theirs from a no-grad forward taken before the first optimizer step."""
    kw = dict(learning_rate=5e-2, lora_r=4, lora_alpha=8, beta=0.0, epsilon=0.2, epsilon_high=0.28,
              off_cliprange_high=0.6, temperature=1.0, compute_dtype=torch.bfloat16, keep_versions=2)

    def at(version, i=0, adv=1.0):
        return Sample(f"s{i}", "g", [1, 2, 3, 40 + i, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, adv, adv, adv],
                      [0.0, 0, 0, -5, -5, -5], True, False, 1.0, version)

    def counting(upd):
        calls, forward = [], upd._recompute_old
        upd._recompute_old = lambda inputs: (calls.append(inputs["prompt_ids"].shape[0]), forward(inputs))[1]
        return calls

    reused, separate = PolicyUpdater(tiny_model_dir, **kw), PolicyUpdater(tiny_model_dir, **kw)
    prep = separate._prepared
    separate._prepared = lambda chunk, first_share=False: prep(chunk)  # the path before this change
    calls_reused, calls_separate = counting(reused), counting(separate)
    batch = [at(0, 0, 1.0), at(0, 1, -1.0)]
    m_reused, m_separate = reused.update(batch), separate.update(batch)
    assert calls_reused == [] and calls_separate == [2]  # one no-grad forward saved per micro-batch
    assert m_reused["loss"] == pytest.approx(m_separate["loss"], abs=1e-3)
    for (_, a), (_, b) in zip(reused._trainable().items(), separate._trainable().items()):
        assert torch.allclose(a, b, atol=1e-3)  # the same step
    # at version 1: a lagged row (version 0) is recomputed under version 0's weights, the
    # current one comes from the forward; with two mini-batches the second share's rows are
    # recomputed before the first optimizer step
    calls_reused.clear()
    m = reused.update([at(0, 0, 1.0), at(1, 1, -1.0)], micro_batch=2)
    assert calls_reused == [2]  # once, for the lagged row (the batch's forward runs whole)
    assert m["lagged_samples"] == 1 and m_reused["lagged_samples"] == 0
    calls_reused.clear()
    reused.update([at(2, 0, 1.0), at(2, 1, -1.0)], micro_batch=1, mini_batches=2)
    assert calls_reused == [1]  # the second share's row only


def test_only_the_policys_tokens_are_projected_through_the_vocabulary_and_the_step_is_unchanged(tiny_model_dir, monkeypatch):
    """The vocabulary projection (TRL's fused LM head) runs on the policy's tokens only, not on
    the prompt and the observations (on a CPU, TRL projected every position: 44% of a step on
    SmolLM2 for ~5% of the positions). The masked loss never used the others, so the step is
    the one TRL's own path takes."""
    from trl.trainer import utils as trl_utils
    kw = dict(learning_rate=5e-2, lora_r=4, lora_alpha=8, beta=0.01, epsilon=0.2, epsilon_high=0.28,
              off_cliprange_high=0.6, temperature=1.0, compute_dtype=torch.float32)
    # prompt 4, then two turns: 3 policy tokens, a 5-token observation, 2 policy tokens
    ids = [1, 2, 3, 4, 40, 41, 42, 5, 6, 7, 8, 9, 43, 44]
    mask = [0] * 4 + [1, 1, 1] + [0] * 5 + [1, 1]
    batch = [Sample(f"s{i}", "g", ids[:len(ids) - i], mask[:len(ids) - i], [float(m) * (1 - 2 * i) for m in mask][:len(ids) - i],
                    [0.0] * (len(ids) - i), False, False, 1.0) for i in range(2)]
    ours, trls = PolicyUpdater(tiny_model_dir, **kw), PolicyUpdater(tiny_model_dir, **kw)
    trls.trainer.score_policy_tokens_only = False  # TRL's labels: every completion position
    projected = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *a: (projected.append(hidden.shape[0]), apply(hidden, *a))[1])
    m_ours = ours.update(batch, micro_batch=2)
    policy_tokens = sum(sum(s.loss_mask) for s in batch)
    # the reference's forward, then the loss's (which also gives the inexact rows' old log-probs)
    assert projected == [policy_tokens] * 2
    projected.clear()
    m_trl = trls.update(batch, micro_batch=2)
    assert min(projected) > policy_tokens  # TRL's path: the observations too (and the prompt on a CPU before)
    for key in ("loss", "grad_norm", "kl", "entropy"):
        assert m_ours[key] == pytest.approx(m_trl[key], rel=1e-4, abs=1e-6), key
    for (_, a), (_, b) in zip(ours._trainable().items(), trls._trainable().items()):
        assert torch.allclose(a, b, atol=1e-6)


def test_an_anchored_reference_is_the_policy_at_the_anchor_and_survives_resume(tiny_model_dir):
    """kl_reference: warm_start. Before the anchor the KL term's reference is the base model;
    after it, the policy as it was at the anchor (not the current one, not the base), also in a
    run resumed from the checkpoint."""
    kw = dict(learning_rate=5e-2, lora_r=4, lora_alpha=8, beta=0.1, epsilon=0.2, epsilon_high=0.28,
              off_cliprange_high=0.6, temperature=1.0, compute_dtype=torch.float32)
    upd = PolicyUpdater(tiny_model_dir, **kw)
    s = Sample("a", "g", [1, 2, 3, 40, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0.0] * 6, False, False, 1.0)
    scored = slice(1, 4)  # the completion's policy positions (the first token is the prompt's last)

    def ref():
        return upd._prepared([s])["ref_per_token_logps"][0].tolist()[scored]

    base = upd.recompute_logprobs(s)[scored]
    upd.update([s], supervised=True)  # a warm start
    warm = upd.recompute_logprobs(s)[scored]
    assert warm != pytest.approx(base, abs=1e-3) and upd.reference == "base"
    assert ref() == pytest.approx(base, abs=1e-5)
    upd.anchor_reference()
    assert upd.reference == "anchored" and ref() == pytest.approx(warm, abs=1e-5)
    first = upd.update([s])  # RL from the anchor: the policy is its own reference, no KL yet
    assert first["kl"] == pytest.approx(0.0, abs=1e-5)
    assert upd.recompute_logprobs(s)[scored] != pytest.approx(warm, abs=1e-3)  # the policy moved on...
    assert ref() == pytest.approx(warm, abs=1e-5)  # ...its reference did not
    assert upd.update([s])["kl"] > 1e-4
    again = PolicyUpdater(tiny_model_dir, **kw)
    again.restore(upd.checkpoint_blob())
    assert again.reference == "anchored"
    assert again._prepared([s])["ref_per_token_logps"][0].tolist()[scored] == pytest.approx(warm, abs=1e-5)
