"""Our own decode loop (prefill, then one token at a time over the KV cache), replacing
`model.generate` for the policy:

- every request samples from its own torch.Generator seeded with its own seed, so an attempt's
  tokens depend on (its prompt, its seed, the policy), not on which other requests shared its
  batch (HF's generate has one generator per batch);
- per-request sampling settings in one batch (temperature, top-p, token budget);
- behaviour log-probs are the log-softmax of the processed logits each token was drawn from
  (temperature and top-p applied; the raw distribution when greedy), as before;
- the compute dtype is chosen by measurement (`fast_dtype`): bfloat16 where this CPU runs it
  faster (AMX), float32 otherwise. Log-probs are always computed in float32."""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Sequence

from evolver.models.backend import SamplingParams


@dataclass
class Decoded:
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str


def fast_dtype(device: str = "cpu", size: int = 768, min_gain: float = 1.5) -> "torch.dtype":  # noqa: F821
    """bfloat16 when a bf16 matmul here is at least min_gain times faster than float32 (CPUs
    with AMX: ~9x), else float32 (an AVX2-only CPU runs bf16 matmuls ~40x slower). Measured,
    not configured: the same config runs well on both."""
    import torch
    if device != "cpu":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32

    def rate(dtype) -> float:
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        a @ b
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        return 1.0 / best
    try:
        return torch.bfloat16 if rate(torch.bfloat16) >= min_gain * rate(torch.float32) else torch.float32
    except RuntimeError:  # no bf16 kernels at all
        return torch.float32


def autocast(device: str, dtype) -> contextlib.AbstractContextManager:
    import torch
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def processed_logprobs(logits, temperatures, top_ps):
    """(B, V) float32 logits -> log-probs of the distribution each row samples from: divided by
    its temperature (greedy rows: raw), tokens outside its top-p nucleus at -inf."""
    import torch
    t = torch.where(temperatures > 0, temperatures, torch.ones_like(temperatures))
    scaled = logits / t[:, None]
    if bool((top_ps < 1).any()):
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above
        drop_sorted = before > top_ps[:, None]  # the first token is always kept
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scaled = scaled.masked_fill(drop & (temperatures > 0)[:, None], float("-inf"))
    return torch.log_softmax(scaled, dim=-1)


def decode(model, prompts: Sequence[Sequence[int]], samplings: Sequence[SamplingParams], *, pad_id: int,
           end_ids: set[int], device: str = "cpu", dtype=None) -> list[Decoded]:
    import torch
    n = len(prompts)
    width = max(len(p) for p in prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for row, p in enumerate(prompts):  # left padding: every prompt ends at the same column
        input_ids[row, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        attention[row, width - len(p):] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    temperatures = torch.tensor([max(0.0, s.temperature) for s in samplings], dtype=torch.float32)
    top_ps = torch.tensor([s.top_p for s in samplings], dtype=torch.float32)
    generators = []
    for s in samplings:
        g = torch.Generator()
        g.manual_seed(s.seed if s.seed is not None else random.getrandbits(63))
        generators.append(g)
    out = [Decoded([], [], "length") for _ in range(n)]
    live = [s.max_new_tokens > 0 for s in samplings]
    budget = max((s.max_new_tokens for s in samplings), default=0)
    past = None
    cur_ids, cur_pos, mask = input_ids, positions, attention
    with torch.inference_mode(), autocast(device, dtype if dtype is not None else torch.float32):
        for _ in range(budget):
            if not any(live):
                break
            # logits_to_keep=1: the vocabulary projection of the last position only (a prompt's
            # other positions would cost 49k x its length for nothing).
            res = model(input_ids=cur_ids.to(device), attention_mask=mask.to(device), position_ids=cur_pos.to(device),
                        cache=past, use_cache=True, logits_to_keep=1)
            past = res.cache
            logps = processed_logprobs(res.logits[:, -1, :].float().cpu(), temperatures, top_ps)
            greedy = logps.argmax(-1)
            nxt = []
            for row in range(n):
                if not live[row]:
                    nxt.append(pad_id)
                    continue
                if temperatures[row] > 0:
                    tok = int(torch.multinomial(logps[row].exp(), 1, generator=generators[row]))
                else:
                    tok = int(greedy[row])
                d = out[row]
                d.token_ids.append(tok)
                d.logprobs.append(float(logps[row, tok]))
                if tok in end_ids:
                    d.finish_reason, live[row] = "stop", False
                elif len(d.token_ids) >= samplings[row].max_new_tokens:
                    live[row] = False
                nxt.append(tok)
            cur_ids = torch.tensor(nxt, dtype=torch.long)[:, None]
            cur_pos = cur_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long)], dim=1)
    return out
