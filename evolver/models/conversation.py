"""Token-exact conversations. The record keeps, segment by segment, the exact token ids the
policy saw and produced; the training sequence is rebuilt from those ids, never by
re-tokenising text (peers' most reported RL bug: re-tokenisation drift).

Segments (ChatML, SmolLM2/Qwen style):
  prompt      scaffolding the policy did not write (system, user turns, observations)
  prefix      scaffolding opening an assistant turn (first_turn_prefix), never trained on
  experience  an injected experience block, marked so training can strip it (spec §4.6)
  completion  the policy's own tokens, with their behaviour log-probs and policy version

Context templates (spec §6.3) decide what the policy sees at each turn:
  linear           the whole history (one training sequence per trajectory);
  strip_reasoning  earlier assistant turns without their <think>...</think> (AgentEvolver's
                   linear_think);
  sliding_window   the task, then only the last `window_turns` turns (the rest replaced by a
                   one-line note), so long episodes stay within a context budget.
The last two rewrite history, so no single sequence holds every turn's exact context: each turn
becomes its own training sequence, the exact ids the policy saw plus the ids it produced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

EXPERIENCE_OPEN = "<experience>\n"
EXPERIENCE_CLOSE = "</experience>\n\n"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TEMPLATES = ("linear", "strip_reasoning", "sliding_window")
_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


@dataclass
class Segment:
    kind: str  # prompt | prefix | experience | completion
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
    template: str = "linear"
    window_turns: int = 2
    # Per generated turn: the index of its completion segment and the exact context it saw.
    turns: list[tuple[int, list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown context template {self.template!r}: one of {', '.join(TEMPLATES)}")

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
        """The whole record, every segment in order (the linear template's context)."""
        return [t for s in self.segments for t in s.token_ids]

    def context(self, keep_experience: bool = True) -> list[int]:
        """The exact context for the next completion under this conversation's template."""
        return self._context_of(self.segments, keep_experience)

    def _context_of(self, segments: list[Segment], keep_experience: bool) -> list[int]:
        segs = [s for s in segments if keep_experience or s.kind != "experience"]
        if self.template == "strip_reasoning":
            return [t for s in segs for t in (self._stripped(s) if s.kind == "completion" else s.token_ids)]
        if self.template == "sliding_window":
            first = next((i for i, s in enumerate(segs) if s.kind == "completion"), len(segs))
            head, rest = segs[:first], segs[first:]
            starts = [i for i, s in enumerate(rest) if s.kind == "completion"]
            if len(starts) > self.window_turns:
                dropped = len(starts) - self.window_turns
                if head and head[-1].kind == "prefix":  # the first turn's opening goes with that turn
                    head = head[:-1]
                note = self._encode(f"[{dropped} earlier turn{'s' if dropped > 1 else ''} omitted]{IM_END}\n"
                                    f"{IM_START}user\nContinue.{IM_END}\n{IM_START}assistant\n")
                rest = [Segment("prompt", note)] + rest[starts[dropped]:]
            return [t for s in head + rest for t in s.token_ids]
        return [t for s in segs for t in s.token_ids]

    def _stripped(self, s: Segment) -> list[int]:
        """A completion without its reasoning, for later turns' contexts; unchanged (the exact
        ids) when it has none."""
        text = self.tokenizer.decode(s.token_ids)
        if "<think>" not in text:
            return s.token_ids
        return self._encode(_THINK.sub("", text))

    def start_turn(self) -> list[int]:
        """The context for the turn about to be generated, remembered for its training sequence."""
        ctx = self.context()
        self.turns.append((len(self.segments), ctx))
        return ctx

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
        if text:
            self.segments.append(Segment("prefix", self._encode(text)))

    def add_user(self, text: str) -> None:
        """A user turn or an observation, and the next assistant header."""
        self._prompt(f"\n{IM_START}user\n{text}{IM_END}\n{IM_START}assistant\n")

    @property
    def completions(self) -> list[Segment]:
        return [s for s in self.segments if s.kind == "completion"]

    @property
    def rewrites_history(self) -> bool:
        return self.template != "linear"

    def turn_sequences(self, keep_experience: bool = False) -> list[TrainingSequence]:
        """One training sequence per generated turn (for templates that rewrite history): the
        context that turn saw (without the experience block unless kept) and the turn's own
        tokens, which alone are trained on (step id = the turn's index)."""
        out = []
        for step, (index, _) in enumerate(self.turns):
            if index >= len(self.segments) or self.segments[index].kind != "completion":
                continue  # a turn that produced nothing
            head = self.segments[:index]
            ctx = self._context_of(head, keep_experience)
            experience = [0] * len(ctx)
            if keep_experience:  # the block sits in the head, which every template keeps whole
                offset = 0
                for seg in head:
                    if seg.kind == "completion":
                        break
                    if seg.kind == "experience":
                        experience[offset:offset + len(seg.token_ids)] = [1] * len(seg.token_ids)
                    offset += len(seg.token_ids)
            c = self.segments[index]
            n, m = len(ctx), len(c.token_ids)
            out.append(TrainingSequence(ctx + list(c.token_ids), [0] * n + [1] * m, experience + [0] * m,
                                        [-1] * n + [step] * m,
                                        [0.0] * n + (list(c.logprobs) if c.logprobs is not None else [0.0] * m)))
        return out

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
