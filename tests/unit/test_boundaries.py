"""The one boundary check (evolver.limits), the environment caps and sanitiser
(evolver.envs.caps), parse_turn's never-raise promise, status-message clipping and the trainer's
transient-retry helper. Pure: no network."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolver import limits
from evolver.envs.base import Call, CallResult, state_hash
from evolver.envs.caps import EnvironmentCaps, canonical_state, parse_arguments, sanitize
from evolver.errors import InvalidArgument, NotFound, Unavailable
from evolver.models.toolcall import parse_turn
from evolver.rpc import retry_transient, to_status
from evolver.v1 import events_pb2, run_pb2, trainer_service_pb2
from evolver.v1 import trajectory_pb2 as tpb


@pytest.mark.parametrize("value", ["a b", "*", "../x", "a..b", ".a", "a.", "h" * 129, "ü", "a>b", "a\x00"])
def test_bad_ids_are_named_with_a_short_prefix(value):
    found = limits.violations(trainer_service_pb2.GetRunRequest(run_id=value))
    assert [v.field for v in found] == ["run_id"]
    assert len(found[0].description) < 200


@pytest.mark.parametrize("value", ["run-1", "run-1.s0.t3", "explore/run-1.bfcl.0/w1", "multi_turn_base_12", "a=b"])
def test_good_ids_pass(value):
    assert limits.violations(trainer_service_pb2.GetRunRequest(run_id=value)) == []


def test_nested_ids_texts_and_counts_are_checked_with_their_path():
    msg = events_pb2.RolloutAttributed(group=tpb.RolloutGroup(
        group_id="h" * 5000, trajectories=[tpb.Trajectory(trajectory_id="t.0"), tpb.Trajectory(trajectory_id="a b")]))
    found = {v.field: v.description for v in limits.violations(msg)}
    assert set(found) == {"group.group_id", "group.trajectories[1].trajectory_id"}
    assert "5000" in found["group.group_id"] and "h" * 40 not in found["group.group_id"]
    # Numeric arrays are as long as a sequence (the message size bounds them); call ids are text.
    ok = tpb.Trajectory(trajectory_id="t", tokens=tpb.TokenRecord(token_ids=list(range(200_000))),
                        steps=[tpb.Step(tool_calls=[tpb.ToolCall(call_id="call 0: any text")])])
    assert limits.violations(ok) == []
    too_long_text = run_pb2.RunConfig(config_yaml="x" * (limits.TEXT_MAX_CHARS + 1))
    assert [v.field for v in limits.violations(too_long_text)] == ["config_yaml"]
    with pytest.raises(InvalidArgument) as e:
        limits.check_message(msg)
    assert len(str(e.value)) < 600


def test_status_messages_never_echo_a_whole_input():
    status = to_status(NotFound("no run " + "x" * 20_000))
    assert len(status.details) < 1200
    invalid = to_status(InvalidArgument("run_id", "y" * 20_000))
    assert len(invalid.details) < 1200
    assert rpc_status  # imported for the status mapping under test


def test_sanitized_state_is_json_safe_and_hashes_like_before():
    caps = EnvironmentCaps()
    plain = {"b": [1, 2.5, "x"], "a": {"n": None, "t": True}}
    text, digest = canonical_state(plain, caps)
    assert digest == state_hash(plain) and json.loads(text) == plain
    odd = {"big": 10 ** 5000, "nan": math.nan, "inf": -math.inf, "deep": {}, "set": {3, 1}, "obj": object()}
    node = odd["deep"]
    for _ in range(500):
        node["d"] = {}
        node = node["d"]
    text, digest = canonical_state(odd, caps)
    value = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert value["nan"] == "NaN" and value["inf"] == "-Infinity" and value["set"] == [1, 3]
    assert value["big"].startswith("<integer of") and len(value["big"]) < 100
    assert canonical_state(odd, caps)[1] == digest  # deterministic
    small = EnvironmentCaps(max_state_chars=1000)
    text, _ = canonical_state({"x": "y" * 5000}, small)
    assert "__state_too_large__" in json.loads(text)
    assert sanitize("z" * 10, EnvironmentCaps(max_string_chars=4)).startswith("zzzz... [clipped")


def test_arguments_past_the_caps_are_error_observations():
    caps = EnvironmentCaps(max_argument_chars=6000, max_argument_depth=4)
    assert parse_arguments("c", "add", '{"a": 1}', caps) == Call("add", {"a": 1}, "c")
    cases = {"[" * 2500 + "]" * 2500: "nested too deeply",
             '{"a": ' + "[" * 400 + "]" * 400 + "}": "nested deeper than 4",
             '{"a": ' + "9" * 5000 + "}": "not usable",
             '{"a": NaN}': "NaN", "[1]": "must be a JSON object", "{": "not valid JSON",
             '{"a": "' + "x" * 7000 + '"}': "at most 6000"}
    for text, expected in cases.items():
        r = parse_arguments("c", "add", text, caps)
        assert isinstance(r, CallResult) and r.is_error and expected in r.content, (text[:40], r)


@pytest.mark.parametrize("text", [
    '<tool_call>{"name": "a", "arguments": {"x": ' + "1" * 5000 + "}}</tool_call>",
    "<tool_call>" + "[" * 10_000 + "]" * 10_000 + "</tool_call>",
    '<tool_call>{"name": "\\ud800", "arguments": {}}</tool_call>',
    '<tool_call>{"name": "a", "arguments": {"k": "\\udfff"}}</tool_call>',
    '<tool_call>{"name": "a", "arguments": "' + "[" * 5000 + '"}</tool_call>',
    '<tool_call>{"name": "a", "arguments": {"x": Infinity}}</tool_call>',
])
def test_parse_turn_never_raises_on_the_hostile_list(text):
    out = parse_turn(text)
    assert not out.calls and out.errors


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.just("<tool_call>"), st.just("</tool_call>"), st.just('{"name": '),
                          st.just('"arguments": '), st.just("{"), st.just("}"), st.just("["), st.just("]"),
                          st.text(max_size=20), st.integers().map(str)), max_size=40))
def test_parse_turn_never_raises_on_fuzzed_turns(parts):
    out = parse_turn("".join(parts), allow_text_around_calls=bool(len(parts) % 2))
    for call in out.calls:  # whatever it accepts can travel as JSON and protobuf text
        json.dumps(call.arguments, allow_nan=False).encode("utf-8")
        call.name.encode("utf-8")


async def test_retry_transient_rides_out_a_blip_and_reports_a_long_outage():
    attempts = []

    async def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise Unavailable("task_gen restarting")
        return "ok"
    assert await retry_transient(flaky, what="ListTasks", deadline_s=5, base_s=0.01) == "ok"
    assert len(attempts) == 3

    async def down():
        raise Unavailable("nothing listens")
    with pytest.raises(Unavailable, match=r"ListTasks: still failing after \d+s and \d+ attempts"):
        await retry_transient(down, what="ListTasks", deadline_s=0.1, base_s=0.02)

    async def wrong():
        raise NotFound("no such task")
    with pytest.raises(NotFound):  # not transient: raised at once
        await retry_transient(wrong, what="GetTask", deadline_s=5)
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(Unavailable):  # a stop request ends the waiting early
        await retry_transient(down, what="x", deadline_s=60, should_stop=stop.is_set)
