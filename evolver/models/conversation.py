"""Token-exact conversations. The record keeps, segment by segment, the exact token ids the
policy saw and produced; the training sequence is rebuilt from those ids, never by
re-tokenising text (peers' most reported RL bug: re-tokenisation drift).

Segments (ChatML, SmolLM2/Qwen style):
  prompt      scaffolding the policy did not write (system, user turns, observations)
  experience  an injected experience block, marked so training can strip it (spec §4.6)
  completion  the policy's own tokens, with their behaviour log-probs and policy version
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

EXPERIENCE_OPEN = "<experience>\n"
EXPERIENCE_CLOSE = "</experience>\n\n"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


@dataclass
class Segment:
    kind: str  # prompt | experience | completion
    token_ids: list[int]
    logprobs: list[float] | None = None
    policy_version: int | None = None


@dataclass
class TrainingSequence:
    token_ids: list[int]
    loss_mask: list[int]  # 1 on the policy's own tokens
    experience_mask: list[int]  # 1 on injected-experience tokens (all 0 when stripped)
    step_ids: list[int]  # completion index per policy token, -1 elsewhere
    behaviour_logprobs: list[float]  # 0.0 where loss_mask is 0


@dataclass
class Conversation:
    tokenizer: object
    segments: list[Segment] = field(default_factory=list)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _prompt(self, text: str) -> None:
        if text:
            self.segments.append(Segment("prompt", self._encode(text)))

    def start(self, system: str, user: str, experience: str = "") -> None:
        """System message, then the first user turn; an experience block, when given, opens the
        user turn as its own marked segment."""
        if self.segments:
            raise ValueError("conversation already started")
        self._prompt(f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n")
        if experience:
            self.segments.append(Segment("experience", self._encode(f"{EXPERIENCE_OPEN}{experience.strip()}\n{EXPERIENCE_CLOSE}")))
        self._prompt(f"{user}{IM_END}\n{IM_START}assistant\n")

    def ids(self) -> list[int]:
        """The exact context for the next completion."""
        return [t for s in self.segments for t in s.token_ids]

    def add_completion(self, token_ids: Sequence[int], logprobs: Sequence[float] | None, policy_version: int,
                       ended: bool) -> None:
        """Appends exactly what the backend produced. If generation stopped before the turn's end
        token (length limit), the end marker is added as scaffolding, not as policy output."""
        self.segments.append(Segment("completion", list(token_ids), list(logprobs) if logprobs is not None else None,
                                     policy_version))
        if not ended:
            self._prompt(IM_END)

    def add_prefix(self, text: str) -> None:
        """Scaffolding at the start of the assistant turn (not the policy's output)."""
        self._prompt(text)

    def add_user(self, text: str) -> None:
        """A user turn or an observation, and the next assistant header."""
        self._prompt(f"\n{IM_START}user\n{text}{IM_END}\n{IM_START}assistant\n")

    @property
    def completions(self) -> list[Segment]:
        return [s for s in self.segments if s.kind == "completion"]

    def training_sequence(self, keep_experience: bool = False) -> TrainingSequence:
        """keep_experience=False strips the experience block (AgentEvolver's discard mode) and
        recomputes every mask for the shorter sequence; True keeps it, masked."""
        ids, loss, exp, steps, lps = [], [], [], [], []
        step = 0
        for s in self.segments:
            if s.kind == "experience" and not keep_experience:
                continue
            n = len(s.token_ids)
            ids.extend(s.token_ids)
            is_completion = s.kind == "completion"
            loss.extend([1 if is_completion else 0] * n)
            exp.extend([1 if s.kind == "experience" else 0] * n)
            steps.extend([step if is_completion else -1] * n)
            lps.extend(s.logprobs if is_completion and s.logprobs is not None else [0.0] * n)
            if is_completion:
                step += 1
        return TrainingSequence(ids, loss, exp, steps, lps)
