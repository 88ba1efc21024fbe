"""The agent loop on BFCL in this process (the client surface a remote environment has too) with real backends."""

from __future__ import annotations

from evolver.agent.episode import policy_agent, run_episode
from evolver.envs.harness import evaluate
from evolver.errors import Unavailable
from evolver.models.backend import FakeBackend, SamplingParams
from evolver.models.hf import HFBackend
from tests.bfcl_tasks import call


async def test_scripted_agent_solves_a_bfcl_task_through_the_protocol(bfcl, tokenizer):
    # multi_turn_base_1's first turn asks to list files including hidden ones (ls a=True).
    from evolver.envs.bfcl import tasks
    gt = tasks.by_id()["multi_turn_base_1"].ground_truth
    script = []
    for turn in gt:
        script += [call(c.name, **c.arguments) for c in turn] + ["Done."]
    episode = await bfcl.create(seed_task_id="multi_turn_base_1")
    record = await run_episode(FakeBackend(tokenizer, script), episode, episode.tools, max_steps=len(script) + 2)
    assert record.done and not record.infra_failure
    assert (await episode.evaluate()).success
    assert [s.calls[0].name for s in record.steps if s.calls] == [c.name for t in gt for c in t]
    assert record.final_answer == "Done." and len(record.answers) == len(gt)
    seq = record.conversation.training_sequence()
    assert sum(seq.loss_mask) == sum(len(c.token_ids) for c in record.conversation.completions)


async def test_malformed_output_is_an_observation_not_an_exception(bfcl, tokenizer):
    episode = await bfcl.create(seed_task_id="multi_turn_base_0")
    script = ['<tool_call>{"name": "ls", "arguments": {</tool_call>', call("ls"), "All listed."]
    record = await run_episode(FakeBackend(tokenizer, script), episode, episode.tools, max_steps=3)
    assert record.steps[0].parse_errors and not record.steps[0].calls
    assert "could not be parsed" in tokenizer.decode(record.conversation.ids())
    assert record.steps[1].calls[0].name == "ls" and not record.steps[1].results[0].is_error


async def test_real_tiny_policy_runs_episodes_and_the_harness_scores_them(bfcl, tiny_model_dir, tokenizer):
    backend = HFBackend(tiny_model_dir, threads=2)
    episode = await bfcl.create(seed_task_id="multi_turn_base_100")
    record = await run_episode(backend, episode, episode.tools, max_steps=3,
                               sampling=SamplingParams(max_new_tokens=12, temperature=1.0, seed=1))
    # Random text is either malformed (an observation) or an answer (ends a user turn); the
    # episode stops at max_steps or when its user turns run out.
    turns = len((await bfcl.seed_tasks("test"))[0].user_turns)
    answers = sum(1 for s in record.steps if not s.calls and not s.parse_errors)
    assert answers == len(record.answers) and (len(record.steps) == 3 or (record.done and answers == turns))
    assert record.policy_versions == {0}
    seq = record.conversation.training_sequence()
    assert len(seq.token_ids) == len(seq.loss_mask) == len(seq.behaviour_logprobs)
    seeds = [s for s in await bfcl.seed_tasks("test")][:2]
    summary = await evaluate(bfcl, policy_agent(backend, max_steps=2, max_new_tokens=8), seeds, k=2, temperature=0.7)
    assert summary.tasks == 2 and summary.k == 2 and 0.0 <= summary.avg_at_k <= summary.pass_at_k <= 1.0


async def test_an_environment_failure_marks_an_infrastructure_failure(bfcl, tokenizer):
    episode = await bfcl.create(seed_task_id="multi_turn_base_0")
    await episode.release()
    # An instance that vanished under the episode (reaped after an idle expiry, its server
    # restarted; here released) ends it as an infrastructure failure naming why: the attempt is
    # left out of scores, and the rest of its group is kept (it used to raise and poison the group).
    record = await run_episode(FakeBackend(tokenizer, [call("ls")]), episode, episode.tools, max_steps=1)
    assert "released" in record.infra_failure and not record.steps and not record.done

    class FakeUnavailableEpisode:
        """A fake: an episode whose environment server has gone away."""
        user_message, tools = "hi", episode.tools

        async def step(self, calls, assistant_text=""):
            raise Unavailable("environment UNAVAILABLE: connection refused")
    record = await run_episode(FakeBackend(tokenizer, [call("ls")]), FakeUnavailableEpisode(), episode.tools,
                               max_steps=2)
    assert record.infra_failure.startswith("environment UNAVAILABLE") and not record.done
