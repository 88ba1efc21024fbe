"""Demonstrations for self-bootstrapping: a verified synthetic task's reference solution,
replayed in a fresh instance and rendered exactly as a rollout of it would be (the same system
prompt and shown tools, one tool call per assistant turn in the format the parser accepts, the
environment's real observations, then a plain-text answer), so the policy can be fine-tuned on
its own verified material before it can find rewards by sampling.

Only train tasks qualify: `bootstrap_tasks` refuses held-out and test tasks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from evolver.agent.rollout import create_episode, shown_tools
from evolver.envs.base import Call
from evolver.envs.client import EnvironmentClient
from evolver.models.conversation import IM_END, Conversation, TrainingSequence
from evolver.models.toolcall import CLOSE, OPEN, render_tool_results, system_prompt
from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb


def bootstrap_tasks(tasks: Sequence[task_pb2.Task], limit: int) -> list[task_pb2.Task]:
    """Synthetic train tasks with a reference solution, by id (stable), at most limit. Held-out
    synthetic tasks and the environment's test tasks are never demonstration material."""
    ok = [t for t in tasks if t.split == "train" and t.source == task_pb2.TASK_SOURCE_SYNTHETIC
          and t.reference_solution]
    return sorted(ok, key=lambda t: t.task_id)[:limit]


def call_text(name: str, arguments: dict) -> str:
    return f'{OPEN}\n{json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)}\n{CLOSE}'


def answer_text(task: task_pb2.Task) -> str:
    facts = list(task.expected_answer_facts)
    return f"Done. Here is what I found: {', '.join(facts)}." if facts else "Done."


@dataclass
class Demonstration:
    sequence: TrainingSequence  # the token record: loss on the policy's turns only
    trajectory: tpb.Trajectory  # the same episode as a trajectory (steps, observations, success)


async def demonstration(tokenizer, env: EnvironmentClient, task: task_pb2.Task, *, max_tools_shown: int,
                        seed: int) -> Demonstration:
    """The reference solution replayed in a fresh instance, as the policy's own turns."""
    if task.split != "train" or task.source != task_pb2.TASK_SOURCE_SYNTHETIC:
        raise ValueError(f"task {task.task_id!r} is not a synthetic train task: never demonstration material")
    end = tokenizer.convert_tokens_to_ids(IM_END)

    def turn(text: str) -> list[int]:  # an assistant turn as the model ends one: its text, then <|im_end|>
        return list(tokenizer.encode(text, add_special_tokens=False)) + [end]
    episode = await create_episode(env, task)
    try:
        conv = Conversation(tokenizer)
        conv.start(system_prompt(shown_tools(episode.tools, task, max_tools_shown, seed)), episode.user_message)
        traj = tpb.Trajectory(trajectory_id=f"demo.{task.task_id}", task_id=task.task_id, group_id=f"demo.{task.task_id}",
                              final_answer=answer_text(task), reward=tpb.Reward(score=1.0, success=True))
        for i, ref in enumerate(task.reference_solution):
            args = json.loads(ref.arguments_json or "{}")
            out = await episode.step([Call(ref.name, args, ref.call_id)])
            text = call_text(ref.name, args)
            conv.add_completion(turn(text), None, 0, ended=True)
            conv.add_user(render_tool_results([(ref.name, r.content) for r in out.results]))
            traj.steps.append(tpb.Step(index=i, assistant_text=text, tool_calls=[ref], observations=[
                tpb.Observation(call_id=ref.call_id, content=r.content,
                                kind=tpb.OBSERVATION_KIND_TOOL_ERROR if r.is_error else tpb.OBSERVATION_KIND_RESULT)
                for r in out.results]))
        conv.add_completion(turn(answer_text(task)), None, 0, ended=True)
        traj.steps.append(tpb.Step(index=len(task.reference_solution), assistant_text=answer_text(task)))
        return Demonstration(conv.training_sequence(), traj)
    finally:
        await episode.release()
