"""Bounds on everything that enters through gRPC or the bus, checked once at the boundary.

One walk over a protobuf message (its descriptor says what each field is) checks every id for
length, charset and KV-key safety, every other string for size and every repeated field for
count. The gRPC error interceptor runs it on each request (INVALID_ARGUMENT naming the field),
the bus worker on each decoded message (a poison message, dead-lettered with the reason), and
the run config reuses the same numbers. Error texts quote at most a short prefix of a bad value.
"""

from __future__ import annotations

import re
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from evolver.errors import FieldViolation, InvalidArgument

# An id: a NATS KV key and a subject token safe value. Letters, digits, '_', '-', '=', '/' in
# dot-separated non-empty parts ("run-1.s0.t3", "explore/run-1.bfcl.0/w1"); no leading, trailing
# or doubled dot, so "../x" and "a b" and "*" are refused.
ID_MAX_CHARS = 128
_ID_RE = re.compile(r"[A-Za-z0-9_=/-]+(\.[A-Za-z0-9_=/-]+)*")
# Ids that are stored only as text, never used as a key (a model's call id): length only.
TEXT_ID_FIELDS = frozenset({"call_id"})
# Id fields that are compounds of others and may be longer than one id.
LONG_ID_FIELDS = frozenset({"trajectory_id", "walk_id", "experience_id"})
LONG_ID_MAX_CHARS = 512

# Every other string (queries, observations, JSON documents, YAML config).
TEXT_MAX_CHARS = 4 << 20
# Fields whose natural size is larger (offloaded payloads, state documents).
BIG_TEXT_FIELDS = frozenset({"state_json", "initial_state_json", "reference_end_state_json", "end_state_json"})
BIG_TEXT_MAX_CHARS = 16 << 20
REPEATED_MAX = 100_000
SHORT_TEXT_MAX_CHARS = 1024  # names, splits, phases, display names
SHORT_TEXT_FIELDS = frozenset({"display_name", "split", "phase", "address"})

# Run config and service caps that several modules share.
GROUP_SIZE_MAX = 64
EXPLORATIONS_MAX = 256
WALKS_MAX, STEPS_PER_WALK_MAX = 32, 64

PREVIEW_CHARS = 32


def preview(value: object, n: int = PREVIEW_CHARS) -> str:
    """A short, printable prefix of a value for error messages (never the whole of a big one)."""
    s = value if isinstance(value, str) else repr(value)
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return repr(s[:n]) + (f"... ({len(s)} chars)" if len(s) > n else "")


def id_problem(value: str, *, max_chars: int = ID_MAX_CHARS) -> str | None:
    """Why a non-empty id is unusable, or None."""
    if len(value) > max_chars:
        return f"at most {max_chars} characters, got {len(value)} ({preview(value)})"
    if not _ID_RE.fullmatch(value):
        return (f"use letters, digits, '_', '-', '=', '/' in dot-separated parts ({preview(value)})")
    return None


def check_id(field: str, value: str, *, required: bool = True) -> None:
    """InvalidArgument unless value is a usable id (empty allowed when not required)."""
    if not value:
        if required:
            raise InvalidArgument(field, "must be non-empty")
        return
    problem = id_problem(value)
    if problem:
        raise InvalidArgument(field, problem)


def _is_id_field(name: str) -> bool:
    return name == "id" or name.endswith("_id") or name.endswith("_ids")


def violations(message: Message, prefix: str = "", out: list[FieldViolation] | None = None,
               *, limit: int = 8) -> list[FieldViolation]:
    """Every bound a message breaks (up to `limit`), with dotted field paths."""
    out = [] if out is None else out
    for fd, value in message.ListFields():
        if len(out) >= limit:
            break
        path = f"{prefix}{fd.name}"
        repeated = fd.is_repeated
        numeric = fd.type not in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)
        # Numeric arrays (token ids, log-probs) are as long as a sequence is: the message size
        # limit bounds them; lists of strings and messages have a count cap.
        if repeated and not numeric and len(value) > REPEATED_MAX:
            out.append(FieldViolation(path, f"at most {REPEATED_MAX} entries, got {len(value)}"))
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                for k, v in list(value.items())[:REPEATED_MAX]:
                    if isinstance(k, str) and len(k) > SHORT_TEXT_MAX_CHARS:
                        out.append(FieldViolation(f"{path}[{preview(k, 16)}]", "map key too long"))
                    if isinstance(v, Message):
                        violations(v, f"{path}[{preview(k, 16)}].", out, limit=limit)
                    elif isinstance(v, str) and len(v) > TEXT_MAX_CHARS:
                        out.append(FieldViolation(f"{path}[{preview(k, 16)}]", f"at most {TEXT_MAX_CHARS} characters"))
                continue
            for i, item in enumerate(value if repeated else [value]):
                violations(item, f"{path}[{i}]." if repeated else f"{path}.", out, limit=limit)
                if len(out) >= limit:
                    break
            continue
        if fd.type != FieldDescriptor.TYPE_STRING:
            continue
        for i, item in enumerate(value if repeated else [value]):
            where = f"{path}[{i}]" if repeated else path
            problem = _string_problem(fd.name, item)
            if problem:
                out.append(FieldViolation(where, problem))
                break
    return out


def _string_problem(name: str, value: str) -> str | None:
    if not value:
        return None
    if _is_id_field(name):
        if name in TEXT_ID_FIELDS:
            return None if len(value) <= ID_MAX_CHARS else f"at most {ID_MAX_CHARS} characters, got {len(value)}"
        return id_problem(value, max_chars=LONG_ID_MAX_CHARS if name in LONG_ID_FIELDS else ID_MAX_CHARS)
    cap = (BIG_TEXT_MAX_CHARS if name in BIG_TEXT_FIELDS else
           SHORT_TEXT_MAX_CHARS if name in SHORT_TEXT_FIELDS else TEXT_MAX_CHARS)
    if len(value) > cap:
        return f"at most {cap} characters, got {len(value)} ({preview(value)})"
    return None


def check_message(message: Message, prefix: str = "") -> None:
    """InvalidArgument naming every field (up to a few) that breaks a bound."""
    found = violations(message, prefix)
    if found:
        raise InvalidArgument(violations=found)
