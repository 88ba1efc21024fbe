"""One GRPO group: N attempts of one task by the policy, through the Environment protocol.

A configurable share of the group (AgentEvolver: 0.5) gets retrieved experiences injected in a
marked block; guided and unguided attempts share the group. Each trajectory carries the exact
token record (ids, loss mask, experience mask, step ids, behaviour log-probs), its steps, its
reward and the policy version. A rollout that fails for infrastructure reasons (environment or
server down, deadline) is marked as such and never scored: it is left out of every statistic.

Rewards: synthetic tasks are scored by state match and answer facts (evolver.algorithms.rewards);
seed tasks by the environment's own evaluator."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Sequence

from evolver import telemetry
from evolver.agent.episode import ContextSettings, EpisodeRecord, run_episode
from evolver.agent.exploration import visible_state
from evolver.algorithms.rewards import synthetic_reward
from evolver.envs.base import Tool
from evolver.envs.client import INFRA_ERRORS, EnvironmentClient, EpisodeClient
from evolver.errors import EvolverError, NotFound
from evolver.models.backend import SamplingParams
from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb


@dataclass(frozen=True)
class RolloutOptions:
    group_size: int = 4
    guided_share: float = 0.5
    temperature: float = 1.0
    max_steps: int = 6
    max_new_tokens: int = 96
    keep_experience: bool = False
    max_tools_shown: int = 0
    first_turn_prefix: str = ""
    allow_text_around_calls: bool = False
    seed: int = 0
    context: ContextSettings = ContextSettings()


MIN_DISTRACTORS = 2


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", text.lower())}


def shown_tools(tools: Sequence[Tool], task: task_pb2.Task, limit: int, seed: int) -> list[Tool]:
    """The tools the prompt lists: every tool when limit is 0 or the task has no reference
    solution (seed tasks are evaluated as their benchmark defines them); else the reference
    solution's tools plus the other tools ranked by how much their description shares with the
    query (the hardest distractors first, ties in a seeded order), up to limit but never fewer
    than MIN_DISTRACTORS of them: the reference tools are never shown alone."""
    if limit <= 0 or len(tools) <= limit or not task.reference_solution:
        return list(tools)
    needed = {c.name for c in task.reference_solution}
    first = [t for t in tools if t.name in needed]
    rest = [t for t in tools if t.name not in needed]
    random.Random(seed).shuffle(rest)
    query = _words(task.query)
    rest.sort(key=lambda t: -len(query & _words(t.description)))  # stable: the shuffle breaks ties
    chosen = {t.name for t in first + rest[:max(limit - len(first), MIN_DISTRACTORS)]}
    return [t for t in tools if t.name in chosen]  # keep the environment's order


def attempt_seed(sampling_seed: int, task_id: str, attempt: int) -> int:
    """The sampling seed of one attempt: from (sampling seed, task id, attempt index) alone."""
    digest = hashlib.sha256(f"{sampling_seed}/{task_id}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # a non-negative int64


def guided_count(group_size: int, share: float, have_experiences: bool) -> int:
    return round(group_size * share) if have_experiences else 0


def experience_block(experiences: Sequence[tuple[str, str]]) -> str:
    """One line per experience; an id without text (merged into another's by a rewrite) adds none."""
    return "\n".join(f"- {text}" for _, text in experiences if text)


async def create_episode(env: EnvironmentClient, task: task_pb2.Task) -> EpisodeClient:
    """Synthetic tasks start from their seed's state with the synthetic query (the same way the
    task was verified); seed tasks start from themselves."""
    if task.source == task_pb2.TASK_SOURCE_SYNTHETIC:
        if task.provenance.seed_task_id:
            return await env.create(seed_task_id=task.provenance.seed_task_id, query_override=task.query)
        return await env.create(initial_state=json.loads(task.initial_state_json or "{}"),
                                toolsets=list(task.toolsets), query_override=task.query)
    return await env.create(seed_task_id=task.task_id)


def steps_to_pb(record: EpisodeRecord) -> list[tpb.Step]:
    out = []
    for i, s in enumerate(record.steps):
        step = tpb.Step(index=i, assistant_text=s.text)
        for j, c in enumerate(s.calls):
            step.tool_calls.append(tpb.ToolCall(call_id=c.call_id or f"c{j}", name=c.name,
                                                arguments_json=json.dumps(c.arguments)))
        for j, r in enumerate(s.results):
            kind = tpb.OBSERVATION_KIND_TOOL_ERROR if r.is_error else tpb.OBSERVATION_KIND_RESULT
            step.observations.append(tpb.Observation(call_id=r.call_id or f"c{j}", kind=kind, content=r.content))
        for e in s.parse_errors:
            step.observations.append(tpb.Observation(kind=tpb.OBSERVATION_KIND_PARSE_ERROR, content=e))
        out.append(step)
    return out


def turn_records(record: EpisodeRecord, keep_experience: bool) -> list[tpb.TokenRecord]:
    """One exact record per turn, for context templates that rewrite history."""
    out = []
    for seq in record.conversation.turn_sequences(keep_experience):
        out.append(tpb.TokenRecord(token_ids=seq.token_ids, loss_mask=seq.loss_mask,
                                   experience_mask=seq.experience_mask, step_ids=seq.step_ids,
                                   behaviour_logprobs=seq.behaviour_logprobs,
                                   logprobs_exact=all(s.logprobs is not None for s in record.conversation.completions)))
    return out


def token_record(record: EpisodeRecord, keep_experience: bool) -> tpb.TokenRecord:
    seq = record.conversation.training_sequence(keep_experience=keep_experience)
    exact = all(s.logprobs is not None for s in record.conversation.completions)
    return tpb.TokenRecord(token_ids=seq.token_ids, loss_mask=seq.loss_mask, experience_mask=seq.experience_mask,
                           step_ids=seq.step_ids, behaviour_logprobs=seq.behaviour_logprobs, logprobs_exact=exact)


async def score(episode: EpisodeClient, task: task_pb2.Task, record: EpisodeRecord) -> tpb.Reward:
    if task.source == task_pb2.TASK_SOURCE_SYNTHETIC:
        seen = await visible_state(episode) if task.reference_end_state_json else None
        if seen is None:  # an opaque environment's task: only the LLM judge can score it
            return tpb.Reward(score=0.0, success=False, details_json=json.dumps(
                {"state": "not observable: score with rollout.reward_judge llm"}))
        end, _ = seen
        r = synthetic_reward(json.loads(task.initial_state_json or "{}"),
                             json.loads(task.reference_end_state_json or "{}"), end,
                             list(task.expected_answer_facts), "\n".join(record.answers))
        return tpb.Reward(score=r.score, success=r.success,
                          details_json=json.dumps({"state_part": r.state_part, "info_part": r.info_part}))
    s = await episode.evaluate()
    return tpb.Reward(score=s.score, success=s.success, details_json=json.dumps(s.details, default=str))


async def run_trajectory(backend, env: EnvironmentClient, task: task_pb2.Task, opts: RolloutOptions, *, trajectory_id: str,
                         group_id: str, experiences: Sequence[tuple[str, str]] = (), seed: int = 0) -> tpb.Trajectory:
    traj = tpb.Trajectory(trajectory_id=trajectory_id, task_id=task.task_id, group_id=group_id,
                          policy_version=backend.policy_version)
    episode = None
    try:
        episode = await create_episode(env, task)
        tools = shown_tools(episode.tools, task, opts.max_tools_shown, seed)
        sampling = SamplingParams(max_new_tokens=opts.max_new_tokens, temperature=opts.temperature,
                                  seed=seed if opts.temperature > 0 else None)
        record = await run_episode(backend, episode, tools, sampling=sampling, max_steps=opts.max_steps,
                                   experience=experience_block(experiences), first_turn_prefix=opts.first_turn_prefix,
                                   allow_text_around_calls=opts.allow_text_around_calls, context=opts.context)
        traj.steps.extend(steps_to_pb(record))
        if record.conversation.rewrites_history:
            traj.turn_records.extend(turn_records(record, opts.keep_experience))
        else:
            traj.tokens.CopyFrom(token_record(record, opts.keep_experience))
        traj.experience_ids.extend(eid for eid, _ in experiences)
        traj.final_answer = record.final_answer
        traj.context_exhausted = record.context_exhausted
        if record.policy_versions:
            traj.policy_version = max(record.policy_versions)
        if record.infra_failure:
            traj.infra_failure.CopyFrom(tpb.InfraFailure(reason=record.infra_failure, component="environment"))
        else:
            traj.reward.CopyFrom(await score(episode, task, record))
    except INFRA_ERRORS as e:
        traj.infra_failure.CopyFrom(tpb.InfraFailure(reason=str(e)[:500], component="environment"))
    except NotFound as e:
        if episode is None:
            raise  # no such seed task: the request's fault, not the environment's
        # The instance vanished while it was scored (expired, or its server restarted).
        traj.infra_failure.CopyFrom(tpb.InfraFailure(reason=str(e)[:500], component="environment"))
    finally:
        if episode is not None:
            try:
                await episode.release()
            except EvolverError:
                pass  # the instance expires on the server by itself
    return traj


async def run_group(backend, env: EnvironmentClient, task: task_pb2.Task, opts: RolloutOptions, *, group_id: str,
                    experiences: Sequence[tuple[str, str]] = (), concurrent: bool = True) -> list[tpb.Trajectory]:
    n_guided = guided_count(opts.group_size, opts.guided_share, bool(experiences))

    async def one(i: int) -> tpb.Trajectory:
        tid = f"{group_id}.r{i}"
        with telemetry.tracer().start_as_current_span(
                f"trajectory {tid}", attributes={"evolver.rollout_id": group_id, "evolver.trajectory_id": tid,
                                                 "evolver.guided": i < n_guided}) as span:
            traj = await run_trajectory(backend, env, task, opts, trajectory_id=tid, group_id=group_id,
                                        experiences=experiences if i < n_guided else (),
                                        seed=attempt_seed(opts.seed, task.task_id, i))
            span.set_attribute("evolver.steps", len(traj.steps))
            span.set_attribute("evolver.reward", traj.reward.score)
            if traj.infra_failure.reason:
                span.set_attribute("evolver.infra_failure", traj.infra_failure.reason)
        return traj
    if not concurrent:
        return [await one(i) for i in range(opts.group_size)]
    # Concurrent attempts: with a BatchingBackend their generation requests share batches.
    return list(await asyncio.gather(*(one(i) for i in range(opts.group_size))))
