"""The explorer's domain: one GRPO group of the policy on a task (self-navigating: a share of
the group gets experiences from memory), and exploration walks (self-questioning's raw
material). Every environment, built-in or a user's, is reached the same way: by its registered
address. Environment refusals arrive as domain errors (evolver.envs.client translates them)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from evolver.agent.exploration import MAX_STEPS_PER_WALK, MAX_WALKS, run_walk, walk_to_pb
from evolver.agent import judging
from evolver.agent.episode import ContextSettings
from evolver.agent.rollout import RolloutOptions, run_group
from evolver.envs.client import RemoteEnvironment
from evolver.errors import FailedPrecondition, InvalidArgument, Validator
from evolver.limits import GROUP_SIZE_MAX
from evolver.models.policy_store import PolicySwitcher
from evolver.models.roles import RoleCaller, RoleCounters
from evolver.v1 import events_pb2, task_pb2
from evolver.v1 import trajectory_pb2 as tpb
from services.explorer.llm_explorer import llm_chooser
from services.explorer.policy import LazyPolicy

# (query, k, env_id, rewrite) -> Retrieved: memory's Retrieve, wired in app.py.
Retrieve = Callable[[str, int, str, bool], Awaitable["Retrieved"]]
# env_id -> the environment server's address (the registry).
Locate = Callable[[str], Awaitable[str]]


@dataclass
class Retrieved:
    pairs: list[tuple[str, str]]  # (experience id, "when to use: content")
    rewritten: str = ""  # the rewrite, when asked for and it worked
    usage: list = field(default_factory=list)  # RoleUsage of the rewrite


CONTEXT_TEMPLATES = {tpb.CONTEXT_TEMPLATE_UNSPECIFIED: "linear", tpb.CONTEXT_TEMPLATE_LINEAR: "linear",
                     tpb.CONTEXT_TEMPLATE_STRIP_REASONING: "strip_reasoning",
                     tpb.CONTEXT_TEMPLATE_SLIDING_WINDOW: "sliding_window"}


def rollout_options(req: events_pb2.RolloutRequested) -> RolloutOptions:
    v = Validator()
    # The job id becomes the group id, the rollout.completed message id and a KV key: without
    # one a whole group would run and then fail at publish, again on every retry.
    v.check(bool(req.job_id), "job_id", "must be non-empty")
    v.check(1 <= req.group_size <= GROUP_SIZE_MAX, "group_size", f"must be between 1 and {GROUP_SIZE_MAX}")
    v.check(0.0 <= req.guided_share <= 1.0, "guided_share", "must be between 0 and 1")
    v.check(req.temperature >= 0.0, "temperature", "must be >= 0")
    v.check(req.max_steps >= 0 and req.max_new_tokens >= 0, "max_steps", "bounds must be >= 0")
    v.check(bool(req.task.task_id and req.task.env_id), "task", "must carry task_id and env_id")
    v.check(req.context_template in CONTEXT_TEMPLATES, "context_template",
            f"must be a ContextTemplate (got {str(req.context_template)[:12]})")
    v.check(0 <= req.window_turns <= 1024, "window_turns", "must be between 0 (default 2) and 1024")
    v.check(req.max_context_tokens >= 0 and req.max_observation_tokens >= 0, "max_context_tokens",
            "token budgets must be >= 0")
    v.raise_if_any()
    return RolloutOptions(group_size=req.group_size, guided_share=req.guided_share, temperature=req.temperature,
                          max_steps=req.max_steps or 6, max_new_tokens=req.max_new_tokens or 96,
                          keep_experience=req.keep_experience, max_tools_shown=req.max_tools_shown,
                          first_turn_prefix=req.first_turn_prefix,
                          allow_text_around_calls=req.allow_text_around_calls, seed=req.sampling_seed,
                          context=ContextSettings(CONTEXT_TEMPLATES[req.context_template], req.window_turns or 2,
                                                  req.max_context_tokens, req.max_observation_tokens))


def check_explore(req: events_pb2.ExploreRequested) -> None:
    """The bounds an exploration request must meet, whether it came by RPC or on the bus."""
    v = Validator()
    v.check(bool(req.env_id), "env_id", "must name a registered environment")
    v.check(1 <= req.walks <= MAX_WALKS, "walks", f"must be between 1 and {MAX_WALKS}")
    v.check(1 <= req.max_steps_per_walk <= MAX_STEPS_PER_WALK, "max_steps_per_walk",
            f"must be between 1 and {MAX_STEPS_PER_WALK}")
    v.check(req.explorer in task_pb2.ExplorerKind.values(), "explorer",
            f"must be an ExplorerKind (got {str(req.explorer)[:12]})")
    v.raise_if_any()


async def judge_group(judge: RoleCaller, counters: RoleCounters, task: task_pb2.Task,
                      trajectories: list[tpb.Trajectory], *, hybrid: bool) -> None:
    """Each valid attempt's reward from the judge (one call each, concurrently); an unusable
    reply leaves the state-match reward in place, counted as a fallback."""
    async def one(traj: tpb.Trajectory) -> None:
        score = await judge.ask(counters, judging.parse_score, **judging.prompt_fields(task, traj))
        if score is None:
            counters.fallbacks += 1
            return
        traj.reward.CopyFrom(judging.judged_reward(score, traj.reward, hybrid, judge.prompt_version))
    await asyncio.gather(*(one(t) for t in trajectories if not t.infra_failure.reason))


def refused_as(field: str, e: InvalidArgument) -> InvalidArgument:
    """An environment's INVALID_ARGUMENT, named by the field of *this* request that led to it."""
    return InvalidArgument(field, str(e)[:300])


class Explorer:
    def __init__(self, policy: LazyPolicy, locate: Locate, retrieve: Retrieve,
                 switcher_factory: Callable[[object], PolicySwitcher],
                 judge: Callable[[], Awaitable[RoleCaller]] | None = None,
                 explorer_role: Callable[[], Awaitable[RoleCaller]] | None = None,
                 profile_of: Callable[[str], Awaitable[object]] | None = None):
        self.policy, self.locate, self.retrieve = policy, locate, retrieve
        self._switcher_factory = switcher_factory
        self._switcher: PolicySwitcher | None = None
        self.judge = judge  # the judge role's caller, built on first use
        self.explorer_role = explorer_role  # the explorer role's caller, built on first use
        self.profile_of = profile_of  # env_id -> its EnvironmentProfile (the registry's)

    async def check_base_model(self, req: events_pb2.RolloutRequested) -> None:
        """A job for another base model could only be rolled out by a different policy."""
        if not req.base_model_digest:
            return
        mine = await self.policy.base_model_digest()
        if mine != req.base_model_digest:
            raise FailedPrecondition(
                f"base_model: the run trains {req.base_model[:80]!r} (digest {req.base_model_digest[:12]}), this "
                f"explorer serves {self.policy.base_model_name()!r} (digest {mine[:12]}): point policy.model_dir "
                "(and the vLLM server) at the run's model")

    async def experiences_for(self, req: events_pb2.RolloutRequested) -> tuple[list[tuple[str, str]], list]:
        """(experience id, text) pairs to inject, and the rewrite's role usage. With a rewrite the
        block is the rewritten text; every retrieved id is still recorded as injected."""
        if req.guided_share <= 0 or req.evaluation or req.experience_top_k <= 0:
            return [], []
        r = await self.retrieve(req.task.query, req.experience_top_k, req.task.env_id, req.rewrite_experiences)
        if r.rewritten and r.pairs:
            return [(r.pairs[0][0], r.rewritten)] + [(eid, "") for eid, _ in r.pairs[1:]], r.usage
        return r.pairs, r.usage

    async def rollout(self, req: events_pb2.RolloutRequested) -> tpb.RolloutGroup:
        """One group with the policy version the job names."""
        group, _ = await self.rollout_judged(req)
        return group

    async def rollout_judged(self, req: events_pb2.RolloutRequested) -> tuple[tpb.RolloutGroup, list]:
        """One group, its synthetic-task attempts scored as the job's reward_judge says, and what
        the LLM roles cost for it (the experience rewrite, the judge; empty when none was called)."""
        opts = rollout_options(req)
        backend = await self.policy.get()
        await self.check_base_model(req)
        if self._switcher is None:
            self._switcher = self._switcher_factory(backend)
        backend = await self._switcher.ensure(req.run_id, req.policy_version)
        experiences, usage = await self.experiences_for(req)
        try:
            async with RemoteEnvironment(await self.locate(req.task.env_id)) as env:
                trajectories = await run_group(backend, env, req.task, opts, group_id=req.job_id,
                                               experiences=experiences)
        except InvalidArgument as e:
            raise refused_as("task", e) from None
        # Evaluation stays on the state match (a grounded measurement), except for an opaque
        # environment's task (no reference end state), which only the judge can score.
        if (req.reward_judge in (tpb.REWARD_JUDGE_LLM, tpb.REWARD_JUDGE_HYBRID)
                and req.task.source == task_pb2.TASK_SOURCE_SYNTHETIC
                and (not req.evaluation or not req.task.reference_end_state_json)):
            if self.judge is None:
                raise FailedPrecondition("the LLM reward judge was asked for, but no judge role is configured")
            counters = RoleCounters("judge")
            await judge_group(await self.judge(), counters, req.task, trajectories,
                              hybrid=req.reward_judge == tpb.REWARD_JUDGE_HYBRID)
            usage.append(counters.to_pb())
        return tpb.RolloutGroup(group_id=req.job_id, run_id=req.run_id, train_step=req.train_step,
                                task_id=req.task.task_id, trajectories=trajectories), usage

    async def walks(self, req: events_pb2.ExploreRequested) -> list[events_pb2.Walk]:
        walks, _ = await self.walks_counted(req)
        return walks

    async def walks_counted(self, req: events_pb2.ExploreRequested) -> tuple[list[events_pb2.Walk], list]:
        """Exploration walks from one seed task (or the default initial state), their actions
        chosen as the request's explorer kind says, and the explorer role's usage."""
        check_explore(req)
        walks, counters, choose = [], None, None
        if req.explorer in (task_pb2.EXPLORER_KIND_LLM, task_pb2.EXPLORER_KIND_MIXED):
            if self.explorer_role is None or self.profile_of is None:
                raise FailedPrecondition("the LLM explorer was asked for, but no explorer role is configured")
            counters = RoleCounters("explorer")
            choose = llm_chooser(await self.explorer_role(), counters, await self.profile_of(req.env_id))
        try:
            async with RemoteEnvironment(await self.locate(req.env_id)) as env:
                for i in range(req.walks):
                    by_llm = req.explorer == task_pb2.EXPLORER_KIND_LLM or (
                        req.explorer == task_pb2.EXPLORER_KIND_MIXED and i % 2 == 1)
                    walk = await run_walk(env, walk_id=f"{req.request_id}/w{i}", seed=req.seed * 1000 + i,
                                          max_steps=req.max_steps_per_walk, seed_task_id=req.seed_task_id,
                                          choose=choose if by_llm else None)
                    if by_llm:
                        walk.prompt_version = choose.prompt_version
                    walks.append(walk_to_pb(walk))
        except InvalidArgument as e:
            raise refused_as("seed_task_id", e) from None
        return walks, [counters.to_pb()] if counters else []
