"""The LLM step labeller (attributing.labeler llm | hybrid) and the LLM reward judge
(rollout.reward_judge llm | hybrid) over the real Environment protocol
(BFCL behind gRPC) and real HTTP, against ScriptedOpenAIServer (a FAKE OpenAI-compatible server:
no hosted model can run here): prompt assembly, parsing of good, malformed, empty and refused
replies, retries, timeouts, skip rules, fallbacks to state progress, and their counters."""

from __future__ import annotations

import re

import pytest

from evolver import prompts
from evolver.agent.rollout import RolloutOptions, run_group
from evolver.models.backend import FakeBackend
from evolver.models.openai_compat import AuxChatClient, EndpointSettings
from evolver.models.roles import RoleCaller, RoleCounters
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb
from services.attributor.attribution import attribute_group
from tests.bfcl_tasks import call, mkdir_task
from tests.fake_openai_server import Reply, ScriptedOpenAIServer

pytestmark = pytest.mark.integration
GOOD, BAD = apb.STEP_LABEL_GOOD, apb.STEP_LABEL_BAD
# What state progress says of the group below (test_rollout_and_attribution checks these).
STATE = {"g.r0": [GOOD, GOOD], "g.r1": [BAD, GOOD, GOOD], "g.r2": [BAD, BAD], "g.r3": [BAD]}


def facts(body: dict) -> tuple[int, bool]:
    """(steps, positive) as the prompt states them."""
    text = body["messages"][1]["content"]
    n = int(re.search(r"total (\d+) steps", text).group(1))
    return n, "(positive)" in text


def by_outcome(body: dict) -> Reply:
    """Every step GOOD in a solved attempt, BAD otherwise, in the numbered format."""
    n, positive = facts(body)
    label = "GOOD" if positive else "BAD"
    return Reply("\n".join(f"Step {i} Analysis: fine.\nStep {i} Judgment: {label}" for i in range(1, n + 1)))


@pytest.fixture
async def group(bfcl, tokenizer):
    task = await mkdir_task(bfcl)
    script = [call("mkdir", dir_name="reports"), "Done.",
              call("cd", folder="nowhere"), call("mkdir", dir_name="reports"), "Done.",
              call("mkdir", dir_name="other"), "Done.",
              "I cannot do that."]
    trajs = await run_group(FakeBackend(tokenizer, script), bfcl, task,
                            RolloutOptions(group_size=4, guided_share=0.0, temperature=0.0, max_steps=3),
                            group_id="g", concurrent=False)
    assert [t.reward.score for t in trajs] == [1.0, 1.0, 0.0, 0.0]
    return task, tpb.RolloutGroup(group_id="g", trajectories=trajs)


def caller(url: str, *, max_retries: int = 2, timeout_s: float = 10.0, prefills: bool = False) -> RoleCaller:
    client = AuxChatClient(EndpointSettings(url, "judge-7b", max_retries=max_retries, backoff_s=0.05,
                                            timeout_s=timeout_s), prefills=prefills)
    return RoleCaller("step_attributor", client, prompts.load("step_attributor"), timeout_s=timeout_s * 4)


async def label(bfcl, task, group, llm, **kw) -> tuple[dict[str, apb.StepAttribution], RoleCounters]:
    counters = RoleCounters("step_attributor")
    out = await attribute_group(bfcl, task, group, llm=llm, counters=counters,
                                labeler=kw.pop("labeler", apb.STEP_LABELER_LLM), **kw)
    return {a.trajectory_id: a for a in out}, counters


async def test_llm_labels_replace_state_progress_and_keep_it_for_agreement(bfcl, group):
    task, g = group
    with ScriptedOpenAIServer(default=by_outcome) as fake:
        out, c = await label(bfcl, task, g, caller(fake.url))
        bodies = fake.calls("step_attributor")
    assert (c.calls, c.parse_failures, c.fallbacks, c.call_failures, c.skipped) == (4, 0, 0, 0, 0)
    assert c.prompt_tokens > 0 and c.completion_tokens > 0 and c.latency_s > 0
    for tid, a in out.items():
        positive = tid in ("g.r0", "g.r1")
        assert a.method == apb.ATTRIBUTION_METHOD_LLM_JUDGE and a.prompt_version == "step_attributor/v2"
        assert list(a.labels) == [GOOD if positive else BAD] * len(STATE[tid])
        assert list(a.state_progress_labels) == STATE[tid]  # the verifiable labels, for agreement
    # The prompt: the task, every step numbered with its action and observation, the outcome's sign.
    user = {facts(b): b["messages"][1]["content"] for b in bodies}
    r1 = user[(3, True)]
    assert task.query in r1 and ">>> EVAL-STEP 3 <<<" in r1 and "<|OBSERVATION|>" in r1 and '"cd"' in r1
    assert "+1.0000 (positive)" in r1 and "-1.0000 (negative)" in user[(1, False)]
    assert all(b["model"] == "judge-7b" and b["messages"][0]["role"] == "system" for b in bodies)


async def test_a_primed_reply_is_continued_and_parsed_with_its_primer(bfcl, group):
    """prefill on (a vLLM endpoint): the reply opens with the template's primer as a final
    assistant message that the server continues; the parser reads primer + continuation."""
    task, g = group

    def continuation(body: dict) -> Reply:
        n, positive = facts(body)
        rest = "".join(f"\nStep {i} Judgment: BAD" for i in range(2, n + 1))
        return Reply((" Good, it helped." if positive else " Bad") + rest)  # no "Step 1 Judgment:" of its own

    with ScriptedOpenAIServer(default=continuation) as fake:
        out, c = await label(bfcl, task, g, caller(fake.url, prefills=True))
        primed = fake.calls("step_attributor")
        assert (c.calls, c.parse_failures, c.fallbacks) == (4, 0, 0)
        assert list(out["g.r1"].labels) == [GOOD, BAD, BAD] and list(out["g.r3"].labels) == [BAD]
        assert all(b["messages"][-1] == {"role": "assistant", "content": "Step 1 Judgment:"}
                   and b["continue_final_message"] is True and b["add_generation_prompt"] is False for b in primed)
        # prefill off (OpenAI's API rejects the parameters): nothing primed, so the same
        # continuations lack their step number and do not parse: counted, state progress stands.
        fake.requests.clear()
        out, c = await label(bfcl, task, g, caller(fake.url))
        assert all(len(b["messages"]) == 2 and "continue_final_message" not in b for b in fake.requests)
    assert (c.calls, c.parse_failures, c.fallbacks) == (4, 4, 4)
    assert list(out["g.r1"].labels) == STATE["g.r1"]


async def test_unusable_replies_fall_back_to_state_progress_and_are_counted(bfcl, group):
    task, g = group

    def mixed(body: dict) -> Reply:
        n, positive = facts(body)
        if (n, positive) == (2, True):
            return Reply("These steps look reasonable to me overall.")  # malformed: no labels
        if (n, positive) == (3, True):
            return Reply("")  # empty
        if (n, positive) == (2, False):
            return Reply(None, refusal="I can't help with that.")  # refused
        return Reply("Step 1 Analysis: it answered.\nStep 1 Judgment: GOOD")

    with ScriptedOpenAIServer(default=mixed) as fake:
        out, c = await label(bfcl, task, g, caller(fake.url))
    assert (c.calls, c.parse_failures, c.fallbacks, c.call_failures) == (4, 3, 3, 0)
    for tid in ("g.r0", "g.r1", "g.r2"):  # never silently zeroed: the state-progress labels stand
        assert out[tid].method == apb.ATTRIBUTION_METHOD_STATE_PROGRESS and list(out[tid].labels) == STATE[tid]
        assert not out[tid].prompt_version
    assert out["g.r3"].method == apb.ATTRIBUTION_METHOD_LLM_JUDGE and list(out["g.r3"].labels) == [GOOD]
    assert list(out["g.r3"].state_progress_labels) == [BAD]


async def test_retries_timeouts_and_failed_endpoints(bfcl, group):
    task, g = group
    one = tpb.RolloutGroup(group_id="g", trajectories=[g.trajectories[3]])
    with ScriptedOpenAIServer(default=by_outcome) as fake:
        fake.add("step_attributor", Reply(status=503), Reply(status=429), by_outcome)  # retried, then answered
        out, c = await label(bfcl, task, one, caller(fake.url))
        assert (c.calls, c.call_failures, c.fallbacks) == (1, 0, 0) and len(fake.requests) == 3
        assert out["g.r3"].method == apb.ATTRIBUTION_METHOD_LLM_JUDGE

        fake.add("step_attributor", *[Reply(status=500)] * 2)  # fails past its retries
        out, c = await label(bfcl, task, one, caller(fake.url, max_retries=1))
        assert (c.calls, c.call_failures, c.fallbacks, c.parse_failures) == (1, 1, 1, 0)
        assert list(out["g.r3"].labels) == STATE["g.r3"]

        fake.add("step_attributor", Reply(raw="{not json"))  # a broken body is a failed call
        out, c = await label(bfcl, task, one, caller(fake.url, max_retries=0))
        assert (c.call_failures, c.fallbacks) == (1, 1)

        fake.add("step_attributor", Reply("Step 1 Judgment: GOOD", delay_s=2.0))  # past the deadline
        out, c = await label(bfcl, task, one, caller(fake.url, max_retries=0, timeout_s=0.3))
        assert (c.call_failures, c.fallbacks) == (1, 1) and c.latency_s < 1.5
        assert list(out["g.r3"].labels) == STATE["g.r3"]


async def test_skip_rules_and_hybrid_call_only_where_they_should(bfcl, group):
    task, g = group
    with ScriptedOpenAIServer(default=by_outcome) as fake:
        out, c = await label(bfcl, task, g, caller(fake.url), skip=apb.STEP_LABEL_SKIP_NEGATIVE)
        assert (c.calls, c.skipped) == (2, 2)  # the two failed attempts: their outcome's sign, no call
        assert list(out["g.r2"].labels) == [BAD, BAD] and "skipped" in out["g.r2"].reasons[0]

        same = tpb.RolloutGroup(group_id="g", trajectories=[g.trajectories[2], g.trajectories[3]])  # both 0.0
        out, c = await label(bfcl, task, same, caller(fake.url), skip=apb.STEP_LABEL_SKIP_SMALL_ADVANTAGE)
        assert (c.calls, c.skipped) == (0, 2)
        out, c = await label(bfcl, task, g, caller(fake.url), skip=apb.STEP_LABEL_SKIP_SMALL_ADVANTAGE)
        assert (c.calls, c.skipped) == (4, 0)  # rewards differ: every attempt is labelled

        # hybrid: state progress where the task has a reference end state; the LLM elsewhere
        before = len(fake.requests)
        out, c = await label(bfcl, task, g, caller(fake.url), labeler=apb.STEP_LABELER_HYBRID)
        assert c.calls == 0 and len(fake.requests) == before
        assert all(a.method == apb.ATTRIBUTION_METHOD_STATE_PROGRESS for a in out.values())
        no_reference = task_pb2.Task()
        no_reference.CopyFrom(task)
        no_reference.reference_end_state_json = ""
        out, c = await label(bfcl, no_reference, g, caller(fake.url), labeler=apb.STEP_LABELER_HYBRID)
        assert c.calls == 4 and all(a.method == apb.ATTRIBUTION_METHOD_LLM_JUDGE for a in out.values())
        assert not any(a.state_progress_labels for a in out.values())  # nothing verifiable to compare


async def test_the_reward_judge_scores_attempts_and_keeps_state_match_when_it_cannot(bfcl, group):
    from services.explorer.explorer import judge_group
    task, g = group

    def judge(body: dict) -> Reply:
        text = body["messages"][1]["content"]
        assert task.query in text and "### REFERENCE SOLUTION\n1. mkdir(" in text
        if "I cannot do that." in text:  # r3: a score in the forbidden band: unusable
            return Reply("It gave up.\n<reward>50</reward>")
        if '"nowhere"' in text:  # r1: its mistake costs it
            return Reply("Solved after an error.\n<reward>75</reward>")
        if '"other"' in text:  # r2
            return Reply("Wrong folder. <reward>10</reward>")
        return Reply("Solved. <reward>95</reward>")  # r0

    for hybrid in (False, True):
        trajs = [tpb.Trajectory() for _ in g.trajectories]
        for t, src in zip(trajs, g.trajectories):
            t.CopyFrom(src)
        with ScriptedOpenAIServer(default=judge) as fake:
            llm = RoleCaller("judge", AuxChatClient(EndpointSettings(fake.url, "judge-7b", max_retries=0)),
                             prompts.load("judge"))
            counters = RoleCounters("judge")
            await judge_group(llm, counters, task, trajs, hybrid=hybrid)
        assert (counters.calls, counters.parse_failures, counters.fallbacks) == (4, 1, 1)
        scores = [t.reward.score for t in trajs]
        if not hybrid:  # the judge's score; r3 keeps its state-match reward (0)
            assert scores == pytest.approx([0.95, 0.75, 0.10, 0.0]) and [t.reward.success for t in trajs] == [
                True, True, False, False]
        else:  # times the state match (1, 1, 0, 0): a success needs both
            assert scores == pytest.approx([0.95, 0.75, 0.0, 0.0])
            assert '"state_match": 1.0' in trajs[0].reward.details_json
            assert '"judge_prompt": "judge/v1"' in trajs[0].reward.details_json
