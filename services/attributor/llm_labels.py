"""LLM step labels (AgentEvolver ADCA labelling, spec §5.3), pure: the prompt's fields from a
trajectory, the reply's parsing, and the skip rules. One call per trajectory, conditioned on the
outcome's sign; the caller (attribution.py) makes the call and falls back to state progress."""

from __future__ import annotations

import re
from collections.abc import Sequence

from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import trajectory_pb2 as tpb

PART_CHARS = 2000  # each action and observation is trimmed to this, as AgentEvolver does
SUCCESS_THRESHOLD = 0.5  # an outcome above this is "positive" (rescaled (R - 0.5) * 2 > 0)
# "Step 2 Judgment: BAD", and what a small model writes instead: "Step 2: Bad", "Step 2 Label: bad".
_NUMBERED = re.compile(r"Step\s*(\d+)\s*(?:[A-Za-z]+\s*)?[:\-]\s*\**\s*(GOOD|BAD)\b", re.IGNORECASE)
_STANDALONE = re.compile(r"\b(GOOD|BAD)\b")  # upper case only: "a good step" is not a label


def _trim(text: str) -> str:
    return text if len(text) <= PART_CHARS else text[:PART_CHARS] + " ...[trimmed]"


def render_steps(traj: tpb.Trajectory) -> str:
    parts = []
    for i, s in enumerate(traj.steps, 1):
        action = s.assistant_text or "\n".join(f"{c.name}({c.arguments_json})" for c in s.tool_calls)
        obs = "\n".join(o.content for o in s.observations)
        block = f">>> EVAL-STEP {i} <<<\n<|ACTION|>\n{_trim(action)}\n<|END|>"
        if obs:
            block += f"\n<|OBSERVATION|>\n{_trim(obs)}\n<|END|>"
        parts.append(block)
    return "\n\n".join(parts)


def prompt_fields(query: str, traj: tpb.Trajectory) -> dict[str, object]:
    score = (traj.reward.score - SUCCESS_THRESHOLD) * 2
    return {"task": query, "n": len(traj.steps), "steps": render_steps(traj), "score": f"{score:+.4f}",
            "sign": "positive" if score > 0 else "negative"}


def reply_tokens(n: int) -> int:
    """Enough for the asked format (a short line per step) with slack: a reply that runs on
    past it cannot parse anyway, and on a CPU every token costs."""
    return 32 * n + 24


def parse_labels(reply: str, n: int) -> list[bool] | None:
    """True = GOOD per step, from "Step i Judgment: GOOD|BAD" lines (any case, any one word for
    "Judgment"); failing that the first n
    standalone GOOD/BAD words (AgentEvolver's fallback); None when neither gives n labels (an
    empty, refused or malformed reply)."""
    numbered: dict[int, bool] = {}
    for m in _NUMBERED.finditer(reply):
        i = int(m.group(1))
        if 1 <= i <= n and i not in numbered:
            numbered[i] = m.group(2).upper() == "GOOD"
    if len(numbered) == n:
        return [numbered[i] for i in range(1, n + 1)]
    words = _STANDALONE.findall(reply)
    if n and len(words) >= n:
        return [w == "GOOD" for w in words[:n]]
    return None


def skip_reason(skip: int, group_rewards: Sequence[float], reward: float) -> str | None:
    """Why the LLM call is skipped for one trajectory (its steps then all get the outcome's
    sign), or None. The small-advantage test reads the group's rewards, not AgentEvolver's
    header-token advantage (always 0, B19)."""
    if skip == apb.STEP_LABEL_SKIP_SMALL_ADVANTAGE and group_rewards and max(group_rewards) - min(group_rewards) < 1e-8:
        return "every attempt of the group scored the same"
    if skip == apb.STEP_LABEL_SKIP_NEGATIVE and reward <= SUCCESS_THRESHOLD:
        return "the attempt failed"
    return None


def uses_llm(labeler: int, has_reference: bool) -> bool:
    return labeler == apb.STEP_LABELER_LLM or (labeler == apb.STEP_LABELER_HYBRID and not has_reference)
