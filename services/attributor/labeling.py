"""Trajectory (protobuf) -> per-step GOOD/BAD labels from state progress (pure, given states).

The environment replay that produces the states lives in the servicer; this module only turns
what was recorded into the attribution algorithm's inputs and applies the rules for steps that
call no tool:
  - a parse error (malformed output) is BAD: nothing useful happened;
  - a plain-text answer is GOOD when it carries information the task asks for, or when it ends a
    successful attempt; otherwise BAD (it gave up or answered without the needed work)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from evolver.algorithms.attribution import StepRecord, attribute
from evolver.v1 import trajectory_pb2 as tpb


def step_records(traj: tpb.Trajectory) -> list[StepRecord]:
    out = []
    for s in traj.steps:
        calls = []
        for c in s.tool_calls:
            try:
                args = json.loads(c.arguments_json or "{}")
            except json.JSONDecodeError:
                args = {}
            calls.append((c.name, args if isinstance(args, dict) else {}))
        results = [(o.content, o.kind != tpb.OBSERVATION_KIND_RESULT) for o in s.observations]
        out.append(StepRecord(calls, results))
    return out


def replay_calls(traj: tpb.Trajectory) -> list[list[tpb.ToolCall]]:
    """The calls of each step, for replaying in a fresh instance (answers and parse errors: none)."""
    return [list(s.tool_calls) for s in traj.steps]


def label_steps(traj: tpb.Trajectory, states: Sequence[Any], reference_end: Any, expected_facts: Sequence[str],
                needed: Sequence[bool] | None = None) -> list[tuple[bool, str]]:
    records = step_records(traj)
    labels = attribute(states, reference_end, records, expected_facts, needed)
    facts = [str(f).lower() for f in expected_facts]
    last = len(records) - 1
    for k, (step, rec) in enumerate(zip(traj.steps, records)):
        if rec.calls:
            continue
        if any(o.kind == tpb.OBSERVATION_KIND_PARSE_ERROR for o in step.observations):
            labels[k] = (False, "malformed output")
        elif facts and any(f in step.assistant_text.lower() for f in facts):
            labels[k] = (True, "answer carries information the task asks for")
        elif k == last and traj.reward.success:
            labels[k] = (True, "answer ends a successful attempt")
        else:
            labels[k] = (False, "answered without completing the task")
    return labels


def error_only_labels(traj: tpb.Trajectory) -> list[tuple[bool, str]]:
    """For tasks without a reference end state (e.g. seed tasks scored by their own evaluator):
    a step is BAD when every call in it errored or its output was malformed, else GOOD."""
    out = []
    for s in traj.steps:
        if s.observations and all(o.kind != tpb.OBSERVATION_KIND_RESULT for o in s.observations):
            out.append((False, "every call failed"))
        else:
            out.append((True, "no error"))
    return out
