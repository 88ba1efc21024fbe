"""Walks -> verified synthetic tasks. Candidates are cut from walks (the template writer) or
written by the task_writer LLM role, filtered for lexical near-duplicates (by confidence) against the pool, and kept only when their reference solution replays in a
fresh instance (every call succeeds, and it changes state or returns what the task asks for)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from evolver.agent.exploration import visible_state, walk_from_pb
from evolver.algorithms.dedup import Candidate as DedupCandidate
from evolver.algorithms.dedup import lexical_filter
from evolver.algorithms.questioning import (GENERATOR_VERSION, Candidate, Verdict, answer_facts, candidates_from_walk,
                                            check_replay, names_code, task_id_for)
from evolver.envs.base import Call
from evolver.envs.client import RemoteEnvironment
from evolver.envs.profile import derive_profile
from evolver.errors import FailedPrecondition
from evolver.models.roles import RoleCaller, RoleCounters
from evolver.v1 import events_pb2, llm_role_pb2, task_pb2, trajectory_pb2
from evolver.v1 import environment_pb2 as env_pb
from services.task_gen.feasibility import judge_replay, replay_with_tip
from services.task_gen.llm_writer import parse_tasks, prompt_fields

HELDOUT_SHARE = 0.2
# The template writer's tasks rank below an LLM task its writer is more than half sure of.
TEMPLATE_CONFIDENCE = 0.5
# The task_writer role's caller, built on first use (the local model loads only then).
TaskWriterRole = Callable[[], Awaitable[RoleCaller]]
# (role, template) -> its caller: the solver (explorer role) and the verdict (judge role).
FeasibilityRoles = Callable[[str, str], Awaitable[RoleCaller]]


@dataclass
class Synthesis:
    accepted: list[task_pb2.Task]
    reasons: list[str]
    role_usage: list[llm_role_pb2.RoleUsage] = field(default_factory=list)


def split_for(task_id: str, heldout_share: float = HELDOUT_SHARE) -> str:
    """A stable share of accepted tasks is held out for evaluation, never trained on."""
    return "heldout" if int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) % 1000 < heldout_share * 1000 \
        else "train"


@dataclass
class Written:
    """How a candidate was written: its confidence ranks the near-duplicate filter."""
    confidence: float = TEMPLATE_CONFIDENCE
    generator: str = GENERATOR_VERSION
    prompt_version: str = ""


async def llm_candidates(llm: RoleCaller, counters: RoleCounters, walk, profile: env_pb.EnvironmentProfile,
                         event: events_pb2.ExploreCompleted,
                         known: list[str], max_calls: int, reasons: list[str],
                         written: dict[str, Written]) -> list[Candidate] | None:
    """The task_writer role's tasks from one walk; None when its reply was unusable."""
    parsed = await llm.ask(counters, lambda reply: parse_tasks(reply, walk, max_calls),
                           **prompt_fields(walk, profile, known, max_calls))
    if parsed is None:
        return None
    tasks, dropped = parsed
    reasons += dropped
    out = []
    for t in tasks:
        calls = [walk.steps[i].call for i in t.steps]
        facts = answer_facts(walk.steps[t.steps[-1]], t.query)
        tid = task_id_for(event.env_id, event.seed_task_id, walk.walk_id, calls, generator=llm.prompt_version,
                          query=t.query)
        written[tid] = Written(t.confidence, llm.prompt_version, llm.prompt_version)
        out.append(Candidate(tid, t.query, [Call(c.name, c.arguments, f"ref_{i}") for i, c in enumerate(calls)],
                             facts, walk.walk_id))
    return out


async def synthesize(env: RemoteEnvironment, event: events_pb2.ExploreCompleted, pool_queries: list[str],
                     max_per_walk: int = 6, embedding_filter=None,
                     task_writer: TaskWriterRole | None = None,
                     profile: env_pb.EnvironmentProfile | None = None,
                     feasibility_roles: FeasibilityRoles | None = None) -> Synthesis:
    """Accepted tasks, rejection reasons and what the LLM writer cost. embedding_filter(tasks) ->
    (kept ids, reasons) runs on replay-verified tasks only, so the vector index holds accepted
    tasks alone. The run's task_writer kind picks the template writer, the LLM one, or both; a
    walk whose LLM reply is unusable gets the template writer's tasks (counted as a fallback)."""
    tools, _ = await env.tools()
    kind = event.task_writer
    use_llm = kind in (task_pb2.TASK_WRITER_KIND_LLM, task_pb2.TASK_WRITER_KIND_HYBRID)
    max_calls = event.max_calls_per_task or 4
    reasons: list[str] = []
    written: dict[str, Written] = {}
    counters = RoleCounters("task_writer") if use_llm else None
    walks = [walk_from_pb(w) for w in event.walks]
    by_llm: list[list[Candidate] | None] = [None] * len(walks)
    if use_llm:
        if task_writer is None:
            raise FailedPrecondition("the LLM task writer was asked for, but no task_writer role is configured")
        llm = await task_writer()
        profile = profile if profile is not None and profile.ByteSize() else derive_profile(tools, event.env_id)
        by_llm = list(await asyncio.gather(*(llm_candidates(llm, counters, w, profile, event, pool_queries, max_calls,
                                                            reasons, written) for w in walks)))
    candidates = []
    for walk, from_llm in zip(walks, by_llm):
        if use_llm and from_llm is None:
            counters.fallbacks += 1
        if from_llm is None or kind == task_pb2.TASK_WRITER_KIND_HYBRID:
            candidates += candidates_from_walk(walk, tools, event.env_id, origin=event.seed_task_id,
                                               max_len=max_calls)[:max_per_walk]
        candidates += from_llm or []
    said = []
    for c in candidates:  # a query that writes code gives the answer away: never a task
        leaked = names_code(c.query, tools)
        if leaked:
            reasons.append(f"query names a tool or argument key ({', '.join(leaked[:3])})")
        else:
            said.append(c)
    by_id = {c.task_id: c for c in said}
    kept, rejected = lexical_filter([DedupCandidate(c.task_id, c.query, written.get(c.task_id, Written()).confidence)
                                     for c in said], pool_queries)
    reasons += [r for _, r in rejected]
    accepted = []
    check = event.feasibility
    usage = [counters.to_pb()] if counters else []
    solver = judge = None
    if check in (task_pb2.FEASIBILITY_KIND_LLM, task_pb2.FEASIBILITY_KIND_HYBRID):
        if feasibility_roles is None:
            raise FailedPrecondition("the LLM feasibility check was asked for, but no explorer/judge roles are configured")
        solver, judge = await feasibility_roles("explorer", "solver"), await feasibility_roles("judge", "feasibility")
        solver_counters, judge_counters = RoleCounters("explorer"), RoleCounters("judge")

    async def fresh_episode(c: Candidate):
        # From the seed's state, or (no seed) the default initial state, as the explorer walked.
        return await (env.create(seed_task_id=event.seed_task_id, query_override=c.query) if event.seed_task_id
                      else env.create(initial_state={}, query_override=c.query))

    async def replay_check(c: Candidate):
        episode = await fresh_episode(c)
        try:
            seen = await visible_state(episode)
            out = await episode.step(c.calls)
            after = await visible_state(episode)
        finally:
            await episode.release()
        initial, end = (seen or ({}, ""))[0], (after or ({}, ""))[0]  # opaque: only the asked information can pass
        verdict = check_replay(initial, end, [(r.content, r.is_error) for r in out.results], c.expected_facts)
        if seen is None:  # no reference end state to compare with later
            verdict = Verdict(verdict.accepted, verdict.reason, None)
        return initial, verdict

    for k in kept:
        c = by_id[k.key]
        initial, verdict = None, None
        if check != task_pb2.FEASIBILITY_KIND_LLM:
            initial, verdict = await replay_check(c)
            if not verdict.accepted:
                reasons.append(verdict.reason)
                continue
        if solver is not None:
            episode = await fresh_episode(c)
            try:
                start = await visible_state(episode)
                replay = await replay_with_tip(solver, solver_counters, episode, tools, c)
                end = await visible_state(episode)
            finally:
                await episode.release()
            ok = await judge_replay(judge, judge_counters, c, replay) if replay.answered else None
            if ok is None:  # no usable replay or verdict: the replay check decides (counted)
                judge_counters.fallbacks += 1
                if verdict is None:
                    initial, verdict = await replay_check(c)
                if not verdict.accepted:
                    reasons.append(verdict.reason)
                    continue
            elif not ok or not replay.calls:
                reasons.append("LLM feasibility: the judge found the tip-guided replay unsuccessful")
                continue
            elif check == task_pb2.FEASIBILITY_KIND_LLM:  # the reference is what succeeded in the replay
                c = Candidate(c.task_id, c.query, replay.calls, c.expected_facts, c.walk_id)
                # An opaque environment's task has no reference end state: the attributor and
                # the reward then rely on the LLM roles.
                initial, verdict = (start or ({}, ""))[0], Verdict(True, "LLM feasibility", end[0] if end else None)
        how = written.get(c.task_id, Written(1.0))
        task = task_pb2.Task(
            task_id=c.task_id, env_id=event.env_id, source=task_pb2.TASK_SOURCE_SYNTHETIC, split=split_for(c.task_id),
            query=c.query, initial_state_json=json.dumps(initial),
            reference_solution=[trajectory_pb2.ToolCall(call_id=x.call_id, name=x.name, arguments_json=json.dumps(x.arguments))
                                for x in c.calls],
            reference_end_state_json=json.dumps(verdict.reference_end_state) if verdict.reference_end_state is not None
            else "", expected_answer_facts=c.expected_facts,
            provenance=task_pb2.TaskProvenance(env_id=event.env_id, seed_task_id=event.seed_task_id, walk_id=c.walk_id,
                                               generator_version=how.generator, prompt_version=how.prompt_version,
                                               confidence=how.confidence))
        task.provenance.created_at.FromSeconds(int(time.time()))
        accepted.append(task)
    if embedding_filter is not None and accepted:
        kept_ids, more = await embedding_filter([(t.task_id, t.query) for t in accepted])
        reasons += more
        accepted = [t for t in accepted if t.task_id in set(kept_ids)]
    if solver is not None:
        usage += [solver_counters.to_pb(), judge_counters.to_pb()]
    return Synthesis(accepted, reasons, usage)
