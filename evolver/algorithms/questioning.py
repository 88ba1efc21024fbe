"""Self-questioning without an LLM: schema-guided exploration walks, candidate tasks cut from
walks, natural-language queries (no tool names, keys or JSON), unique task ids with provenance,
and feasibility by replay.

The walk planner fills tool arguments from the JSON schema's types and from values seen in
earlier observations and in the initial state, and prefers tools whose calls have reached
unseen states (a per-tool novelty bandit over state hashes). NaturalWriter is the LLM-free
default of the TaskWriter seam, where the LLM task writer plugs in."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from evolver.algorithms.state import KEY_FIELD, changes, field_values, scalar_values
from evolver.envs.base import Call, Tool

GENERATOR_VERSION = "schema-walk/3"  # /2: natural-language queries; /3: answer facts are values, never field names


@dataclass
class WalkStep:
    call: Call
    content: str
    is_error: bool
    state_hash: str
    changed_state: bool
    new_values: list[Any] = field(default_factory=list)
    new_fields: list[tuple[str, Any]] = field(default_factory=list)  # (field name, value) returned


@dataclass
class Walk:
    walk_id: str
    initial_state: dict[str, Any]
    steps: list[WalkStep] = field(default_factory=list)
    prompt_version: str = ""  # the explorer role's, when an LLM chose the steps


class WalkPlanner:
    def __init__(self, tools: Sequence[Tool], initial_state: Any, seed: int, optional_arg_p: float = 0.3,
                 use_returned_fields: bool = True):
        self.tools = list(tools)
        self.rng = random.Random(seed)
        self.optional_arg_p = optional_arg_p
        self.use_returned_fields = use_returned_fields  # False: the earlier planner (bench baseline)
        self.pool: list[Any] = [v for v in scalar_values(initial_state, limit=500) if not isinstance(v, float)]
        # Values by the field name they came under, from the state and from results: an id
        # argument is filled with an id the environment has shown, not a guess.
        self.fields: dict[str, list[Any]] = {}
        self._add_fields(field_values(initial_state))
        self.calls: dict[str, int] = {}
        self.novel: dict[str, int] = {}
        self.seen_states: set[str] = set()

    def observe(self, step: WalkStep) -> None:
        name = step.call.name
        self.calls[name] = self.calls.get(name, 0) + 1
        if step.state_hash and step.state_hash not in self.seen_states:
            self.seen_states.add(step.state_hash)
            self.novel[name] = self.novel.get(name, 0) + 1
        if not step.is_error:
            for v in step.new_values:
                if v not in self.pool:
                    self.pool.append(v)
            self._add_fields(step.new_fields)

    def observe_state(self, state: Any) -> None:
        self._add_fields(field_values(state))

    def _add_fields(self, pairs) -> None:
        for name, v in pairs:
            seen = self.fields.setdefault(name.lower(), [])
            if v not in seen and len(seen) < 200:
                seen.append(v)

    def _by_field(self, name: str, kind: str | None) -> list[Any]:
        """Values returned under this field name (or, for x_id, under id inside an x map)."""
        ok = {"string": lambda v: isinstance(v, str), "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}.get(kind or "", lambda v: True)
        names = [name.lower()]
        if name.lower().endswith("_id"):
            names.append("id")
        found = [v for n in names for v in self.fields.get(n, []) if ok(v)]
        # No field of that name: the keys of id-keyed maps the environment showed (an item's
        # SKU, a user's handle) are what a string argument most often refers to.
        return found or ([v for v in self.fields.get(KEY_FIELD, []) if ok(v)] if kind == "string" and self.rng.random() < 0.6
                         else [])

    def _score(self, tool: Tool) -> float:
        # Optimistic novelty: untried tools first, then tools that keep finding new states.
        return (self.novel.get(tool.name, 0) + 1) / (self.calls.get(tool.name, 0) + 1)

    def next_call(self, index: int) -> Call:
        weights = [self._score(t) ** 2 for t in self.tools]
        tool = self.rng.choices(self.tools, weights=weights, k=1)[0]
        return Call(tool.name, self._arguments(tool.parameters), f"walk_{index}")

    def _arguments(self, schema: dict) -> dict[str, Any]:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        args = {}
        for name, sub in props.items():
            if name in required or self.rng.random() < self.optional_arg_p:
                args[name] = self._value(name, sub)
        return args

    def _value(self, name: str, schema: dict) -> Any:
        kind = schema.get("type")
        if isinstance(kind, list):  # a union ("integer" or "string"): its first type
            kind = kind[0] if kind else None
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        returned = self._by_field(name, kind) if self.use_returned_fields and kind in ("string", "integer", "number") \
            else []
        if returned and self.rng.random() < 0.85:
            return self.rng.choice(returned)
        strings = [v for v in self.pool if isinstance(v, str) and 0 < len(v) <= 80]
        numbers = [v for v in self.pool if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if kind == "string":
            related = [s for s in strings if _related(name, s)]
            if related and self.rng.random() < 0.7:
                return self.rng.choice(related)
            # A made-up value is a plain word: never the parameter's own name (it would leak into
            # the task text).
            return self.rng.choice(strings) if strings and self.rng.random() < 0.8 else \
                f"{self.rng.choice(_FILLER_WORDS)}{self.rng.randint(1, 99)}"
        if kind == "integer":
            ints = [int(v) for v in numbers if float(v).is_integer()]
            return self.rng.choice(ints) if ints and self.rng.random() < 0.6 else self.rng.randint(0, 10)
        if kind == "number":
            return float(self.rng.choice(numbers)) if numbers and self.rng.random() < 0.6 else round(self.rng.uniform(0, 100), 2)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "array":
            item = schema.get("items", {"type": "string"})
            return [self._value(name, item)]
        if kind == "object":
            return {}
        return self.rng.choice(strings) if strings else name


_FILLER_WORDS = ["notes", "draft", "alpha", "summary", "plan", "memo", "report", "sample"]


def _related(param: str, value: str) -> bool:
    # file_name -> values with an extension; *_id -> short tokens; dir/folder -> no extension.
    if "file" in param:
        return "." in value and " " not in value
    if "dir" in param or "folder" in param:
        return "." not in value and " " not in value and len(value) < 40
    if param.endswith("id"):
        return " " not in value and len(value) < 24
    return True


def short_description(tool: Tool) -> str:
    text = tool.description.split("Tool description:", 1)[-1].strip()
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    return first[:1].lower() + first[1:] if first else tool.name


class TaskWriter(Protocol):
    """Turns a call sequence into a natural-language request. NaturalWriter below is the
    LLM-free default; an LLM task writer implements the same method."""

    def write(self, calls: Sequence[Call], tools: dict[str, Tool], expected_facts: Sequence[str]) -> str: ...


_OPENERS = ["Please {x}.", "Could you {x}?", "I need you to {x}.", "Can you {x}?", "{X}."]
_THEN = [" Then {x}.", " After that, {x}.", " Next, {x}.", " Once that is done, {x}."]
_FACTS = [" Tell me what you find.", " Let me know the result.", " Tell me what it says.", " What do you get?"]
_WITH = ["with {v} as the {r}", "using {v} as the {r}", "where the {r} is {v}"]
_SNAKE = re.compile(r"\b\w+_\w+\b")


def _clause(text: str, words: int = 10) -> str:
    """The first clause of a description, lower-cased, without identifiers or defaults."""
    text = re.split(r"(?<=[.!?])\s|\. |; |\(", text.strip(), maxsplit=1)[0].rstrip(". ")
    text = re.sub(r"(?i)defaults? to .*$", "", text)
    text = _SNAKE.sub("", text)
    text = re.sub(r"^(?i:the|a|an) ", "", " ".join(text.split()))
    text = " ".join(text.split()[:words]).strip(" ,:")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text  # "Source name" -> "source name", not "ID"


def _say(value: Any) -> str:
    """A value as a person would write it: no JSON quoting or brackets."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        items = [_say(v) for v in value]
        return " and ".join(items) if len(items) <= 2 else ", ".join(items[:-1]) + " and " + items[-1]
    text = str(value)
    return f"'{text}'" if (" " in text or not text) else text


class NaturalWriter:
    """Requests as a user would write them: the action in the words of the tool's description,
    each value with the role its parameter's description gives it, never a tool name, an
    argument key or JSON. Varied (openers, connectors, phrasings) by a seed from the calls, so
    the same calls always read the same."""

    def write(self, calls: Sequence[Call], tools: dict[str, Tool], expected_facts: Sequence[str]) -> str:
        rng = random.Random(hashlib.sha256(json.dumps([(c.name, c.arguments) for c in calls], sort_keys=True,
                                                      default=str).encode()).hexdigest())
        phrases = [self._phrase(c, tools.get(c.name), rng) for c in calls]
        first = rng.choice(_OPENERS)
        text = first.format(x=phrases[0], X=phrases[0][:1].upper() + phrases[0][1:])
        for p in phrases[1:]:
            text += rng.choice(_THEN).format(x=p)
        if expected_facts:
            text += rng.choice(_FACTS)
        return text

    @staticmethod
    def _phrase(call: Call, tool: Tool | None, rng: random.Random) -> str:
        action = _clause(short_description(tool), 14) if tool else "do it"
        action = action[:1].lower() + action[1:]
        props = tool.parameters.get("properties", {}) if tool else {}
        withs, flags = [], []
        for key, value in call.arguments.items():
            sub = props.get(key, {})
            role = _clause(str(sub.get("description", "")))
            if isinstance(value, bool):
                if value != sub.get("default", False) and role:
                    flags.append(role[:1].lower() + role[1:] if value else f"do not {role[:1].lower() + role[1:]}")
                continue
            if value in ({}, [], None):
                continue
            withs.append(rng.choice(_WITH).format(v=_say(value), r=role) if role else f"with {_say(value)}")
        text = action
        if withs:
            text += ", " + (withs[0] if len(withs) == 1 else ", ".join(withs[:-1]) + " and " + withs[-1])
        if flags:
            text += ", and " + " and ".join(flags)
        return text


def names_code(query: str, tools: Sequence[Tool]) -> list[str]:
    """The tool names and argument keys a query writes as code (so it would give the answer
    away): any snake_case name anywhere; a one-word name followed by '(' '=' ':' or in quotes;
    a one-word tool name that is not an ordinary word of the tools' own descriptions (ls, mkdir).
    JSON braces count too."""
    found = ["JSON braces"] if ("{" in query or "}" in query) else []
    words = set(re.findall(r"[a-z]+", " ".join(t.description.lower() for t in tools)))
    low = query.lower()
    names = {t.name for t in tools} | {k for t in tools for k in t.parameters.get("properties", {})}
    for name in sorted(names):
        n = name.lower()
        if "_" in n:
            hit = n in low
        else:
            hit = bool(re.search(rf"\b{re.escape(n)}\s*[(=:]|[`'\"]{re.escape(n)}[`'\"]", low))
            if not hit and name in {t.name for t in tools} and n not in words:
                hit = bool(re.search(rf"\b{re.escape(n)}\b", low))
        if hit:
            found.append(name)
    return found


@dataclass
class Candidate:
    task_id: str
    query: str
    calls: list[Call]
    expected_facts: list[str]
    walk_id: str


def answer_facts(step: WalkStep, query: str = "", limit: int = 2) -> list[str]:
    """What a reply must contain to have told the user what a read returned: values the call
    returned (never a field name: "id" and "username" were once facts, and any reply that
    said "provided" or echoed the request passed), strings of 3 characters or more and numbers
    of 2 digits or more, that the request itself does not contain (an echo is not an answer).
    Nothing after a call that changed state: its check is the state."""
    if step.changed_state or step.is_error:
        return []
    q, out = query.lower(), []
    for v in scalar_values(step.content, keys=False):
        text = str(v)
        if isinstance(v, bool) or not isinstance(v, (str, int)) or len(text) < (3 if isinstance(v, str) else 2):
            continue
        if text.lower() in q or text in out:
            continue
        out.append(text)
        if len(out) == limit:
            break
    return out


def task_id_for(env_id: str, origin: str, walk_id: str, calls: Sequence[Call], *, generator: str = GENERATOR_VERSION,
                query: str = "") -> str:
    """Unique per (environment, starting state, walk, call sequence, generator, and for an LLM
    writer the query it wrote): never a seed's id (spec B5: reusing it merged GRPO groups of
    sibling tasks)."""
    parts = [env_id, origin, walk_id, generator, [(c.name, c.arguments) for c in calls]] + ([query] if query else [])
    blob = json.dumps(parts, sort_keys=True)
    return "syn-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


def candidates_from_walk(walk: Walk, tools: Sequence[Tool], env_id: str, origin: str, *, max_len: int = 4,
                         writer: TaskWriter | None = None) -> list[Candidate]:
    """Contiguous runs of successful calls that end in a call that changed state or read
    information (in an opaque environment, whose changes cannot be seen: any successful call;
    the LLM feasibility check is what verifies those); every run start, up to max_len calls."""
    opaque = bool(walk.steps) and not any(s.state_hash for s in walk.steps)
    writer = writer or NaturalWriter()
    by_name = {t.name: t for t in tools}
    out, seen = [], set()
    steps = walk.steps
    for start in range(len(steps)):
        for end in range(start, min(len(steps), start + max_len)):
            if steps[end].is_error:
                break
            last = steps[end]
            told = answer_facts(last)
            if not (last.changed_state or told or opaque):
                continue
            calls = [s.call for s in steps[start:end + 1]]
            if any((a.name, a.arguments) == (b.name, b.arguments) for a, b in zip(calls, calls[1:])):
                break  # the same call twice in a row: no one asks for that
            key = json.dumps([(c.name, c.arguments) for c in calls], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            tid = task_id_for(env_id, origin, walk.walk_id, calls)
            # The values the request names are known before it is written: the facts are what is
            # left once it is (a value the request already says cannot show the read was done).
            query = writer.write(calls, by_name, told)
            facts = answer_facts(last, query)
            out.append(Candidate(tid, query, [Call(c.name, c.arguments, f"ref_{i}") for i, c in enumerate(calls)],
                                 facts, walk.walk_id))
    return out


@dataclass
class Verdict:
    accepted: bool
    reason: str
    reference_end_state: dict[str, Any] | None = None


def check_replay(initial: dict[str, Any], end: dict[str, Any], results: Sequence[tuple[str, bool]],
                 expected_facts: Sequence[str]) -> Verdict:
    """Feasibility from a replay of the reference solution in a fresh instance: every call
    succeeds, and the replay changes state or returns the information the task asks for."""
    failed = [i for i, (_, err) in enumerate(results) if err]
    if failed:
        return Verdict(False, f"reference call {failed[0]} failed on replay: {results[failed[0]][0][:200]}")
    changed = bool(changes(initial, end))
    text = " ".join(c.lower() for c, _ in results)
    has_facts = bool(expected_facts) and all(str(f).lower() in text for f in expected_facts)
    if not changed and not has_facts:
        return Verdict(False, "trivial: the replay neither changed state nor returned the requested information")
    return Verdict(True, "replayed", end)


def rejection_kind(reason: str) -> str:
    """A rejection reason without its particulars, for counting: "reference call 2 failed on
    replay: ..." -> "reference call failed on replay", "lexical near-duplicate (Jaccard 0.91)"
    -> "lexical near-duplicate"."""
    head = re.split(r":| \(", reason, maxsplit=1)[0]
    return " ".join(w for w in head.split() if not w.isdigit()) or "unspecified"
