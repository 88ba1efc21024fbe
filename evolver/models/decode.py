"""Our own decode loop (prefill, then one token at a time over the KV cache), replacing
`model.generate` for the policy:

- every request samples from its own torch.Generator seeded with its own seed, so an attempt's
  tokens depend on (its prompt, its seed, the policy), not on which other requests shared its
  batch (HF's generate has one generator per batch);
- per-request sampling settings in one batch (temperature, top-p, token budget);
- behaviour log-probs are the log-softmax of the processed logits each token was drawn from
  (temperature and top-p applied; the raw distribution when greedy), as before;
- the compute dtype is chosen by measurement (`fast_dtype`): bfloat16 where this CPU runs it
  faster (AMX), float32 otherwise. Log-probs are always computed in float32;
- the KV cache has room reserved for the token budget, so a decode step writes its position in
  place instead of concatenating the whole cache (`reserve`)."""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from evolver.models.backend import SamplingParams


@dataclass
class Decoded:
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str


def fast_dtype(device: str = "cpu", size: int = 768, min_gain: float = 1.5) -> torch.dtype:  # noqa: F821
    """bfloat16 when a bf16 matmul here is at least min_gain times faster than float32 (CPUs
    with AMX: ~9x; AVX-512 BF16 without AMX, a 2-core EPYC: 4.5x), else float32 (an AVX2-only
    CPU runs bf16 matmuls ~40x slower). Measured, not configured: one config runs well on all."""
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


def dtype_setting(name: str):
    """settings.policy.compute_dtype as a torch dtype; None for "auto" (measured by fast_dtype)."""
    import torch
    return None if name == "auto" else {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


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


@functools.cache
def _reserved_layer_class():
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A DynamicLayer whose keys and values are views of buffers with room to grow: an update
        writes the new positions in place. DynamicLayer concatenates, copying the whole cache
        every step: torch.cat was 41% of a batch-8 rollout's time on a CPU (800-token prompts)."""

        def __init__(self, keys, values, room: int):
            super().__init__()
            self.device, self.is_initialized = keys.device, True
            self._reserve(keys, values, room)

        def _reserve(self, keys, values, room: int) -> None:
            n = keys.shape[-2]
            shape = (*keys.shape[:-2], n + room, keys.shape[-1])
            self._kbuf, self._vbuf = keys.new_empty(shape), values.new_empty(shape)
            self._kbuf[..., :n, :] = keys
            self._vbuf[..., :n, :] = values
            self._length = n
            self.keys, self.values = self._kbuf[..., :n, :], self._vbuf[..., :n, :]

        def _stale(self) -> bool:
            return (self.keys is None or self.keys.shape[-2] != self._length
                    or self.keys.data_ptr() != self._kbuf.data_ptr())

        def batch_select_indices(self, indices) -> None:
            """Only the rows at `indices`, keeping the room reserved (DynamicLayer's version
            would leave a plain tensor, and the next update would copy it into a new buffer)."""
            if self._stale():
                super().batch_select_indices(indices)
                return
            self._kbuf, self._vbuf = self._kbuf.index_select(0, indices), self._vbuf.index_select(0, indices)
            self.keys, self.values = self._kbuf[..., :self._length, :], self._vbuf[..., :self._length, :]

        def update(self, key_states, value_states, *args, **kwargs):
            if self._stale():
                # reassigned from outside (reorder, crop, reset): start a buffer from what it holds now
                if self.keys is None or self.keys.numel() == 0:
                    self._reserve(key_states[..., :0, :], value_states[..., :0, :], 0)
                else:
                    self._reserve(self.keys, self.values, 0)
            n = self._length + key_states.shape[-2]
            if n > self._kbuf.shape[-2]:  # past the reservation: grow geometrically
                self._reserve(self.keys, self.values, max(n - self._length, self._length))
            self._kbuf[..., self._length:n, :] = key_states
            self._vbuf[..., self._length:n, :] = value_states
            self._length = n
            self.keys, self.values = self._kbuf[..., :n, :], self._vbuf[..., :n, :]
            return self.keys, self.values

    return ReservedLayer


def reserve(cache, room: int):
    """The cache (a DynamicCache) with room for `room` more positions in every layer."""
    cls = _reserved_layer_class()
    cache.layers = [cls(layer.keys, layer.values, room) for layer in cache.layers]
    return cache


def _prefill(model, prompts: Sequence[Sequence[int]], pad_id: int, device: str):
    """Left-padded prompts in one forward pass -> (cache, attention mask, last positions, last
    logits). Identical prompts (a group's attempts at their first turn) are prefilled once and
    their KV cache copied: on a CPU the prefill of a tool-laden prompt costs far more than the
    tokens decoded after it."""
    import torch
    n = len(prompts)
    width = max(len(p) for p in prompts)
    first: dict[tuple[int, ...], int] = {}
    rows_of = [first.setdefault(tuple(p), len(first)) for p in prompts]
    unique = [rows_of.index(u) for u in range(len(first))]
    input_ids = torch.full((len(unique), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(unique), width), dtype=torch.long)
    for row, i in enumerate(unique):
        p = prompts[i]
        input_ids[row, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        attention[row, width - len(p):] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    # logits_to_keep=1: the vocabulary projection of the last position only (a prompt's other
    # positions would cost 49k x its length for nothing).
    res = model(input_ids=input_ids.to(device), attention_mask=attention.to(device), position_ids=positions.to(device),
                use_cache=True, logits_to_keep=1)
    expand = torch.tensor(rows_of, dtype=torch.long)
    if len(unique) < n:
        res.cache.reorder_cache(expand.to(device))
    return res.cache, attention[expand], positions[expand][:, -1:], res.logits[:, -1, :].float().cpu()[expand]


def _prefill_from_prefixes(model, prompts: Sequence[Sequence[int]], hits: list, pad_id: int, device: str):
    """As _prefill, where some prompts continue a cached sequence: those run only their new
    tokens on top of the cached KV (one row at a time), the rest are prefilled together, and the
    rows' caches are merged, left-padded, into one batch."""
    import torch
    from transformers import DynamicCache
    n = len(prompts)
    row_kv: list = [None] * n
    row_logits: list = [None] * n
    cold = [i for i, (_, kv) in enumerate(hits) if kv is None]
    if cold:
        cache, _, _, logits = _prefill(model, [prompts[i] for i in cold], pad_id, device)
        width = max(len(prompts[i]) for i in cold)
        for j, i in enumerate(cold):
            pad = width - len(prompts[i])
            row_kv[i] = [(layer.keys[j:j + 1, :, pad:], layer.values[j:j + 1, :, pad:]) for layer in cache.layers]
            row_logits[i] = logits[j]
    for i, (cached, kv) in enumerate(hits):
        if kv is None:
            continue
        p = list(prompts[i])
        res = model(input_ids=torch.tensor([p[cached:]], dtype=torch.long, device=device),
                    attention_mask=torch.ones((1, len(p)), dtype=torch.long, device=device),
                    position_ids=torch.arange(cached, len(p), device=device)[None],
                    cache=DynamicCache(ddp_cache_data=kv), use_cache=True, logits_to_keep=1)
        row_kv[i] = [(layer.keys, layer.values) for layer in res.cache.layers]
        row_logits[i] = res.logits[0, -1, :].float().cpu()
    width = max(len(p) for p in prompts)
    attention = torch.zeros((n, width), dtype=torch.long)
    merged = []
    for layer in range(len(row_kv[0])):
        k0 = row_kv[0][layer][0]
        keys = k0.new_zeros((n, k0.shape[1], width, k0.shape[3]))
        values = keys.clone()
        for i in range(n):
            k, v = row_kv[i][layer]
            keys[i, :, width - k.shape[2]:] = k[0]
            values[i, :, width - v.shape[2]:] = v[0]
        merged.append((keys, values))
    for i, p in enumerate(prompts):
        attention[i, width - len(p):] = 1
    last = torch.tensor([[len(p) - 1] for p in prompts], dtype=torch.long)
    return DynamicCache(ddp_cache_data=merged), attention, last, torch.stack(row_logits)


def _keep_prefixes(prefix_cache, past, prompts, out, rows: list[int], done: list[int], width: int) -> None:
    """Each finished request's sequence as fed to the model (its prompt, then every generated
    token but the last, which was sampled and never run), with its KV, for its next turn."""
    for j, row in enumerate(rows):
        if row not in done:
            continue
        p, d = prompts[row], out[row]
        fed = len(p) + max(len(d.token_ids) - 1, 0)
        start = width - len(p)
        prefix_cache.put(list(p) + d.token_ids[:-1], [
            (layer.keys[j:j + 1, :, start:start + fed].clone(),
             layer.values[j:j + 1, :, start:start + fed].clone()) for layer in past.layers])


def decode(model, prompts: Sequence[Sequence[int]], samplings: Sequence[SamplingParams], *, pad_id: int,
           end_ids: set[int], device: str = "cpu", dtype=None, prefix_cache=None) -> list[Decoded]:
    """prefix_cache: a PrefixCache of this policy version's recent sequences (None: none)."""
    import torch
    n = len(prompts)
    temperatures = torch.tensor([max(0.0, s.temperature) for s in samplings], dtype=torch.float32)
    top_ps = torch.tensor([s.top_p for s in samplings], dtype=torch.float32)
    generators = []
    for s in samplings:
        g = torch.Generator()
        g.manual_seed(s.seed if s.seed is not None else random.getrandbits(63))
        generators.append(g)
    out = [Decoded([], [], "length") for _ in range(n)]
    budget = max((s.max_new_tokens for s in samplings), default=0)
    if budget == 0:
        return out
    with torch.inference_mode(), autocast(device, dtype if dtype is not None else torch.float32):
        hits = [prefix_cache.longest(p) for p in prompts] if prefix_cache is not None else [(0, None)] * n
        if any(kv is not None for _, kv in hits):
            past, mask, cur_pos, logits = _prefill_from_prefixes(model, prompts, hits, pad_id, device)
        else:
            past, mask, cur_pos, logits = _prefill(model, prompts, pad_id, device)
        past = reserve(past, budget)
        width, cur_ids = mask.shape[1], None
        # rows[j]: the request in batch row j. A finished request leaves the batch: the steps after
        # it cost attention and matmuls for the live rows only (in a rollout batch most attempts
        # stop after a short call while a few run to the token budget).
        rows = list(range(n))
        done = [row for row in rows if samplings[row].max_new_tokens <= 0]
        for step in range(budget):
            if done:
                if prefix_cache is not None:
                    _keep_prefixes(prefix_cache, past, prompts, out, rows, done, width)
                keep = [j for j, row in enumerate(rows) if row not in done]
                done = []
                if not keep:
                    break
                if len(keep) < len(rows):
                    index = torch.tensor(keep, dtype=torch.long)
                    past.batch_select_indices(index.to(device))
                    mask, cur_pos, logits = mask[index], cur_pos[index], logits[index]
                    if cur_ids is not None:
                        cur_ids = cur_ids[index]
                    rows = [rows[j] for j in keep]
            if step > 0:
                res = model(input_ids=cur_ids.to(device), attention_mask=mask.to(device),
                            position_ids=cur_pos.to(device), cache=past, use_cache=True, logits_to_keep=1)
                past = res.cache
                logits = res.logits[:, -1, :].float().cpu()
            index = torch.tensor(rows, dtype=torch.long)
            logps = processed_logprobs(logits, temperatures[index], top_ps[index])
            greedy = logps.argmax(-1)
            nxt = []
            for j, row in enumerate(rows):
                if temperatures[row] > 0:
                    tok = int(torch.multinomial(logps[j].exp(), 1, generator=generators[row]))
                else:
                    tok = int(greedy[j])
                d = out[row]
                d.token_ids.append(tok)
                d.logprobs.append(float(logps[j, tok]))
                if tok in end_ids:
                    d.finish_reason = "stop"
                    done.append(row)
                elif len(d.token_ids) >= samplings[row].max_new_tokens:
                    done.append(row)
                nxt.append(tok)
            cur_ids = torch.tensor(nxt, dtype=torch.long)[:, None]
            cur_pos = cur_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
        if prefix_cache is not None and done:
            _keep_prefixes(prefix_cache, past, prompts, out, rows, done, width)
    return out
