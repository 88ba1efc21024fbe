"""Walks -> verified synthetic tasks. Candidates are cut from walks, filtered for lexical
near-duplicates against the pool, and kept only when their reference solution replays in a
fresh instance (every call succeeds, and it changes state or returns what the task asks for)."""

from __future__ import annotations

import hashlib
import json
import time

from evolver.algorithms.dedup import Candidate as DedupCandidate
from evolver.algorithms.dedup import lexical_filter
from evolver.algorithms.questioning import GENERATOR_VERSION, candidates_from_walk, check_replay, names_code
from evolver.envs.client import RemoteEnvironment
from evolver.agent.exploration import walk_from_pb
from evolver.v1 import events_pb2, task_pb2, trajectory_pb2


HELDOUT_SHARE = 0.2


def split_for(task_id: str, heldout_share: float = HELDOUT_SHARE) -> str:
    """A stable share of accepted tasks is held out for evaluation, never trained on."""
    return "heldout" if int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) % 1000 < heldout_share * 1000 \
        else "train"


async def synthesize(env: RemoteEnvironment, event: events_pb2.ExploreCompleted, pool_queries: list[str],
                     max_per_walk: int = 6, embedding_filter=None) -> tuple[list[task_pb2.Task], list[str]]:
    """(accepted tasks, rejection reasons). embedding_filter(tasks) -> (kept ids, reasons) runs
    on replay-verified tasks only, so the vector index holds accepted tasks alone."""
    tools, _ = await env.tools()
    candidates = []
    for w in event.walks:
        walk = walk_from_pb(w)
        candidates += candidates_from_walk(walk, tools, event.env_id, origin=event.seed_task_id,
                                           max_len=event.max_calls_per_task or 4)[:max_per_walk]
    reasons = []
    said = []
    for c in candidates:  # a query that writes code gives the answer away: never a task
        leaked = names_code(c.query, tools)
        if leaked:
            reasons.append(f"query names a tool or argument key ({', '.join(leaked[:3])})")
        else:
            said.append(c)
    by_id = {c.task_id: c for c in said}
    kept, rejected = lexical_filter([DedupCandidate(c.task_id, c.query) for c in said], pool_queries)
    reasons += [r for _, r in rejected]
    accepted = []
    for k in kept:
        c = by_id[k.key]
        # From the seed's state, or (no seed) the default initial state, as the explorer walked.
        episode = await (env.create(seed_task_id=event.seed_task_id, query_override=c.query) if event.seed_task_id
                         else env.create(initial_state={}, query_override=c.query))
        try:
            initial, _ = await episode.state()
            out = await episode.step(c.calls)
            end, _ = await episode.state()
        finally:
            await episode.release()
        verdict = check_replay(initial, end, [(r.content, r.is_error) for r in out.results], c.expected_facts)
        if not verdict.accepted:
            reasons.append(verdict.reason)
            continue
        task = task_pb2.Task(
            task_id=c.task_id, env_id=event.env_id, source=task_pb2.TASK_SOURCE_SYNTHETIC, split=split_for(c.task_id),
            query=c.query, initial_state_json=json.dumps(initial),
            reference_solution=[trajectory_pb2.ToolCall(call_id=x.call_id, name=x.name, arguments_json=json.dumps(x.arguments))
                                for x in c.calls],
            reference_end_state_json=json.dumps(verdict.reference_end_state), expected_answer_facts=c.expected_facts,
            provenance=task_pb2.TaskProvenance(env_id=event.env_id, seed_task_id=event.seed_task_id, walk_id=c.walk_id,
                                               generator_version=GENERATOR_VERSION))
        task.provenance.created_at.FromSeconds(int(time.time()))
        accepted.append(task)
    if embedding_filter is not None and accepted:
        kept_ids, more = await embedding_filter([(t.task_id, t.query) for t in accepted])
        reasons += more
        accepted = [t for t in accepted if t.task_id in set(kept_ids)]
    return accepted, reasons
