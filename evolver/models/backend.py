"""The policy backend interface: token ids in, completion out with the exact token ids, their
log-probs and the policy version that produced them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    prompt_token_ids: Sequence[int]
    sampling: SamplingParams = SamplingParams()


@dataclass(frozen=True)
class ChatReply:
    """An auxiliary role's chat completion and what it cost."""
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""


@dataclass
class Completion:
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (end-of-turn token) or "length"
    policy_version: int
    # Log-prob of each generated token under the sampling distribution (temperature applied;
    # the raw distribution when greedy). None when the backend could not provide them.
    logprobs: list[float] | None = None
    # False when the server returned text we had to tokenise ourselves (then the trainer must
    # recompute log-probs and treat the ids as approximate): said plainly, never hidden.
    tokens_exact: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def logprobs_exact(self) -> bool:
        return self.logprobs is not None and self.tokens_exact


class PolicyBackend(Protocol):
    tokenizer: object

    @property
    def policy_version(self) -> int: ...

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]: ...


class FakeBackend:
    """A scripted backend for unit tests of *other* code (agents, parsers): it returns the given
    texts in order, tokenised with the real tokenizer, with made-up log-probs. A fake: it runs
    no model."""

    def __init__(self, tokenizer, scripted: Sequence[str], version: int = 0):
        self.tokenizer = tokenizer
        self._scripted = list(scripted)
        self._version = version
        self.requests: list[GenerationRequest] = []

    @property
    def policy_version(self) -> int:
        return self._version

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = []
        for r in requests:
            self.requests.append(r)
            text = self._scripted.pop(0) if self._scripted else ""
            ids = list(self.tokenizer.encode(text + "<|im_end|>", add_special_tokens=False))
            out.append(Completion(list(r.prompt_token_ids), ids, text, "stop", self._version, [-1.0] * len(ids)))
        return out
