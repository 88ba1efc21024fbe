"""Caps on what an environment server accepts from an agent and sends back, and the sanitiser that
makes any state JSON-safe. All pure; the server and its worker processes share them.

An agent's legitimate action can produce a value the server's own serialisation would choke on:
power(10, 5000) (an integer past Python's 4300-digit str limit), a directory tree 300 levels
deep, NaN. Those are the agent's doing, so they must come back as data (a clipped observation, a
sanitised state that simply does not match the reference), never as INTERNAL.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from evolver.envs.base import Call, CallResult


@dataclass(frozen=True)
class EnvironmentCaps:
    """Per-server limits (python -m evolver.envs.serve flags; docs/RELIABILITY.md)."""

    call_timeout_s: float = 10.0  # one environment call (Create, Step, Evaluate, GetState, Release)
    max_calls_per_step: int = 32  # calls past this in one Step are answered with an error, not run
    max_argument_chars: int = 64 * 1024  # one call's arguments_json
    max_argument_depth: int = 32  # nesting of one call's arguments
    max_observation_chars: int = 32 * 1024  # one call's result (clipped, with a marker)
    max_state_chars: int = 8 << 20  # a GetState document (beyond: replaced by its digest)
    max_state_depth: int = 64  # nesting kept in a state document
    max_string_chars: int = 256 * 1024  # one string inside a state document
    instance_memory_mb: int = 4096  # address-space limit of an instance's worker process (0 = none)


def clip_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return _utf8(text)
    return _utf8(text[:limit]) + f"... [clipped: {len(text)} characters in all]"


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def sanitize(value: Any, caps: EnvironmentCaps, depth: int = 0) -> Any:
    """A JSON-safe copy: huge integers and non-finite floats as tagged strings, strings clipped,
    nesting past max_state_depth replaced by a marker, anything else as its str()."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() <= 3000:  # ~900 digits: printable, comparable
            return value
        raw = value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
        return f"<integer of {value.bit_length()} bits sha256:{hashlib.sha256(raw).hexdigest()[:16]}>"
    if isinstance(value, float):
        return value if math.isfinite(value) else ("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
    if isinstance(value, str):
        return clip_text(value, caps.max_string_chars)
    if depth >= caps.max_state_depth:
        return f"<nested deeper than {caps.max_state_depth} levels>"
    if isinstance(value, dict):
        return {clip_text(str(k), 1024): sanitize(v, caps, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [sanitize(v, caps, depth + 1) for v in items]
    return clip_text(str(value), caps.max_string_chars)


def canonical_state(state: Any, caps: EnvironmentCaps) -> tuple[str, str]:
    """(canonical JSON, hash) of a state, JSON-safe and size-capped. The hash equals
    evolver.envs.base.state_hash for every state that needed no sanitising."""
    text = json.dumps(sanitize(state, caps), sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(text) > caps.max_state_chars:
        digest = hashlib.sha256(text.encode()).hexdigest()
        text = json.dumps({"__state_too_large__": {"chars": len(text), "sha256": digest}},
                          sort_keys=True, separators=(",", ":"))
    return text, hashlib.sha256(text.encode()).hexdigest()[:32]


def safe_details(details: Any, caps: EnvironmentCaps) -> dict[str, Any]:
    return sanitize(details if isinstance(details, dict) else {"details": details}, caps)


def parse_arguments(call_id: str, name: str, arguments_json: str, caps: EnvironmentCaps) -> Call | CallResult:
    """A Call, or an error observation when the arguments are not a usable JSON object (malformed
    or oversized model output is an observation, never an exception)."""
    label = clip_text(name, 64) or "<unnamed>"
    if len(arguments_json) > caps.max_argument_chars:
        return CallResult(call_id, f"Error: arguments of {label} are {len(arguments_json)} characters; "
                                   f"at most {caps.max_argument_chars} are accepted", True)
    try:
        args: Any = json.loads(arguments_json) if arguments_json.strip() else {}
    except json.JSONDecodeError as e:
        return CallResult(call_id, f"Error: arguments of {label} are not valid JSON: {e.msg}", True)
    except RecursionError:
        return CallResult(call_id, f"Error: arguments of {label} are nested too deeply", True)
    except ValueError as e:  # an integer past the digit limit
        return CallResult(call_id, f"Error: arguments of {label} are not usable: {str(e)[:100]}", True)
    if not isinstance(args, dict):
        return CallResult(call_id, f"Error: arguments of {label} must be a JSON object, got {type(args).__name__}", True)
    problem = arguments_problem(args, caps.max_argument_depth)
    if problem:
        return CallResult(call_id, f"Error: arguments of {label} {problem}", True)
    return Call(name, args, call_id)


def arguments_problem(value: Any, max_depth: int, depth: int = 0) -> str | None:
    """Why a parsed arguments object cannot travel as JSON and protobuf text (nested deeper than
    max_depth, NaN or Infinity, text that is not UTF-8), or None. The model-output parser and the
    environment server both check with this."""
    if depth > max_depth:
        return f"are nested deeper than {max_depth} levels"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no protobuf string or JSON document can carry it
            return "hold text that is not valid UTF-8"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "hold NaN or Infinity, which JSON does not allow"
    children = [*value.keys(), *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else []
    for child in children:
        problem = arguments_problem(child, max_depth, depth + 1)
        if problem:
            return problem
    return None
