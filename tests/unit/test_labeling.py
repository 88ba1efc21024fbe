"""Step labels for recorded trajectories (pure, given the replayed states)."""

from __future__ import annotations

from evolver.v1 import trajectory_pb2 as tpb
from services.attributor.labeling import error_only_labels, label_steps, step_records


def _step(calls=(), obs=(), text=""):
    s = tpb.Step(assistant_text=text)
    for name, args in calls:
        s.tool_calls.append(tpb.ToolCall(name=name, arguments_json=args))
    for kind, content in obs:
        s.observations.append(tpb.Observation(kind=kind, content=content))
    return s


R, E, P = tpb.OBSERVATION_KIND_RESULT, tpb.OBSERVATION_KIND_TOOL_ERROR, tpb.OBSERVATION_KIND_PARSE_ERROR


def test_answer_and_parse_error_rules():
    traj = tpb.Trajectory(reward=tpb.Reward(score=1, success=True))
    traj.steps.extend([_step(obs=[(P, "bad json")]),
                       _step(calls=[("mkdir", '{"dir_name": "a"}')], obs=[(R, "null")]),
                       _step(text="The folder is /workspace/a")])
    states = [{"dirs": []}, {"dirs": []}, {"dirs": ["a"]}, {"dirs": ["a"]}]
    labels = label_steps(traj, states, {"dirs": ["a"]}, expected_facts=[])
    assert [good for good, _ in labels] == [False, True, True]
    assert "malformed" in labels[0][1] and "successful" in labels[2][1]
    facts = label_steps(traj, states, {"dirs": ["a"]}, expected_facts=["/workspace/a"])
    assert facts[2] == (True, "answer carries information the task asks for")
    traj.reward.success = False
    assert label_steps(traj, states, {"dirs": ["a"]}, expected_facts=[])[2][0] is False


def test_records_parse_arguments_safely_and_error_only_labels():
    traj = tpb.Trajectory()
    traj.steps.extend([_step(calls=[("ls", "{not json")], obs=[(E, "bad")]), _step(calls=[("ls", "{}")], obs=[(R, "[]")])])
    recs = step_records(traj)
    assert recs[0].calls == [("ls", {})] and recs[0].results == [("bad", True)]
    assert [g for g, _ in error_only_labels(traj)] == [False, True]
