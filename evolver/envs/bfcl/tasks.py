"""BFCL multi_turn_base as seed tasks: 200 entries, AgentEvolver's split (first half train,
second half test, file order)."""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass
from typing import Any

from evolver.envs.base import Call, SeedTask
from evolver.envs.bfcl.calls import parse_call

CATEGORY = "multi_turn_base"
DATA_FILE = "BFCL_v4_multi_turn_base.json"


@dataclass(frozen=True)
class Entry:
    seed: SeedTask
    ground_truth: tuple[tuple[Call, ...], ...]  # per user turn


def _user_turn(turn: list[dict[str, Any]]) -> str:
    return "\n".join(m["content"] for m in turn if m.get("role") == "user")


_LOAD_LOCK = threading.Lock()


def load_entries() -> tuple[Entry, ...]:
    # Loaded once; worker threads may ask at the same moment.
    with _LOAD_LOCK:
        return _load_entries()


@functools.lru_cache(maxsize=1)
def _load_entries() -> tuple[Entry, ...]:
    from bfcl_eval.constants.eval_config import POSSIBLE_ANSWER_PATH, PROMPT_PATH

    rows = [json.loads(line) for line in (PROMPT_PATH / DATA_FILE).read_text().splitlines() if line.strip()]
    answers = {}
    for line in (POSSIBLE_ANSWER_PATH / DATA_FILE).read_text().splitlines():
        if line.strip():
            a = json.loads(line)
            answers[a["id"]] = a["ground_truth"]
    half = len(rows) // 2
    entries = []
    for i, row in enumerate(rows):
        seed = SeedTask(seed_task_id=row["id"], split="train" if i < half else "test",
                        user_turns=tuple(_user_turn(t) for t in row["question"]),
                        initial_state=row.get("initial_config", {}), toolsets=tuple(row["involved_classes"]))
        gt = tuple(tuple(parse_call(c) for c in turn) for turn in answers[row["id"]])
        entries.append(Entry(seed, gt))
    return tuple(entries)


@functools.lru_cache(maxsize=1)
def by_id() -> dict[str, Entry]:
    return {e.seed.seed_task_id: e for e in load_entries()}
