"""Ground-truth parsing, argument checks and dispatch: pure, no network."""

import pytest

from evolver.envs.arguments import check_object, schema_problems
from evolver.envs.base import Call
from evolver.envs.bfcl import BfclEnvironment, catalog, tasks
from evolver.envs.bfcl.calls import CallSyntaxError, dispatch, format_result, parse_call


def test_parse_ground_truth_calls():
    assert parse_call("mv(source='a', destination='b')") == Call("mv", {"source": "a", "destination": "b"})
    assert parse_call("sort('final_report.pdf')") == Call("sort", {"__args__": ["final_report.pdf"]})
    assert parse_call("f(x=[1, 2.5, {'k': (1, 2)}], y=-3, z=None)").arguments == {
        "x": [1, 2.5, {"k": (1, 2)}], "y": -3, "z": None}


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch /tmp/pwned')",
    "f(x=__import__('os'))",
    "f(x=open('/etc/passwd').read())",
    "os.system('ls')",
    "f(**{'a': 1})",
    "f(x=y)",
    "mv(source='a'",
    "1 + 2",
])
def test_parse_rejects_anything_but_literal_calls(text):
    with pytest.raises(CallSyntaxError):
        parse_call(text)


def test_every_bfcl_tool_has_a_valid_schema():
    tools = [t for c in catalog.CLASSES for t in catalog._docs(c)]
    # One documented tool per public method of each of the eight classes.
    for c in catalog.CLASSES:
        methods = set(catalog.method_table(catalog.instantiate([c], {})))
        assert {t.name for t in catalog._docs(c)} == methods, c
    assert len(tools) == 128
    for tool in tools:
        assert schema_problems(tool.parameters) == [], tool.name
        assert tool.description


def test_argument_checks():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "number"},
                                               "c": {"type": "array", "items": {"type": "string"}}},
              "required": ["a"]}
    assert check_object({"a": 1, "b": 2, "c": ["x"]}, schema) == []
    assert check_object({}, schema) == ["missing required argument 'a'"]
    assert check_object({"a": True}, schema) == ["argument 'a': expected integer, got bool"]
    assert check_object({"a": 1, "c": ["x", 3]}, schema) == ["argument 'c'[1]: expected string, got int"]
    assert "unknown argument 'zz'" in check_object({"a": 1, "zz": 0}, schema)[0]


def fresh(classes=("GorillaFileSystem",), task="multi_turn_base_0"):
    entry = tasks.by_id()[task]
    inst = catalog.instantiate(list(classes), entry.seed.initial_state)
    return catalog.method_table(inst), {t.name: t for t in catalog.tools_for(list(classes))}, inst


def test_dispatch_errors_are_observations():
    methods, tools, _ = fresh()
    assert dispatch(methods, tools, Call("rm_rf_everything", {})).content.startswith("Error: unknown tool")
    assert dispatch(methods, tools, Call("_load_scenario", {})).content.startswith("Error: unknown tool")
    bad = dispatch(methods, tools, Call("cd", {"folder": 3}))
    assert bad.is_error and "expected string" in bad.content
    missing = dispatch(methods, tools, Call("cd", {}))
    assert missing.is_error and "missing required argument 'folder'" in missing.content
    ok = dispatch(methods, tools, Call("ls", {}))
    assert not ok.is_error and '"document"' in ok.content


def test_code_in_arguments_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    methods, tools, inst = fresh()
    payload = f"__import__('os').system('touch {marker}')"
    r = dispatch(methods, tools, Call("cd", {"folder": payload}))
    assert r.is_error and r.content.startswith('{"error": "cd:')
    r2 = dispatch(methods, tools, Call("mkdir", {"dir_name": f"x'); __import__('os').system('touch {marker}'); ('"}))
    assert not marker.exists()
    assert r2.content  # ran as a plain (odd) directory name, not as code


def test_results_are_formatted_like_bfcl():
    assert format_result("plain") == "plain"
    assert format_result({"a": 1}) == '{"a": 1}'
    assert format_result([1, 2]) == "[1, 2]"
    assert format_result(None) == "None"


def test_split_is_first_half_train_second_half_test_in_file_order():
    entries = tasks.load_entries()
    assert len(entries) == 200
    assert [e.seed.split for e in entries[:100]] == ["train"] * 100
    assert [e.seed.split for e in entries[100:]] == ["test"] * 100
    assert entries[0].seed.seed_task_id == "multi_turn_base_0" and entries[199].seed.seed_task_id == "multi_turn_base_199"
    assert set(entries[0].seed.toolsets) == {"GorillaFileSystem", "TwitterAPI"}


def test_multi_turn_episode_advances_on_answers_and_ends_after_last_turn():
    ep = BfclEnvironment().create(seed_task_id="multi_turn_base_0")
    turns = tasks.by_id()["multi_turn_base_0"].seed.user_turns
    assert ep.user_message == turns[0] and len(turns) == 4
    assert ep.step([Call("ls", {})]).next_user_message == ""  # tool results, same turn
    for t in range(1, 4):
        assert ep.step([]).next_user_message == turns[t]
    last = ep.step([])
    assert last.done and ep.done


def test_recorded_calls_survive_apis_that_mutate_their_arguments():
    # post_tweet stores `mentions` and mention() extends it in place; replay must not see that.
    env = BfclEnvironment()
    entry = tasks.by_id()["multi_turn_base_147"]
    ep = env.create(seed_task_id="multi_turn_base_147")
    for turn in entry.ground_truth:
        ep.step([Call(c.name, {k: (list(v) if isinstance(v, list) else v) for k, v in c.arguments.items()})
                 for c in turn])
        ep.step([])
    assert ep.evaluate().success
    assert tasks.by_id()["multi_turn_base_147"].ground_truth[0][1].arguments["mentions"] == ["@industryexperts"]
