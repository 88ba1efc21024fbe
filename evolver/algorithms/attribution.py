"""State-progress step attribution (GOOD/BAD per step), for environments that expose state.

A step is GOOD when it
  - moves the state closer to the reference end state (fewer differing leaves), or
  - is needed by later steps: replaying the trajectory without it ends farther from the
    reference or makes a later successful call fail (counterfactual replay; this catches
    preconditions whose effect the visible state does not show, such as a `cd`), or
  - returns information that a later step's arguments use, or that the task asks for.
It is BAD when it errors, changes nothing useful, or moves the state away from the reference
(including changes a later step has to undo). Same label set as the LLM judge (spec §5.3), so
both feed the same ADCA-GRPO advantages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from evolver.algorithms.state import distance, scalar_values


@dataclass(frozen=True)
class StepRecord:
    calls: Sequence[tuple[str, dict]]  # (tool name, arguments)
    results: Sequence[tuple[str, bool]]  # (content, is_error)


def _used_later(values: list[Any], later: Sequence[StepRecord]) -> bool:
    interesting = {str(v) for v in values if len(str(v)) > 1}
    for step in later:
        for _, args in step.calls:
            for a in scalar_values(args):
                if str(a) in interesting:
                    return True
    return False


Replay = Callable[[Sequence[int]], tuple[Any, list[bool]]]


def needed_steps(replay: Replay, n_steps: int, reference_end: Any) -> list[bool]:
    """replay(kept step indices) -> (end state, per kept step: did every call fail). Step k is
    needed when dropping it ends farther from the reference or breaks a later step."""
    full_end, full_failed = replay(list(range(n_steps)))
    base = distance(full_end, reference_end)
    out = []
    for k in range(n_steps):
        kept = [i for i in range(n_steps) if i != k]
        end, failed = replay(kept)
        broke_later = any(f and not full_failed[i] for i, f in zip(kept, failed) if i > k)
        out.append(distance(end, reference_end) > base or broke_later)
    return out


def attribute(states: Sequence[Any], reference_end: Any, steps: Sequence[StepRecord],
              expected_facts: Sequence[str] = (), needed: Sequence[bool] | None = None) -> list[tuple[bool, str]]:
    """states[k] is the state before step k; states[K] the final state (len = len(steps) + 1).
    needed (from needed_steps) is optional: without it preconditions are judged by state alone."""
    if len(states) != len(steps) + 1:
        raise ValueError("need one state before each step and one after the last")
    labels = []
    facts = [str(f).lower() for f in expected_facts]
    for k, step in enumerate(steps):
        if step.results and all(err for _, err in step.results):
            labels.append((False, "every call failed"))
            continue
        before, after = distance(states[k], reference_end), distance(states[k + 1], reference_end)
        read = [v for content, err in step.results if not err for v in scalar_values(content)]
        text = " ".join(c.lower() for c, err in step.results if not err)
        if after < before:
            labels.append((True, f"moved toward the reference end state ({before} -> {after} differing leaves)"))
        elif after <= before and needed is not None and needed[k]:
            labels.append((True, "later steps depend on it (counterfactual replay)"))
        elif facts and any(f in text for f in facts):
            labels.append((True, "returned information the task asks for"))
        elif after == before and _used_later(read, steps[k + 1:]):
            labels.append((True, "returned information a later step used"))
        elif after > before:
            labels.append((False, f"moved away from the reference end state ({before} -> {after})"))
        else:
            labels.append((False, "changed nothing and returned nothing used later"))
    return labels
