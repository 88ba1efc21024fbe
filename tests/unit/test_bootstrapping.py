"""Self-bootstrapping: demonstrations are the replayed reference solutions of synthetic train
tasks, rendered exactly as the policy's own turns, and fine-tuning on them moves the policy
toward them. Held-out and test tasks are never demonstration material."""

from __future__ import annotations

import pytest
import torch

from evolver.agent.demonstration import bootstrap_tasks, demonstration
from evolver.models.toolcall import parse_turn
from evolver.v1 import task_pb2
from services.trainer.advantages import Sample
from services.trainer.updater import PolicyUpdater
from tests.bfcl_tasks import mkdir_task
from tests.unit.test_training import _logp


def test_only_synthetic_train_tasks_are_demonstrations():
    ref = [task_pb2.Task().reference_solution.add(name="ls")]
    pool = [task_pb2.Task(task_id="syn-b", split="train", source=task_pb2.TASK_SOURCE_SYNTHETIC, reference_solution=ref),
            task_pb2.Task(task_id="syn-a", split="train", source=task_pb2.TASK_SOURCE_SYNTHETIC, reference_solution=ref),
            task_pb2.Task(task_id="syn-held", split="heldout", source=task_pb2.TASK_SOURCE_SYNTHETIC,
                          reference_solution=ref),
            task_pb2.Task(task_id="multi_turn_base_100", split="test", source=task_pb2.TASK_SOURCE_SEED),
            task_pb2.Task(task_id="multi_turn_base_1", split="train", source=task_pb2.TASK_SOURCE_SEED),
            task_pb2.Task(task_id="syn-noref", split="train", source=task_pb2.TASK_SOURCE_SYNTHETIC)]
    assert [t.task_id for t in bootstrap_tasks(pool, 10)] == ["syn-a", "syn-b"]
    assert [t.task_id for t in bootstrap_tasks(pool, 1)] == ["syn-a"]


async def test_a_demonstration_is_the_reference_as_the_policys_own_turns(bfcl, tokenizer):
    task = await mkdir_task(bfcl)
    demo = await demonstration(tokenizer, bfcl, task, max_tools_shown=3, seed=0)
    seq = demo.sequence
    assert demo.trajectory.reward.success and [s.tool_calls[0].name for s in demo.trajectory.steps[:1]] == ["mkdir"]
    assert len(seq.token_ids) == len(seq.loss_mask) == len(seq.behaviour_logprobs)
    trained = [t for t, m in zip(seq.token_ids, seq.loss_mask) if m]
    turns = tokenizer.decode(trained).split("<|im_end|>")
    parsed = parse_turn(turns[0])
    assert parsed.ok and [(c.name, c.arguments) for c in parsed.calls] == [("mkdir", {"dir_name": "reports"})]
    assert turns[1] == "Done." and turns[2] == ""
    context = tokenizer.decode(seq.token_ids)
    assert task.query in context and "<tool_response>" in context  # the environment's real observation
    assert "<tool_response>" not in tokenizer.decode(trained)  # observations are never trained on
    held = task_pb2.Task()
    held.CopyFrom(task)
    held.split = "heldout"
    with pytest.raises(ValueError, match="never demonstration material"):
        await demonstration(tokenizer, bfcl, held, max_tools_shown=3, seed=0)


async def test_fine_tuning_on_demonstrations_moves_the_policy_toward_them(bfcl, tokenizer, tiny_model_dir):
    seq = (await demonstration(tokenizer, bfcl, await mkdir_task(bfcl), max_tools_shown=3, seed=0)).sequence
    demo = Sample("demo.t", "bootstrap", seq.token_ids, seq.loss_mask, [float(m) for m in seq.loss_mask],
                  seq.behaviour_logprobs, False, False, 1.0)
    upd = PolicyUpdater(tiny_model_dir, learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.001, epsilon=0.2,
                        epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0)
    # The update's dtype is measured, not TRL's bf16 default (40x slower than float32 on AVX2).
    assert upd.trainer.args.bf16 == (upd.compute_dtype == torch.bfloat16)
    before = _logp(upd, demo)
    for _ in range(3):
        upd.update([demo], supervised=True)
    assert _logp(upd, demo) > before + 1.0 and upd.version == 3


async def test_a_supervised_step_is_the_grpo_step_at_ratio_one_with_one_forward_pass(bfcl, tokenizer, tiny_model_dir,
                                                                                     monkeypatch):
    """At the first step the LoRA policy equals the reference (KL 0) and the recomputed old
    log-probs equal the current ones (ratio 1), so the full GRPO step and the supervised step
    (the token-mean NLL) must land on the same weights; the supervised one never runs the extra
    forward passes."""
    seq = (await demonstration(tokenizer, bfcl, await mkdir_task(bfcl), max_tools_shown=3, seed=0)).sequence
    demo = Sample("demo.t", "bootstrap", seq.token_ids, seq.loss_mask, [float(m) for m in seq.loss_mask],
                  seq.behaviour_logprobs, False, False, 1.0)

    def make():
        return PolicyUpdater(tiny_model_dir, learning_rate=5e-3, lora_r=4, lora_alpha=8, beta=0.001, epsilon=0.2,
                             epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0, seed=7)
    full, sup = make(), make()
    full.update([demo])

    def forbidden(*_a, **_k):
        raise AssertionError("a supervised step recomputed log-probs")
    monkeypatch.setattr(sup, "_recompute_old", forbidden)
    monkeypatch.setattr(sup, "_ref_logps", forbidden)
    projected = []  # rows through the vocabulary: the positions that predict a policy token only
    sup.model.get_output_embeddings().register_forward_hook(lambda _m, x, _o: projected.append(x[0].shape[1]))
    m = sup.update([demo], supervised=True)
    assert projected == [sum(seq.loss_mask)] and sum(seq.loss_mask) < len(seq.token_ids) // 4
    assert m["tokens"] == sum(seq.loss_mask)
    assert m["loss"] == pytest.approx(-_logp(make(), demo) / sum(seq.loss_mask), rel=1e-3)  # the NLL per token
    assert abs(_logp(full, demo) - _logp(sup, demo)) < 1e-3 * abs(_logp(full, demo))
    # Its own learning rate for one step: Adam's first step moves each weight by ~lr, so twice
    # the rate moves the adapter twice as far; the optimizer's rate is restored after.
    def moved(lr):
        upd = make()
        before = [p.detach().clone() for p in upd.model.parameters() if p.requires_grad]
        assert upd.update([demo], supervised=True, learning_rate=lr)["learning_rate"] == lr  # reported
        assert [g["lr"] for g in upd.trainer.optimizer.param_groups] == pytest.approx([5e-3] * len(
            upd.trainer.optimizer.param_groups))
        after = [p.detach() for p in upd.model.parameters() if p.requires_grad]
        return sum(float((a - b).abs().sum()) for a, b in zip(after, before))
    assert moved(2e-2) / moved(1e-2) == pytest.approx(2.0, rel=0.1)
    # Without gradient through the prompt: a different (cheaper) step, still toward the demo.
    cheap = make()
    before = _logp(cheap, demo)
    for _ in range(3):
        cheap.update([demo], supervised=True, prompt_grad=False)
    assert _logp(cheap, demo) > before + 1.0
