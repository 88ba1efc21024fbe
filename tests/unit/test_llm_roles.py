"""The LLM roles' pure parts: versioned prompt templates, the step labeller's prompt fields,
reply parsing and skip rules, the usage counters' sums, and how a run's attributing settings
become a rollout request."""

from __future__ import annotations

import pytest

from evolver import prompts
from evolver.algorithms.adca import AdcaConfig
from evolver.cli.report import llm_role_lines
from evolver.errors import FailedPrecondition
from evolver.models.roles import RoleCounters, usage_metrics
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import events_pb2, task_pb2
from evolver.v1 import trajectory_pb2 as tpb
from services.attributor.llm_labels import parse_labels, prompt_fields, skip_reason, uses_llm
from services.trainer.collection import job_id, rollout_request
from services.trainer.run_config import RunSpec
from services.trainer.step_tally import tally


def test_the_packaged_templates_load_with_their_version_and_fill_every_field():
    t = prompts.load("step_attributor")
    assert t.version == "step_attributor/v2" and "GOOD" in t.system and t.reply_prefix == "Step 1 Judgment:"
    system, user = t.messages(task="Make a folder", n=2, steps="S", score="+1.0000", sign="positive")
    assert system["role"] == "system" and "Make a folder" in user["content"] and "$" not in user["content"]
    with pytest.raises(KeyError):
        t.messages(task="x")  # a missing field is a bug, not a silent "$n" in the prompt


def test_a_prompts_folder_overrides_the_packaged_one_newest_version_first(tmp_path, monkeypatch):
    (tmp_path / "step_attributor.v1.txt").write_text("## system\nold\n## user\n$task")
    (tmp_path / "step_attributor.v12.txt").write_text("# a comment line\n## system\nnew $task\n## user\nq: $task\n")
    monkeypatch.setenv("EVOLVER_PROMPTS_DIR", str(tmp_path))
    t = prompts.load("step_attributor")
    assert t.version == "step_attributor/v12" and t.messages(task="T")[0]["content"] == "new T"
    assert t.reply_prefix == ""  # no `## reply` section: nothing primed
    (tmp_path / "step_attributor.v13.txt").write_text("## system\ns\n## user\n$task\n## reply\nAnswer: \n")
    assert prompts.load("step_attributor").reply_prefix == "Answer: "  # its trailing space kept
    (tmp_path / "judge.v1.txt").write_text("## system\nno user section\n")
    with pytest.raises(FailedPrecondition, match="user"):
        prompts.load("judge")
    with pytest.raises(FailedPrecondition, match="no prompt template"):
        prompts.load("task_writer")


@pytest.mark.parametrize("reply,labels", [
    ("Step 1 Analysis: ok\nStep 1 Judgment: GOOD\nStep 2 Analysis: no\nStep 2 Judgment: BAD", [True, False]),
    ("step 2 judgment: bad\nStep 1 Judgment: **GOOD**", [True, False]),  # any order, case, markdown
    ("Step 1 Judgment: GOOD\nStep 1 Judgment: BAD\nStep 2 Judgment: GOOD", [True, True]),  # first one counts
    ("1. GOOD - made the folder\n2. BAD - wrong", [True, False]),  # AgentEvolver's standalone fallback
    ("Step 1 Judgment: Good\n\nStep 2 Label: bad", [True, False]),  # a small model's wording
    ("Step 1 Judgment: Good\n\nStep 2: Bad\n\nStep 1: Bad", [True, False]),
    ("Step 1 Judgment: GOOD", None),  # too few labels
    ("Both steps look good and nothing was bad.", None),  # lower-case words are not labels
    ("", None),
    ("I can't help with that.", None),
])
def test_step_label_replies_parse_or_say_they_cannot(reply, labels):
    assert parse_labels(reply, 2) == labels


def test_the_prompt_states_the_outcome_sign_and_trims_long_parts():
    t = tpb.Trajectory(reward=tpb.Reward(score=0.25))
    t.steps.append(tpb.Step(assistant_text="x" * 5000, observations=[tpb.Observation(content="ok")]))
    t.steps.append(tpb.Step(tool_calls=[tpb.ToolCall(name="ls", arguments_json="{}")]))
    f = prompt_fields("List files", t)
    assert f["n"] == 2 and f["score"] == "-0.5000" and f["sign"] == "negative"
    assert "[trimmed]" in f["steps"] and len(f["steps"]) < 2300 and 'ls({})' in f["steps"]
    assert ">>> EVAL-STEP 2 <<<" in f["steps"] and f["steps"].count("<|OBSERVATION|>") == 1


def test_skip_rules_and_which_labeler_calls_the_llm():
    assert skip_reason(apb.STEP_LABEL_SKIP_UNSPECIFIED, [0.0, 0.0], 0.0) is None
    assert skip_reason(apb.STEP_LABEL_SKIP_SMALL_ADVANTAGE, [1.0, 1.0], 1.0)
    assert skip_reason(apb.STEP_LABEL_SKIP_SMALL_ADVANTAGE, [1.0, 0.0], 1.0) is None
    assert skip_reason(apb.STEP_LABEL_SKIP_NEGATIVE, [1.0, 0.0], 0.5) and not skip_reason(
        apb.STEP_LABEL_SKIP_NEGATIVE, [1.0, 0.0], 0.75)
    assert uses_llm(apb.STEP_LABELER_LLM, True) and uses_llm(apb.STEP_LABELER_HYBRID, False)
    assert not uses_llm(apb.STEP_LABELER_HYBRID, True) and not uses_llm(apb.STEP_LABELER_STATE_PROGRESS, False)


def _labelled(tid: str, labels, state) -> apb.StepAttribution:
    return apb.StepAttribution(trajectory_id=tid, method=apb.ATTRIBUTION_METHOD_LLM_JUDGE, labels=labels,
                               state_progress_labels=state)


def test_a_step_sums_role_usage_and_label_agreement_into_its_metrics():
    G, B = apb.STEP_LABEL_GOOD, apb.STEP_LABEL_BAD
    usage = [RoleCounters("step_attributor", calls=2, prompt_tokens=300, completion_tokens=40, latency_s=1.5,
                          parse_failures=1, fallbacks=1).to_pb(),
             RoleCounters("step_attributor", calls=1, prompt_tokens=100, skipped=1).to_pb()]
    groups = []
    for gid, u, atts in (("g0", usage[:1], [_labelled("a", [G, B], [G, G]), _labelled("b", [B], [])]),
                         ("g1", usage[1:], [_labelled("c", [G, G, B], [G, G, B])])):
        t = tpb.Trajectory(trajectory_id=atts[0].trajectory_id, reward=tpb.Reward(score=1.0))
        groups.append(events_pb2.RolloutAttributed(group=tpb.RolloutGroup(group_id=gid, trajectories=[t]),
                                                   attributions=atts, role_usage=u, task=task_pb2.Task()))
    m = tally(groups, AdcaConfig(), attributing=True, alpha=0.1).metrics(alpha=0.1, groups=2)
    assert m["llm/step_attributor/calls"] == 3 and m["llm/step_attributor/prompt_tokens"] == 400
    assert m["llm/step_attributor/parse_failures"] == 1 and m["llm/step_attributor/skipped"] == 1
    assert (m["llm_labelled_trajectories"], m["label_compared_steps"], m["label_agreed_steps"]) == (3, 5, 4)
    assert (m["label_llm_good_steps"], m["label_progress_good_steps"]) == (3, 4)  # "b" has no state labels
    assert usage_metrics([]) == {} and "llm/step_attributor/calls" not in tally(
        [], AdcaConfig(), attributing=True, alpha=0.1).metrics(alpha=0.1, groups=0)

    progress = [{"phase": "trained", "train_step": i, "metrics": m} for i in (1, 2)]
    text = "\n".join(llm_role_lines(progress))
    assert "| step_attributor | 6 (3) | 800 (400)" in text and "8 of 10 steps (80.0%)" in text
    assert llm_role_lines([{"phase": "trained", "metrics": {"reward_mean": 1.0}}]) == []


def test_attributing_settings_travel_in_the_rollout_request_and_labels_stop_after_prm_steps():
    spec = RunSpec.model_validate({"attributing": {"labeler": "hybrid", "skip": "small_advantage", "prm_steps": 2}})
    task = task_pb2.Task(task_id="t")

    def request(step: int, evaluation: bool = False) -> events_pb2.RolloutRequested:
        return rollout_request(spec, run_id="r", job=job_id("r", "s", step, 0), step=step, task=task, version=0,
                               evaluation=evaluation)
    first = request(0)
    assert first.attribute and first.step_labeler == apb.STEP_LABELER_HYBRID
    assert first.step_label_skip == apb.STEP_LABEL_SKIP_SMALL_ADVANTAGE
    assert request(1).attribute and not request(2).attribute and not request(0, evaluation=True).attribute
    assert RunSpec.model_validate({}).attributing.labeler == "verifiable" and rollout_request(
        RunSpec.model_validate({}), run_id="r", job="j", step=50, task=task, version=0, evaluation=False).attribute
    with pytest.raises(ValueError, match="labeler"):
        RunSpec.model_validate({"attributing": {"labeler": "oracle"}})


def _walk():
    from evolver.algorithms.questioning import Walk, WalkStep
    from evolver.envs.base import Call
    w = Walk("w", {})
    w.steps += [WalkStep(Call("mkdir", {"dir_name": "a"}), "ok", False, "h1", True),
                WalkStep(Call("cd", {"folder": "zz"}), "No such folder", True, "h1", False),
                WalkStep(Call("ls", {}), "a", False, "h1", False, ["a"])]
    return w


def test_task_writer_replies_parse_into_every_block_with_steps_checked():
    from services.task_gen.llm_writer import parse_tasks, prompt_fields
    w = _walk()
    reply = ('<task>{"query": "Make a folder called a.", "confidence": 0.8, "action_sequence": [1]}</task>\n'
             '<task>{"query": "Make a folder a and list  it.", "confidence": "high", "action_sequence": "steps 1 and 3"}</task>'
             '<TASK>{"query": "Go to zz.", "confidence": 0.9, "action_sequence": [2]}</TASK>'
             '<task>{"query": "x", "action_sequence": [1, 3, 1]}</task><task>[1]</task><task>{oops</task>'
             '<task>{"query": "", "action_sequence": [1]}</task>')
    tasks, dropped = parse_tasks(reply, w, max_calls=2)
    assert [(t.query, t.confidence, t.steps) for t in tasks] == [
        ("Make a folder called a.", 0.8, [0]), ("Make a folder a and list it.", 0.5, [0, 2])]
    assert dropped == ["LLM task: action_sequence names a missing or failed step",
                       "LLM task: action_sequence must list 1 to 2 step numbers", "LLM task: not a JSON object",
                       "LLM task: not valid JSON", "LLM task: no usable query"]
    assert parse_tasks("", w, 2) is None and parse_tasks("Sorry, I can't.", w, 2) is None
    from evolver.envs.base import Tool
    from evolver.envs.profile import derive_profile
    tools = [Tool("mkdir", "Tool description: Make a directory. More.", {"properties": {"dir_name": {
        "description": "Name of the new directory."}}}, "Files"),
             Tool("ls", "List the directory.", {}, "Files"), Tool("post", "Post a message.", {}, "Social")]
    f = prompt_fields(w, derive_profile(tools, "demo"), ["an old task"], 2)
    assert "Files" in f["profile"] and "mkdir: Make a directory." in f["profile"] and "dir_name" in f["profile"]
    assert "Social" not in f["profile"]  # only the entities the walk touched
    assert f["n"] == 3 and ">>> STEP 2 <<< (ERROR)" in f["steps"] and '<|ACTION|>mkdir({"dir_name": "a"})' in f["steps"]
    assert f["known"] == "- an old task"
    system, user = prompts.load("task_writer").messages(**f)
    assert "Use 1 to 2 steps" in system["content"] and "an old task" in user["content"]


def test_generate_tasks_refuses_an_unknown_task_writer_naming_the_field():
    from evolver.errors import InvalidArgument
    from services.task_gen.task_gen import check_generate
    check_generate("bfcl", 1, 1, 1, 0, task_pb2.TASK_WRITER_KIND_LLM)
    with pytest.raises(InvalidArgument) as bad:
        check_generate("bfcl", 1, 1, 1, 0, 77)
    assert [v.field for v in bad.value.violations] == ["task_writer"]
    assert RunSpec.model_validate({"questioning": {"task_writer": "hybrid"}}).questioning.task_writer == "hybrid"


@pytest.mark.parametrize("reply,score", [
    ("Good. <reward>85</reward>", 0.85), ("<reward> 100 </reward>", 1.0), ("<REWARD>0</REWARD>", 0.0),
    ("<reward>30</reward> then reconsidered <reward>70</reward>", 0.70),  # the last one counts
    ("<reward>150</reward>", 1.0), ("<reward>-5</reward>", 0.0),  # clamped
    ("<reward>50</reward>", None), ("<reward>41</reward>", None),  # the forbidden band
    ("I'd say 85.", None), ("", None),
])
def test_judge_replies_parse_to_a_bimodal_score(reply, score):
    from evolver.agent.judging import parse_score
    assert parse_score(reply) == (pytest.approx(score) if score is not None else None)


def test_judged_rewards_and_which_rollouts_are_judged():
    from evolver.agent.judging import judged_reward, prompt_fields as judge_fields
    state = tpb.Reward(score=0.5, success=False)
    assert judged_reward(0.8, state, hybrid=False).score == pytest.approx(0.8)
    assert judged_reward(0.8, state, hybrid=False).success
    h = judged_reward(0.8, state, hybrid=True)
    assert h.score == pytest.approx(0.4) and not h.success
    task = task_pb2.Task(query="Make a folder", reference_solution=[tpb.ToolCall(name="mkdir", arguments_json='{"a": 1}')])
    t = tpb.Trajectory(final_answer="done")
    t.steps.append(tpb.Step(tool_calls=[tpb.ToolCall(name="mkdir", arguments_json="{}")]))
    f = judge_fields(task, t)
    assert f["reference"] == '1. mkdir({"a": 1})' and "ACTION: mkdir({})" in f["steps"] and "RESULT: (none)" in f["steps"]
    spec = RunSpec.model_validate({"rollout": {"reward_judge": "hybrid"}})
    train = rollout_request(spec, run_id="r", job="j", step=0, task=task, version=0, evaluation=False)
    ev = rollout_request(spec, run_id="r", job="e", step=0, task=task, version=0, evaluation=True)
    assert train.reward_judge == ev.reward_judge == tpb.REWARD_JUDGE_HYBRID  # the explorer decides per task


def test_experience_replies_parse_and_a_group_asks_for_each_kind_it_has():
    from evolver.memory.experiences import CallOutcome, TrajectoryView
    from services.memory.llm_distill import extraction_jobs, parse_context, parse_experiences, parse_validation
    assert parse_experiences('x [{"when_to_use": "a  b", "experience": "c"}, {"condition": "d", "content": "e"},'
                             ' {"when_to_use": ""}, 3] y') == [("a b", "c"), ("d", "e")]
    assert parse_experiences("[]") is None and parse_experiences("none") is None and parse_experiences("[{]") is None
    assert parse_validation('[{"index": 1, "is_valid": true, "score": 0.7}, {"index": 2, "is_valid": false},'
                            ' {"index": 9, "is_valid": true, "score": 1}, {"index": "3"}]', 3) == {0: 0.7}
    assert parse_validation("ok", 2) is None
    assert parse_context("<context>\n- a\n</context>") == "- a" and parse_context("<context> </context>") is None
    ok = TrajectoryView("q", True, [CallOutcome("mkdir", {"d": 1}, "None", False)])
    bad = TrajectoryView("q", False, [])
    assert [k for k, _ in extraction_jobs([ok, bad, ok])] == ["success", "failure", "comparative"]
    assert [k for k, _ in extraction_jobs([bad, bad])] == ["failure"]
    assert "BETTER outcome: success" in extraction_jobs([ok, bad])[2][1]
    spec = RunSpec.model_validate({"navigating": {"extractor": "hybrid", "rewrite": True}})
    r = rollout_request(spec, run_id="r", job="j", step=0, task=task_pb2.Task(), version=0, evaluation=False)
    from evolver.v1 import experience_pb2 as exp_pb
    assert r.experience_extractor == exp_pb.EXPERIENCE_EXTRACTOR_KIND_HYBRID and r.rewrite_experiences
    from evolver.memory.experiences import Experience
    from services.memory.memory import embedding_text
    e = Experience("i", "success", "moving files", "mkdir first", "bfcl", "t")
    assert embedding_text(e, exp_pb.EXPERIENCE_KEY_UNSPECIFIED, "Move r.pdf") == "moving files mkdir first"
    assert embedding_text(e, exp_pb.EXPERIENCE_KEY_WHEN_TO_USE, "Move r.pdf") == "moving files"
    assert embedding_text(e, exp_pb.EXPERIENCE_KEY_TASK_QUERY, "Move r.pdf") == "Move r.pdf"
    keyed = RunSpec.model_validate({"navigating": {"embedding_key": "when_to_use"}})
    assert rollout_request(keyed, run_id="r", job="j", step=0, task=task_pb2.Task(), version=0,
                           evaluation=False).experience_key == exp_pb.EXPERIENCE_KEY_WHEN_TO_USE


@pytest.mark.parametrize("reply,verdict", [
    ("Success: true\nReason: ok", True), ("success: **false**", False), ("SUCCESS = yes", True),
    ("The task was completed successfully and accomplished.", True), ("It failed with an error.", False),
    ("Hmm.", None), ("", None)])
def test_feasibility_verdicts_parse_explicitly_or_by_their_words(reply, verdict):
    from services.task_gen.feasibility import parse_verdict
    assert parse_verdict(reply) is verdict


def test_questioning_kinds_travel_and_unknown_ones_are_refused_by_field():
    from evolver.errors import InvalidArgument
    from services.task_gen.task_gen import check_generate
    from services.trainer.kinds import EXPLORERS, FEASIBILITY
    spec = RunSpec.model_validate({"questioning": {"explorer": "mixed", "feasibility": "hybrid"}})
    assert EXPLORERS[spec.questioning.explorer] == task_pb2.EXPLORER_KIND_MIXED
    assert FEASIBILITY[spec.questioning.feasibility] == task_pb2.FEASIBILITY_KIND_HYBRID
    with pytest.raises(InvalidArgument) as bad:
        check_generate("bfcl", 1, 1, 1, 0, 0, 42, 43)
    assert [v.field for v in bad.value.violations] == ["explorer", "feasibility"]
