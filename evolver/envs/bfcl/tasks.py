"""BFCL's multi-turn categories as seed tasks: 200 entries each, AgentEvolver's split (first half
train, second half test, file order).

- base: the user asks; everything needed is there.
- miss_param: a request lacks a parameter; the user supplies it in a later turn.
- long_context: the same scenarios loaded as long-context (the APIs fill their state with many
  more items, so results are long).
- miss_func: a needed function is withheld until a later turn; at that turn BFCL's own message
  announces it (DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION) and it becomes available."""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from evolver.envs.base import Call, SeedTask
from evolver.envs.bfcl.calls import parse_call

CATEGORIES = {"base": "multi_turn_base", "miss_param": "multi_turn_miss_param",
              "long_context": "multi_turn_long_context", "miss_func": "multi_turn_miss_func"}
CATEGORY = CATEGORIES["base"]  # the default


def data_file(category: str) -> str:
    return f"BFCL_v4_{CATEGORIES[category]}.json"


@dataclass(frozen=True)
class Entry:
    seed: SeedTask
    ground_truth: tuple[tuple[Call, ...], ...]  # per user turn
    # miss_func: user turn index -> functions withheld until that turn
    missed: dict[int, tuple[str, ...]] = field(default_factory=dict)
    long_context: bool = False


def _user_turn(turn: list[dict[str, Any]]) -> str:
    return "\n".join(m["content"] for m in turn if m.get("role") == "user")


_LOAD_LOCK = threading.Lock()


def load_entries(category: str = "base") -> tuple[Entry, ...]:
    if category not in CATEGORIES:
        raise KeyError(f"unknown BFCL multi-turn category {category!r} (known: {', '.join(CATEGORIES)})")
    # Loaded once; worker threads may ask at the same moment.
    with _LOAD_LOCK:
        return _load_entries(category)


@functools.lru_cache(maxsize=None)
def _load_entries(category: str) -> tuple[Entry, ...]:
    from bfcl_eval.constants.default_prompts import DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
    from bfcl_eval.constants.eval_config import POSSIBLE_ANSWER_PATH, PROMPT_PATH

    name = data_file(category)
    rows = [json.loads(line) for line in (PROMPT_PATH / name).read_text().splitlines() if line.strip()]
    answers = {}
    for line in (POSSIBLE_ANSWER_PATH / name).read_text().splitlines():
        if line.strip():
            a = json.loads(line)
            answers[a["id"]] = a["ground_truth"]
    half = len(rows) // 2
    entries = []
    for i, row in enumerate(rows):
        missed = {int(t): tuple(fs) for t, fs in (row.get("missed_function") or {}).items()}
        turns = tuple(_user_turn(t) if t or j not in missed else DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
                      for j, t in enumerate(row["question"]))
        seed = SeedTask(seed_task_id=row["id"], split="train" if i < half else "test", user_turns=turns,
                        initial_state=row.get("initial_config", {}), toolsets=tuple(row["involved_classes"]))
        gt = tuple(tuple(parse_call(c) for c in turn) for turn in answers[row["id"]])
        entries.append(Entry(seed, gt, missed, long_context=category == "long_context"))
    return tuple(entries)


@functools.lru_cache(maxsize=None)
def by_id(category: str = "base") -> dict[str, Entry]:
    return {e.seed.seed_task_id: e for e in load_entries(category)}


def category_of(task_id: str) -> str:
    """"multi_turn_miss_func_12" -> "miss_func"."""
    prefix = task_id.rsplit("_", 1)[0]
    for category, name in CATEGORIES.items():
        if name == prefix:
            return category
    raise KeyError(f"not a BFCL multi-turn task id: {task_id[:64]!r}")


def entry_for(task_id: str) -> Entry:
    return by_id(category_of(task_id))[task_id]
