"""One agent episode: the policy talks to an environment through the Environment protocol.

Each assistant turn is generated from the exact token record, parsed strictly, and then:
  - malformed output       -> an error observation for the model (the environment is not called)
  - tool calls             -> stepped in the environment; results come back as <tool_response>
  - plain text (no calls)  -> the answer; the environment moves to its next user turn or ends
An environment or server failure (Unavailable, DeadlineExceeded, EnvironmentFailure: the client
translated the transport's codes) stops the episode and marks it an infrastructure failure: it
is left out of training statistics, never scored as zero. So does an instance that vanished
under the episode (NotFound: expired, or its server restarted).

While a turn waits for the policy, the episode touches its instance every `keepalive_s`
(GetState): on a loaded machine a queued turn can wait longer than the server's idle expiry
(600 s), and the instance would be reaped under a live episode."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from evolver.envs.base import Call, CallResult, Tool
from evolver.envs.client import INFRA_ERRORS, EpisodeClient
from evolver.errors import EvolverError, NotFound
from evolver.models.backend import GenerationRequest, SamplingParams
from evolver.models.conversation import Conversation
from evolver.models.toolcall import parse_turn, render_tool_results, system_prompt


@dataclass
class AgentStep:
    text: str
    calls: list[Call]
    results: list[CallResult]
    parse_errors: list[str] = field(default_factory=list)


@dataclass
class EpisodeRecord:
    conversation: Conversation
    steps: list[AgentStep] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # plain-text turns (answers to user turns)
    done: bool = False
    infra_failure: str = ""
    context_exhausted: bool = False  # the server said the next turn would not fit the context
    policy_versions: set[int] = field(default_factory=set)

    @property
    def final_answer(self) -> str:
        return self.answers[-1] if self.answers else ""


@dataclass(frozen=True)
class ContextSettings:
    """The context manager (spec §6.3-6.4): the template, the turns a sliding window keeps, the
    token budget of a turn's context plus its completion (0 = the server's limit only), and of
    one observation (0 = no clipping)."""
    template: str = "linear"
    window_turns: int = 2
    max_context_tokens: int = 0
    max_observation_tokens: int = 0


TRUNCATED = " ...[truncated]"


T = TypeVar("T")
KEEPALIVE_S = 120.0  # a fifth of the environment servers' default idle expiry (600 s)


async def keeping_alive(episode: EpisodeClient, work: Awaitable[T], keepalive_s: float = KEEPALIVE_S) -> T:
    """await work (a turn of the policy, an LLM explorer's choice), touching the episode's
    instance every keepalive_s while it waits."""
    waiting = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=keepalive_s)
            if done:
                return waiting.result()
            try:
                await episode.state()
            except EvolverError:
                pass  # the step that follows reports what is wrong with the instance
    finally:
        waiting.cancel()  # a no-op when done; a request whose episode ended is not generated


def clip_observation(tokenizer, text: str, budget: int) -> str:
    """At most `budget` tokens of an observation (AgentEvolver clips at max_env_len), marked."""
    if budget <= 0:
        return text
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= budget:
        return text
    return tokenizer.decode(ids[:budget]) + TRUNCATED


async def run_episode(backend, episode: EpisodeClient, tools: Sequence[Tool], *, sampling: SamplingParams = SamplingParams(),
                      max_steps: int = 12, experience: str = "", first_turn_prefix: str = "",
                      allow_text_around_calls: bool = False,
                      context: ContextSettings = ContextSettings(), keepalive_s: float = KEEPALIVE_S) -> EpisodeRecord:
    """first_turn_prefix: scaffolding that opens the first assistant turn (the policy continues
    it; it is parsed with the turn but never trained on)."""
    conv = Conversation(backend.tokenizer, template=context.template, window_turns=context.window_turns)
    conv.start(system_prompt(tools), episode.user_message, experience=experience)
    record = EpisodeRecord(conv)
    for turn in range(max_steps):
        prefix = first_turn_prefix if turn == 0 else ""
        if prefix:
            conv.add_prefix(prefix)
        if context.max_context_tokens and len(conv.context()) + sampling.max_new_tokens > context.max_context_tokens:
            record.context_exhausted = True  # the next turn cannot fit: end cleanly, scored as it stands
            break
        (c,) = await keeping_alive(episode, backend.generate([GenerationRequest(conv.start_turn(), sampling)]), keepalive_s)
        if c.finish_reason == "context_length":  # nothing generated: the episode ends as it stands
            record.context_exhausted = True
            break
        record.policy_versions.add(c.policy_version)
        conv.add_completion(c.token_ids, c.logprobs, c.policy_version, ended=c.finish_reason == "stop")
        text = prefix + c.text
        parsed = parse_turn(text, allow_text_around_calls=allow_text_around_calls)
        if parsed.errors:
            record.steps.append(AgentStep(text, [], [], [e.message for e in parsed.errors]))
            conv.add_user(parsed.error_observation())
            continue
        try:
            out = await episode.step(parsed.calls, assistant_text=text)
        except (*INFRA_ERRORS, NotFound) as e:
            record.infra_failure = str(e)[:500]  # "environment UNAVAILABLE: ...", "no instance ..."
            return record
        record.steps.append(AgentStep(text, list(parsed.calls), list(out.results)))
        if parsed.calls:
            conv.add_user(render_tool_results([(call.name, clip_observation(conv.tokenizer, r.content,
                                                                            context.max_observation_tokens))
                                               for call, r in zip(parsed.calls, out.results)]))
        else:
            record.answers.append(parsed.text)
            if out.next_user_message:
                conv.add_user(out.next_user_message)
        if out.done:
            record.done = True
            break
    return record


def policy_agent(backend, *, max_steps: int = 12, max_new_tokens: int = 256):
    """The harness agent (evolver.envs.harness): the policy drives each episode to its end."""
    async def run(episode, task, temperature: float, attempt: int) -> None:
        await run_episode(backend, episode, episode.tools, max_steps=max_steps,
                          sampling=SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                                                  seed=attempt if temperature > 0 else None))
    return run
