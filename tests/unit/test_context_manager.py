"""The context manager (spec §6.3-6.4): linear, reasoning-stripped and sliding-window templates,
each token-exact (every turn trains on exactly the ids it saw and produced, never re-tokenised),
the context-length guard and observation clipping; on the tiny real transformer and, for the
reasoning text a tiny model never writes, a scripted FakeBackend (a named fake)."""

from __future__ import annotations

import pytest

from evolver.agent.episode import ContextSettings, run_episode
from evolver.agent.rollout import turn_records
from evolver.models.backend import FakeBackend, SamplingParams
from evolver.models.hf import HFBackend
from services.trainer.advantages import records
from tests.bfcl_tasks import call


class Recording:
    """Delegates to a real backend and keeps every request's context and completion."""

    def __init__(self, backend):
        self.backend, self.tokenizer, self.seen = backend, backend.tokenizer, []

    @property
    def policy_version(self) -> int:
        return self.backend.policy_version

    async def generate(self, requests):
        out = await self.backend.generate(requests)
        self.seen += [(list(r.prompt_token_ids), list(c.token_ids)) for r, c in zip(requests, out)]
        return out


# strip_reasoning's own test below uses scripted reasoning (a tiny model never writes <think>).
@pytest.mark.parametrize("template", ["linear", "sliding_window"])
async def test_every_template_trains_on_exactly_the_ids_each_turn_saw(bfcl, tiny_model_dir, template):
    backend = Recording(HFBackend(tiny_model_dir, threads=2))
    episode = await bfcl.create(seed_task_id="multi_turn_base_100")
    record = await run_episode(backend, episode, episode.tools, max_steps=4, experience="Try ls first.",
                               sampling=SamplingParams(max_new_tokens=10, temperature=1.0, seed=3),
                               context=ContextSettings(template, window_turns=1))
    conv = record.conversation
    assert len(backend.seen) == len(conv.turns) >= 2
    if template == "linear":  # one sequence: every turn's context is a prefix of it, every output in it
        seq = conv.training_sequence(keep_experience=True)
        for ctx, out in backend.seen:
            assert seq.token_ids[:len(ctx)] == ctx and seq.token_ids[len(ctx):len(ctx) + len(out)] == out
        assert not conv.rewrites_history
        return
    turns = conv.turn_sequences(keep_experience=True)
    assert len(turns) == len(backend.seen)
    for i, ((ctx, out), seq) in enumerate(zip(backend.seen, turns)):
        assert seq.token_ids == ctx + out  # exact: the context as fed, the completion as produced
        assert seq.loss_mask == [0] * len(ctx) + [1] * len(out) and set(seq.step_ids[len(ctx):]) == {i}
        marked = [t for t, m in zip(seq.token_ids, seq.experience_mask) if m]
        assert backend.tokenizer.decode(marked).strip().startswith("<experience>")
    stripped = conv.turn_sequences(keep_experience=False)  # discard mode: the block leaves every turn
    assert all("Try ls first." not in backend.tokenizer.decode(s.token_ids) for s in stripped)
    assert [s.token_ids[-len(out):] for s, (_, out) in zip(stripped, backend.seen)] == [o for _, o in backend.seen]


async def test_reasoning_is_stripped_from_later_contexts_but_trained_where_it_was_produced(bfcl, tokenizer):
    script = ["<think>the folder must exist first</think>" + call("ls"), "Done."]
    backend = FakeBackend(tokenizer, script)
    episode = await bfcl.create(seed_task_id="multi_turn_base_0")
    record = await run_episode(backend, episode, episode.tools, max_steps=2,
                               context=ContextSettings("strip_reasoning"))
    second = tokenizer.decode(backend.requests[1].prompt_token_ids)
    assert "the folder must exist first" not in second and '"name": "ls"' in second
    first_turn = record.conversation.turn_sequences()[0]
    assert "the folder must exist first" in tokenizer.decode(
        [t for t, m in zip(first_turn.token_ids, first_turn.loss_mask) if m])
    recs = turn_records(record, keep_experience=False)
    assert len(recs) == 2 and [max(r.step_ids) for r in recs] == [0, 1]


async def test_the_guard_ends_an_episode_cleanly_before_a_turn_would_not_fit(bfcl, tiny_model_dir):
    backend = Recording(HFBackend(tiny_model_dir, threads=2))
    episode = await bfcl.create(seed_task_id="multi_turn_base_100")
    probe = await run_episode(backend, episode, episode.tools, max_steps=1,
                              sampling=SamplingParams(max_new_tokens=8, temperature=1.0, seed=1))
    budget = len(backend.seen[0][0]) + 8 + 20  # room for the first turn, not for many more
    backend.seen.clear()
    episode = await bfcl.create(seed_task_id="multi_turn_base_100")
    record = await run_episode(backend, episode, episode.tools, max_steps=6,
                               sampling=SamplingParams(max_new_tokens=8, temperature=1.0, seed=1),
                               context=ContextSettings(max_context_tokens=budget))
    assert probe.steps and record.context_exhausted and 1 <= len(backend.seen) < 6
    assert all(len(ctx) + 8 <= budget for ctx, _ in backend.seen)


async def test_long_observations_are_clipped_to_their_token_budget(bfcl, tokenizer):
    backend = FakeBackend(tokenizer, [call("ls", a=True), "Done."])
    episode = await bfcl.create(seed_task_id="multi_turn_base_1")
    await run_episode(backend, episode, episode.tools, max_steps=2, context=ContextSettings(max_observation_tokens=4))
    second = tokenizer.decode(backend.requests[1].prompt_token_ids)
    assert "...[truncated]" in second
    shown = second.split("<tool_response>")[1]
    assert len(tokenizer.encode(shown, add_special_tokens=False)) < 60


def test_a_per_turn_attempt_trains_one_sample_per_turn_with_its_steps_advantage():
    from evolver.algorithms.adca import AdcaConfig
    from evolver.v1 import events_pb2
    from evolver.v1 import trajectory_pb2 as tpb
    from services.trainer.advantages import group_samples

    def attempt(tid: str, score: float) -> tpb.Trajectory:
        t = tpb.Trajectory(trajectory_id=tid, reward=tpb.Reward(score=score))
        for i in range(2):
            t.turn_records.add(token_ids=[1, 2, 3 + i, 9], loss_mask=[0, 0, 1, 1], step_ids=[-1, -1, i, i],
                               behaviour_logprobs=[0, 0, -1, -1], logprobs_exact=True)
            t.steps.add(index=i)
        return t
    event = events_pb2.RolloutAttributed(group=tpb.RolloutGroup(group_id="g", trajectories=[
        attempt("a", 1.0), attempt("b", 0.0)]))
    samples, stats = group_samples(event, AdcaConfig(), attributing=False)
    assert stats.valid == 2 and len(samples) == 4 and [s.trajectory_id for s in samples] == ["a", "a", "b", "b"]
    assert all(s.advantages[:2] == [0.0, 0.0] and s.advantages[2] == s.advantages[3] != 0 for s in samples)
    assert samples[0].advantages[2] > 0 > samples[2].advantages[2]
    assert records(event.group.trajectories[0]) == list(event.group.trajectories[0].turn_records)


async def test_a_sliding_window_keeps_the_task_and_the_last_turns(bfcl, tokenizer):
    script = [call("ls"), call("mkdir", dir_name="alpha"), call("mkdir", dir_name="beta"), call("ls"), "Done."]
    backend = FakeBackend(tokenizer, script)
    episode = await bfcl.create(seed_task_id="multi_turn_base_0")
    record = await run_episode(backend, episode, episode.tools, max_steps=5, first_turn_prefix="<tool_call>\n",
                               context=ContextSettings("sliding_window", window_turns=2))
    contexts = [tokenizer.decode(r.prompt_token_ids) for r in backend.requests]
    assert len(contexts) == 5 and episode.user_message in contexts[-1]  # the task stays
    assert "omitted" not in contexts[2] and "[1 earlier turn omitted]" in contexts[3]
    assert "[2 earlier turns omitted]" in contexts[4]
    assert '"alpha"' not in contexts[4] and '"beta"' in contexts[4]  # turn 2 dropped, turns 3-4 kept
    assert contexts[0].endswith("<tool_call>\n") and not contexts[4].endswith("<tool_call>\n")
    turns = record.conversation.turn_sequences()
    assert [s.token_ids for s in turns] == [r.prompt_token_ids + c for r, c in zip(
        backend.requests, [list(x.token_ids) for x in record.conversation.completions])]
