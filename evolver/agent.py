"""One agent episode: the policy talks to an environment through the Environment protocol.

Each assistant turn is generated from the exact token record, parsed strictly, and then:
  - malformed output       -> an error observation for the model (the environment is not called)
  - tool calls             -> stepped in the environment; results come back as <tool_response>
  - plain text (no calls)  -> the answer; the environment moves to its next user turn or ends
An environment or server failure (gRPC UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL) stops the
episode and marks it an infrastructure failure: it is left out of training statistics, never
scored as zero."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import grpc

from evolver.envs.base import Call, CallResult, Tool
from evolver.models.backend import GenerationRequest, SamplingParams
from evolver.models.conversation import Conversation
from evolver.models.toolcall import parse_turn, render_tool_results, system_prompt

INFRA_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
               grpc.StatusCode.RESOURCE_EXHAUSTED}


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
    policy_versions: set[int] = field(default_factory=set)

    @property
    def final_answer(self) -> str:
        return self.answers[-1] if self.answers else ""


async def run_episode(backend, episode, tools: Sequence[Tool], *, sampling: SamplingParams = SamplingParams(),
                      max_steps: int = 12, experience: str = "") -> EpisodeRecord:
    conv = Conversation(backend.tokenizer)
    conv.start(system_prompt(tools), episode.user_message, experience=experience)
    record = EpisodeRecord(conv)
    for _ in range(max_steps):
        (c,) = await backend.generate([GenerationRequest(conv.ids(), sampling)])
        record.policy_versions.add(c.policy_version)
        conv.add_completion(c.token_ids, c.logprobs, c.policy_version, ended=c.finish_reason == "stop")
        parsed = parse_turn(c.text)
        if parsed.errors:
            record.steps.append(AgentStep(c.text, [], [], [e.message for e in parsed.errors]))
            conv.add_user(parsed.error_observation())
            continue
        try:
            out = await episode.step(parsed.calls, assistant_text=c.text)
        except grpc.aio.AioRpcError as e:
            if e.code() in INFRA_CODES:
                record.infra_failure = f"environment {e.code().name}: {e.details()}"
                return record
            raise
        record.steps.append(AgentStep(c.text, list(parsed.calls), list(out.results)))
        if parsed.calls:
            conv.add_user(render_tool_results([(call.name, r.content) for call, r in zip(parsed.calls, out.results)]))
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
