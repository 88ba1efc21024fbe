"""Rollout groups on BFCL in this process: scaffolding, shown tools, batched attempts."""

from __future__ import annotations

import pytest

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


async def test_a_request_whose_caller_gave_up_is_not_generated(tokenizer):
    """An LLM role's call that timed out while queued behind a running batch costs nothing."""
    import asyncio

    from evolver.models.backend import GenerationRequest, SamplingParams
    from evolver.models.batching import BatchingBackend

    class SlowFake(FakeBackend):  # a fake backend whose batch takes 0.3 s
        async def generate(self, requests):
            await asyncio.sleep(0.3)
            return await super().generate(requests)

    inner = SlowFake(tokenizer, ["a", "b", "c"])
    backend = BatchingBackend(inner, max_batch=1)
    req = GenerationRequest([1, 2, 3], SamplingParams(max_new_tokens=4))
    first = asyncio.create_task(backend.generate([req]))
    await asyncio.sleep(0.05)  # the first batch is running; the next request queues behind it
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(backend.generate([req]), 0.1)
    (c,) = await first
    (after,) = await backend.generate([req])
    assert (c.text, after.text) == ("a", "b")  # the abandoned request took no scripted reply
    assert len(inner.requests) == 2 and backend.dropped == 1 and backend.batches == [1, 1]
    await backend.aclose()
