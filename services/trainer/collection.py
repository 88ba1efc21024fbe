"""Rollout requests and their collection, event-driven.

The trainer's `rollout.attributed` consumer indexes each group (KV `rollout-index`: stream
sequence and trace context, kept for resume) and wakes the run loop waiting for it through
`GroupArrivals`: no loop polls for results. A group that arrived before its loop listened (a
resumed step, or one answered before the request call returned) is found in the index.

Pure parts (no bus): the job ids, the RolloutRequested a step sends, and the waiters."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from evolver.v1 import events_pb2, task_pb2
from services.trainer.kinds import (CONTEXT_TEMPLATES, EXPERIENCE_KEYS, EXTRACTORS, REWARD_JUDGES,
                                    STEP_LABEL_SKIPS, STEP_LABELERS)
from services.trainer.run_config import RunSpec


def job_id(run_id: str, prefix: str, step: int, index: int) -> str:
    """Deterministic: a resumed step asks for the same groups (the bus drops the duplicates)."""
    return f"{run_id}.{prefix}{step}.t{index}"


def group_version(event: events_pb2.RolloutAttributed) -> int:
    """The oldest policy version among the group's valid attempts (what its ratios lean on)."""
    versions = [t.policy_version for t in event.group.trajectories if not t.infra_failure.reason]
    return min(versions) if versions else 0


def split_stale(groups, version: int, max_lag: int) -> tuple[list, list]:
    """(within the bound, older): a group generated at v is `version - v` updates behind the
    policy being trained now; more than max_lag is too old to importance-weight (the clip would
    throw most of its tokens away)."""
    keep, stale = [], []
    for g in groups:
        (stale if version - group_version(g) > max_lag else keep).append(g)
    return keep, stale


def restale_job_id(group_id: str, version: int) -> str:
    """The job asking again, at `version`, for a group that came back too old."""
    return f"{group_id}.v{version}"


def original_group_id(job_id: str) -> str:
    """The group a job id names, whether first asked for or asked for again (`restale_job_id`)."""
    return re.sub(r"\.v\d+$", "", job_id)


def rollout_request(spec: RunSpec, *, run_id: str, job: str, step: int, task: task_pb2.Task, version: int,
                    evaluation: bool, base_model: tuple[str, str] = ("", "")) -> events_pb2.RolloutRequested:
    """The job for one group: the run's rollout settings, evaluation's own k and temperature,
    and a sampling seed that is the run seed for evaluation (the same policy scores the same
    twice) and the run seed mixed with the step for training."""
    s, r = spec, spec.rollout
    return events_pb2.RolloutRequested(
        job_id=job, run_id=run_id, train_step=step, task=task,
        group_size=s.eval.k if evaluation else s.group_size, policy_version=version,
        guided_share=0.0 if evaluation or not s.mechanisms.navigating else s.navigating.guided_share,
        temperature=s.eval.temperature if evaluation else r.temperature, evaluation=evaluation,
        max_steps=r.max_steps, max_new_tokens=r.max_new_tokens, experience_top_k=s.navigating.top_k,
        keep_experience=s.navigating.keep_experience, max_tools_shown=r.max_tools_shown,
        first_turn_prefix=r.first_turn_prefix, allow_text_around_calls=r.allow_text_around_calls,
        attribute=s.mechanisms.attributing and not evaluation and (not s.attributing.prm_steps
                                                                    or step < s.attributing.prm_steps),
        step_labeler=STEP_LABELERS[s.attributing.labeler], step_label_skip=STEP_LABEL_SKIPS[s.attributing.skip],
        reward_judge=REWARD_JUDGES[r.reward_judge],  # the explorer keeps evaluation on the state match
        experience_extractor=EXTRACTORS[s.navigating.extractor], rewrite_experiences=s.navigating.rewrite,
        experience_key=EXPERIENCE_KEYS[s.navigating.embedding_key],
        context_template=CONTEXT_TEMPLATES[r.context_template], window_turns=r.window_turns,
        max_context_tokens=r.max_context_tokens, max_observation_tokens=r.max_observation_tokens,
        sampling_seed=s.seed if evaluation else s.seed * 1_000_003 + step + 1,
        base_model=base_model[0], base_model_digest=base_model[1])


class GroupArrivals:
    """Waiters for attributed groups, per group id, woken by the consumer in the same process."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future]] = {}

    def expect(self, group_id: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(group_id, []).append(fut)
        return fut

    def arrived(self, group_id: str, event: events_pb2.RolloutAttributed, trace: dict[str, str]) -> None:
        for fut in self._waiting.pop(group_id, []):
            if not fut.done():
                fut.set_result((event, trace))

    def forget(self, group_ids: Iterable[str]) -> None:
        """Stops waiting for these groups (collected, or the wait was abandoned)."""
        for gid in group_ids:
            for fut in self._waiting.pop(gid, []):
                fut.cancel()

    @property
    def waiting(self) -> int:
        return len(self._waiting)


async def wait_for_groups(arrivals: GroupArrivals, group_ids: list[str], lookup, *, timeout_s: float,
                          stop: asyncio.Event, on_progress) -> dict[str, tuple]:
    """Every group in group_ids as (event, trace), each as it arrives. lookup(gid) -> (event,
    trace) | None reads the index: a group that arrived before anyone listened. The waiters are
    registered first, so a group arriving during the lookups is not missed. Returns early
    (partial) when `stop` is set or the timeout passes; on_progress(found) after each arrival."""
    pending = {gid: arrivals.expect(gid) for gid in group_ids}
    found: dict[str, tuple] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    stopper = asyncio.ensure_future(stop.wait())
    try:
        for gid in group_ids:
            if pending[gid].done():
                continue
            hit = await lookup(gid)
            if hit is not None:
                found[gid] = hit
                arrivals.forget([gid])
                del pending[gid]
        await on_progress(len(found) + sum(f.done() for f in pending.values()))
        while pending:
            arrived = [gid for gid, fut in pending.items() if fut.done() and not fut.cancelled()]
            for gid in arrived:
                found[gid] = pending.pop(gid).result()
            if arrived:
                await on_progress(len(found))
            remaining = deadline - loop.time()
            if not pending or remaining <= 0 or stop.is_set():
                break
            await asyncio.wait([*pending.values(), stopper], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        arrivals.forget(pending)
    return found
