"""Tool calls against BFCL instances without eval: parse ground-truth strings with ast, check
arguments against the tool schema, call the bound method, format results as BFCL does."""

from __future__ import annotations

import ast
import copy
import inspect
import json
import threading
from typing import Any, Sequence

from evolver.envs.arguments import check_object
from evolver.envs.base import Call, CallResult, Tool


# CPython 3.11 can fail ast.parse in concurrent threads ("AST constructor recursion depth
# mismatch", gh-106905); environment calls run in worker threads, so parsing is serialised.
_PARSE_LOCK = threading.Lock()


class CallSyntaxError(ValueError):
    """A call string that is not `name(literal args...)`."""


def parse_call(text: str) -> Call:
    """`mv(source='a', destination='b')` -> Call. Only literal arguments are accepted; anything
    else (names, calls, attribute access) is rejected, never evaluated. Positional arguments are
    kept under "__args__" for the dispatcher to bind."""
    try:
        with _PARSE_LOCK:
            node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise CallSyntaxError(f"not a call: {text!r} ({e.msg})") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise CallSyntaxError(f"not a plain function call: {text!r}")
    try:
        with _PARSE_LOCK:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
    except ValueError:
        raise CallSyntaxError(f"arguments must be literals: {text!r}") from None
    if any(kw.arg is None for kw in node.keywords):
        raise CallSyntaxError(f"**kwargs are not allowed: {text!r}")
    if args:
        kwargs["__args__"] = args
    return Call(node.func.id, kwargs)


def format_result(value: Any) -> str:
    """BFCL's own rendering of a return value (the response checker compares these strings)."""
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _bind_positional(method, call: Call) -> dict[str, Any]:
    kwargs = {k: v for k, v in call.arguments.items() if k != "__args__"}
    positional = call.arguments.get("__args__", [])
    if positional:
        names = [p.name for p in inspect.signature(method).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) > len(names):
            raise TypeError(f"{call.name}() takes {len(names)} positional arguments but {len(positional)} were given")
        for name, value in zip(names, positional):
            if name in kwargs:
                raise TypeError(f"{call.name}() got multiple values for argument '{name}'")
            kwargs[name] = value
    return kwargs


def dispatch(methods: dict[str, tuple[str, Any]], tools: dict[str, Tool], call: Call) -> CallResult:
    """Runs one call. Every failure is an error observation, never an exception."""
    if call.name not in methods or call.name not in tools:
        available = ", ".join(sorted(n for n in methods if n in tools))
        return CallResult(call.call_id, f"Error: unknown tool '{call.name}'. Available tools: {available}", True)
    _, method = methods[call.name]
    try:
        kwargs = _bind_positional(method, call)
    except TypeError as e:
        return CallResult(call.call_id, f"Error during execution: {e}", True)
    problems = check_object(kwargs, tools[call.name].parameters)
    if problems:
        return CallResult(call.call_id, f"Error: invalid arguments for {call.name}: " + "; ".join(problems), True)
    try:
        # A copy: some BFCL APIs keep argument objects in their state and mutate them later
        # (post_tweet's `mentions`), which would rewrite recorded calls and cached ground truth.
        value = method(**copy.deepcopy(kwargs))
    except Exception as e:  # an exception inside the API is the agent's observation
        return CallResult(call.call_id, f"Error during execution: {e}", True)
    try:
        text = format_result(value)
    except (ValueError, RecursionError) as e:  # e.g. an integer past Python's 4300-digit str limit
        return CallResult(call.call_id, f"Error during execution: the result cannot be shown "
                                        f"({type(e).__name__}: {str(e)[:80]})", True)
    is_error = isinstance(value, dict) and "error" in value
    return CallResult(call.call_id, text, is_error)


def run_calls(methods, tools, calls: Sequence[Call]) -> list[CallResult]:
    return [dispatch(methods, tools, c) for c in calls]
