"""The LLM outcome judge for synthetic tasks (AgentEvolver's llm-binary-gt, spec §3.8), pure
parts: the prompt's fields from a task and an attempt, the reply's parsing, and how a judge
score combines with the state-match reward. The call itself is the explorer's (RoleCaller)."""

from __future__ import annotations

import json
import re

from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb

PART_CHARS = 1200
SUCCESS_SCORE = 60  # 60-100 = the goal was achieved
_REWARD = re.compile(r"<reward>\s*(-?\d+(?:\.\d+)?)\s*</reward>", re.IGNORECASE)


def _trim(text: str) -> str:
    return text if len(text) <= PART_CHARS else text[:PART_CHARS] + " ...[trimmed]"


def prompt_fields(task: task_pb2.Task, traj: tpb.Trajectory) -> dict[str, object]:
    reference = "\n".join(f"{i}. {c.name}({c.arguments_json})" for i, c in enumerate(task.reference_solution, 1))
    steps = []
    for i, s in enumerate(traj.steps, 1):
        action = s.assistant_text or "; ".join(f"{c.name}({c.arguments_json})" for c in s.tool_calls)
        obs = "\n".join(o.content for o in s.observations)
        steps.append(f">>> STEP {i} <<<\nACTION: {_trim(action)}\nRESULT: {_trim(obs) or '(none)'}")
    return {"task": task.query, "reference": reference or "(none given)", "n": len(traj.steps),
            "steps": "\n".join(steps) or "(no steps)", "answer": _trim(traj.final_answer) or "(none)"}


def parse_score(reply: str) -> float | None:
    """The judge's score in [0, 1], from the last <reward>N</reward>; None when there is none or
    it lies in the forbidden 41-59 band (the judge ignored the bimodal rule)."""
    found = _REWARD.findall(reply)
    if not found:
        return None
    value = float(found[-1])
    if 40 < value < 60:
        return None
    return min(100.0, max(0.0, value)) / 100


def judged_reward(judge: float, verifiable: tpb.Reward | None, hybrid: bool, prompt_version: str = "") -> tpb.Reward:
    """llm: the judge's score; hybrid: the judge's score times the state-match score (both must
    agree for a success). The details record the judge's prompt version."""
    success = judge >= SUCCESS_SCORE / 100
    details = {"judge": judge, "judge_prompt": prompt_version}
    if hybrid and verifiable is not None:
        details["state_match"] = verifiable.score
        return tpb.Reward(score=judge * verifiable.score, success=success and verifiable.success,
                          details_json=json.dumps(details))
    return tpb.Reward(score=judge, success=success, details_json=json.dumps(details))
