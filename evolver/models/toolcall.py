"""The tool-call format: Hermes/Qwen style, as AgentEvolver uses for BFCL (spec §8.5).

The system prompt lists the tools as JSON inside <tools></tools> and asks for each call as
<tool_call>{"name": ..., "arguments": {...}}</tool_call>. parse_turn is strict: it returns the
calls of one assistant turn, or structured errors that become an observation for the model.
It never raises and never evaluates anything."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from evolver.envs.base import Call, Tool
from evolver.envs.caps import arguments_problem

OPEN, CLOSE = "<tool_call>", "</tool_call>"

SYSTEM_TEMPLATE = """You are a helpful assistant that completes tasks by calling tools.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>
When the request is complete, or cannot be completed with these tools, answer in plain text without any tool call."""


def system_prompt(tools: Sequence[Tool], preamble: str = "") -> str:
    lines = "\n".join(json.dumps({"type": "function", "function": {
        "name": t.name, "description": t.description, "parameters": t.parameters}}, ensure_ascii=False) for t in tools)
    body = SYSTEM_TEMPLATE.format(tools=lines)
    return f"{preamble.strip()}\n\n{body}" if preamble.strip() else body


@dataclass(frozen=True)
class ParseError:
    kind: str  # bad_json | not_object | missing_name | bad_arguments | unknown_keys | unclosed | stray_text | nested
    message: str
    index: int  # which <tool_call> block (0-based), -1 for the turn as a whole


@dataclass
class ParsedTurn:
    calls: list[Call] = field(default_factory=list)
    text: str = ""  # the assistant's plain text (the answer, when there are no calls)
    errors: list[ParseError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_observation(self) -> str:
        return ("Your tool call could not be parsed: " + "; ".join(e.message for e in self.errors) +
                '. Use <tool_call>{"name": "...", "arguments": {...}}</tool_call> with nothing else around the calls.')


# Bounds on one parsed call: beyond them the call is refused with an error observation (the
# environment enforces its own, larger, caps too).
MAX_NAME_CHARS = 256
MAX_ARGUMENT_DEPTH = 32


def parse_turn(text: str, *, allow_text_around_calls: bool = False) -> ParsedTurn:
    """Calls and text of one assistant turn. Text around calls is an error unless allowed (a
    model that both answers and calls is ambiguous about what it wants). Never raises: anything
    unexpected in the text becomes a parse error."""
    try:
        return _parse_turn(text, allow_text_around_calls)
    except Exception as e:  # a promise to the rollout: one odd turn never fails the group
        return ParsedTurn(text="", errors=[ParseError("unparseable", f"the turn could not be parsed ({type(e).__name__})", -1)])


def _parse_turn(text: str, allow_text_around_calls: bool) -> ParsedTurn:
    out = ParsedTurn()
    pos, index, outside = 0, 0, []
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            outside.append(text[pos:])
            break
        outside.append(text[pos:start])
        end = text.find(CLOSE, start + len(OPEN))
        if end < 0:
            out.errors.append(ParseError("unclosed", f"call {index} has no closing {CLOSE}", index))
            break
        body = text[start + len(OPEN):end]
        if OPEN in body:
            out.errors.append(ParseError("nested", f"call {index} contains another {OPEN} before its {CLOSE}", index))
        else:
            call = _parse_call(body, index, out.errors)
            if call is not None:
                out.calls.append(call)
        pos = end + len(CLOSE)
        index += 1
    stray = CLOSE in "".join(outside)
    out.text = "".join(outside).strip()
    if stray:
        out.errors.append(ParseError("stray_text", f"{CLOSE} without an opening {OPEN}", -1))
    if index and out.text and not allow_text_around_calls:
        out.errors.append(ParseError("stray_text", "text outside the tool calls", -1))
    return out


def _parse_call(body: str, index: int, errors: list[ParseError]) -> Call | None:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        errors.append(ParseError("bad_json", f"call {index} is not valid JSON ({e.msg} at char {e.pos})", index))
        return None
    except RecursionError:
        errors.append(ParseError("bad_json", f"call {index} is nested too deeply", index))
        return None
    except ValueError as e:  # e.g. an integer beyond Python's digit limit
        errors.append(ParseError("bad_json", f"call {index} is not usable JSON ({str(e)[:80]})", index))
        return None
    if not isinstance(obj, dict):
        errors.append(ParseError("not_object", f"call {index} must be a JSON object", index))
        return None
    extra = sorted(set(obj) - {"name", "arguments"})
    if extra:
        errors.append(ParseError("unknown_keys", f"call {index} has unknown keys {extra} (only name, arguments)", index))
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append(ParseError("missing_name", f"call {index} needs a non-empty string \"name\"", index))
        return None
    if len(name) > MAX_NAME_CHARS or arguments_problem(name, 0):
        errors.append(ParseError("bad_name", f"call {index} \"name\" is not a tool name", index))
        return None
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            pass
    if not isinstance(args, dict):
        errors.append(ParseError("bad_arguments", f"call {index} \"arguments\" must be a JSON object", index))
        return None
    problem = arguments_problem(args, MAX_ARGUMENT_DEPTH)
    if problem:
        errors.append(ParseError("bad_arguments", f"call {index} \"arguments\" {problem}", index))
        return None
    return Call(name, args, f"call_{index}")


def render_tool_results(results: Sequence[tuple[str, str]]) -> str:
    """Observation text for a turn's results: (tool name, content) pairs."""
    return "\n".join(f"<tool_response>\n{json.dumps({'name': n, 'content': c}, ensure_ascii=False)}\n</tool_response>"
                     for n, c in results)
