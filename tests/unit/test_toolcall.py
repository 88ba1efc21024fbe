import pytest

from evolver.envs.base import Call, Tool
from evolver.models.toolcall import parse_turn, system_prompt

GOOD = '<tool_call>{"name": "mv", "arguments": {"source": "a", "destination": "b"}}</tool_call>'


@pytest.mark.parametrize("text, calls, kinds, answer", [
    (GOOD, [Call("mv", {"source": "a", "destination": "b"}, "call_0")], [], ""),
    (GOOD + "\n" + GOOD.replace("mv", "cp"), [Call("mv", {"source": "a", "destination": "b"}, "call_0"),
                                                Call("cp", {"source": "a", "destination": "b"}, "call_1")], [], ""),
    ('<tool_call>\n{"name": "ls"}\n</tool_call>', [Call("ls", {}, "call_0")], [], ""),
    ('<tool_call>{"name": "ls", "arguments": "{\\"a\\": true}"}</tool_call>', [Call("ls", {"a": True}, "call_0")], [], ""),
    ("The file is moved.", [], [], "The file is moved."),
    ("", [], [], ""),
    ('<tool_call>{"name": "mv", "arguments": {"source": </tool_call>', [], ["bad_json"], ""),
    ('<tool_call>["mv"]</tool_call>', [], ["not_object"], ""),
    ('<tool_call>{"arguments": {}}</tool_call>', [], ["missing_name"], ""),
    ('<tool_call>{"name": "", "arguments": {}}</tool_call>', [], ["missing_name"], ""),
    ('<tool_call>{"name": "ls", "arguments": [1]}</tool_call>', [], ["bad_arguments"], ""),
    ('<tool_call>{"name": "ls", "arguments": {}, "id": 3}</tool_call>', [], ["unknown_keys"], ""),
    ('<tool_call>{"name": "ls", "arguments": {}}', [], ["unclosed"], ""),
    ("Sure! " + GOOD, [Call("mv", {"source": "a", "destination": "b"}, "call_0")], ["stray_text"], "Sure!"),
    ('<tool_call><tool_call>{"name": "ls"}</tool_call>', [], ["nested"], ""),
    ('{"name": "ls"}</tool_call>', [], ["stray_text"], '{"name": "ls"}</tool_call>'),
    ('<tool_call>{"name": "__import__(\'os\').system(\'x\')", "arguments": {}}</tool_call>',
     [Call("__import__('os').system('x')", {}, "call_0")], [], ""),  # just a (bad) tool name string
])
def test_parser_table(text, calls, kinds, answer):
    turn = parse_turn(text)
    assert turn.calls == calls
    assert [e.kind for e in turn.errors] == kinds
    assert turn.text == answer
    if kinds:
        assert "could not be parsed" in turn.error_observation()


def test_text_around_calls_can_be_allowed():
    turn = parse_turn("Moving it. " + GOOD, allow_text_around_calls=True)
    assert turn.ok and turn.text == "Moving it." and len(turn.calls) == 1


def test_system_prompt_lists_tool_schemas():
    p = system_prompt([Tool("cd", "Change dir.", {"type": "object", "properties": {"folder": {"type": "string"}}})])
    assert '"name": "cd"' in p and "<tool_call>" in p and '"folder"' in p
