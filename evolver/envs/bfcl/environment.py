"""BFCL multi-turn environments behind the Environment interface, one category per
environment (base, miss_param, long_context, miss_func: evolver.envs.bfcl.tasks)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from evolver.envs.base import Call, Score, SeedTask, StepOutcome, Tool
from evolver.envs.bfcl import catalog, tasks
from evolver.envs.bfcl.calls import run_calls
from evolver.envs.bfcl.scoring import score_episode
from evolver.errors import FailedPrecondition, InvalidArgument, NotFound

MAX_STEPS_PER_EPISODE = 64


class BfclEpisode:
    """One isolated episode. Multi-turn as in AgentEvolver (§8.5): an assistant turn with tool
    calls gets their results; one without tool calls ends the user turn and the next user turn
    arrives; after the last user turn the episode is done."""

    def __init__(self, classes: Sequence[str], initial_state: dict[str, Any], user_turns: Sequence[str],
                 entry: tasks.Entry | None, max_steps: int = MAX_STEPS_PER_EPISODE, long_context: bool = False):
        self.classes = list(classes)
        self.initial_state = initial_state
        self.user_turns = list(user_turns)
        self.entry = entry
        self.instances = catalog.instantiate(self.classes, initial_state, long_context=long_context)
        self.methods = catalog.method_table(self.instances)
        self.tools = {t.name: t for t in catalog.tools_for(self.classes)}
        # miss_func: functions withheld until their turn (calling one earlier is an unknown tool).
        self.withheld = {turn: [self.tools.pop(name) for name in names if name in self.tools]
                         for turn, names in (entry.missed.items() if entry else [])}
        self.turn = 0
        self.steps = 0
        self.max_steps = max_steps
        self.done = False
        # Recorded per user turn: a list of steps, each a list of calls (what the scorer replays).
        self.recorded: list[list[list[Call]]] = [[] for _ in self.user_turns]

    @property
    def user_message(self) -> str:
        return self.user_turns[0] if self.user_turns else ""

    def tool_list(self) -> list[Tool]:
        return list(self.tools.values())

    def step(self, calls: Sequence[Call], assistant_text: str = "") -> StepOutcome:
        if self.done:
            raise FailedPrecondition("the episode is finished; create a new instance")
        self.steps += 1
        if calls:
            self.recorded[self.turn].append(list(calls))
            results = run_calls(self.methods, self.tools, calls)
            if self.steps >= self.max_steps:
                self.done = True
            return StepOutcome(results, done=self.done)
        self.turn += 1
        if self.turn >= len(self.user_turns) or self.steps >= self.max_steps:
            self.done = True
            return StepOutcome([], done=True)
        message = self.user_turns[self.turn]
        added = self.withheld.pop(self.turn, [])
        if added:  # BFCL's prompting form: the new functions' docs, then its message
            self.tools.update((t.name, t) for t in added)
            docs = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in added]
            message = f"{json.dumps(docs)}\n{message}"
        return StepOutcome([], next_user_message=message)

    def state(self) -> dict[str, Any]:
        return catalog.snapshot(self.instances)

    def evaluate(self) -> Score:
        if self.entry is None:
            raise FailedPrecondition("this instance was created from an explicit state and has no ground truth; "
                                     "synthetic tasks are scored by task_gen's state match")
        return score_episode(self.entry.seed.initial_state, self.entry.seed.toolsets, self.entry.ground_truth,
                             self.recorded, long_context=self.entry.long_context)

    def close(self) -> None:
        self.instances.clear()
        self.methods.clear()


class BfclEnvironment:
    env_id = "bfcl"  # base; the other categories set their own in __init__
    category = "base"
    state_visible = True
    # Modules the environment server's fork server imports once, for every instance process.
    preload = ("evolver.envs.bfcl._preload",)

    def __init__(self, category: str = "base"):
        if category not in tasks.CATEGORIES:
            raise ValueError(f"unknown BFCL category {category!r}: one of {', '.join(tasks.CATEGORIES)}")
        self.category = category
        self.env_id = "bfcl" if category == "base" else f"bfcl-{category.replace('_', '-')}"

    def tools(self, toolsets: Sequence[str] = ()) -> list[Tool]:
        unknown = [t for t in toolsets if t not in catalog.CLASSES]
        if unknown:
            raise InvalidArgument("toolsets", f"unknown toolsets {unknown}; known: {list(catalog.CLASSES)}")
        return catalog.tools_for(list(toolsets) or list(catalog.CLASSES))

    def seed_tasks(self, split: str = "") -> list[SeedTask]:
        if split not in ("", "train", "test"):
            raise InvalidArgument("split", "must be 'train', 'test' or empty")
        return [e.seed for e in tasks.load_entries(self.category) if not split or e.seed.split == split]

    def create(self, *, seed_task_id: str | None = None, initial_state: dict[str, Any] | None = None,
               toolsets: Sequence[str] = (), query_override: str = "") -> BfclEpisode:
        if seed_task_id:
            entry = tasks.by_id(self.category).get(seed_task_id)
            if entry is None:
                raise NotFound(f"no BFCL seed task {seed_task_id!r}")
            turns = list(entry.seed.user_turns)
            if query_override:
                # A synthetic task on a seed's state: one user turn, no BFCL ground truth.
                return BfclEpisode(entry.seed.toolsets, entry.seed.initial_state, [query_override], None,
                                   long_context=entry.long_context)
            return BfclEpisode(entry.seed.toolsets, entry.seed.initial_state, turns, entry,
                               long_context=entry.long_context)
        if initial_state is None:
            raise InvalidArgument("source", "give seed_task_id or initial_state_json")
        if not isinstance(initial_state, dict):
            raise InvalidArgument("initial_state_json", "must be a JSON object keyed by class name")
        classes = list(toolsets) or [c for c in catalog.CLASSES if c in initial_state]
        unknown = [c for c in classes if c not in catalog.CLASSES]
        if unknown or not classes:
            raise InvalidArgument("toolsets", f"name one or more of {list(catalog.CLASSES)}" +
                                  (f"; unknown: {unknown}" if unknown else ""))
        try:
            # One user turn (possibly empty): exploration and synthetic tasks are single-turn.
            return BfclEpisode(classes, initial_state, [query_override], None)
        except Exception as e:  # a scenario the API classes cannot load
            raise InvalidArgument("initial_state_json", f"cannot load into {classes}: {type(e).__name__}: {e}") from None
