"""Rollout groups on BFCL in this process: scaffolding, shown tools, batched attempts."""

from __future__ import annotations

from evolver.agent.episode import run_episode
from evolver.agent.rollout import RolloutOptions, run_group, shown_tools
from evolver.models.backend import FakeBackend
from tests.bfcl_tasks import mkdir_task


async def test_first_turn_prefix_is_scaffolding_not_policy_output(bfcl, tokenizer):
    prefix = '<tool_call>\n{"name": "'
    episode = await bfcl.create(seed_task_id="multi_turn_base_0")
    backend = FakeBackend(tokenizer, ['ls", "arguments": {}}\n</tool_call>', "Listed."])
    record = await run_episode(backend, episode, episode.tools, max_steps=2, first_turn_prefix=prefix)
    assert record.steps[0].calls[0].name == "ls" and not record.steps[0].results[0].is_error
    seq = record.conversation.training_sequence()
    trained = tokenizer.decode([t for t, m in zip(seq.token_ids, seq.loss_mask) if m])
    assert prefix not in trained and trained.startswith('ls"')  # the policy's own tokens only
    assert tokenizer.decode(backend.requests[0].prompt_token_ids).endswith(prefix)
    assert not tokenizer.decode(backend.requests[1].prompt_token_ids).endswith(prefix)  # first turn only


async def test_shown_tools_keep_the_reference_tools(bfcl):
    task = await mkdir_task(bfcl)
    ep = await bfcl.create(seed_task_id="multi_turn_base_0")
    shown = shown_tools(ep.tools, task, 3, seed=1)
    await ep.release()
    assert len(shown) == 3 and "mkdir" in {t.name for t in shown}
    assert shown_tools(ep.tools, task, 0, seed=1) == ep.tools


async def test_concurrent_attempts_share_generation_batches(bfcl, tiny_model_dir):
    from evolver.models.batching import BatchingBackend
    from evolver.models.hf import HFBackend
    task = await mkdir_task(bfcl)
    backend = BatchingBackend(HFBackend(tiny_model_dir))
    opts = RolloutOptions(group_size=4, guided_share=0.0, temperature=1.0, max_steps=2, max_new_tokens=8)
    trajs = await run_group(backend, bfcl, task, opts, group_id="g2")
    assert [t.trajectory_id for t in trajs] == [f"g2.r{i}" for i in range(4)]
    assert all(not t.infra_failure.reason and len(t.tokens.token_ids) == len(t.tokens.behaviour_logprobs)
               for t in trajs)
    assert max(backend.batches) > 1  # the four attempts' turns were generated together
    assert sum(backend.batches) == sum(len(t.steps) for t in trajs)  # one request per turn
    await backend.aclose()
