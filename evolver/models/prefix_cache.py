"""The KV cache of recently decoded sequences, reused by the next turn of the same episode.

An agent's next prompt is its previous prompt, its own completion and the tool's observation:
on a CPU, prefilling the whole conversation again every turn (a system prompt with tool schemas
is ~1k tokens) costs far more than decoding the turn. Kept per policy version (the owner clears
it on every adapter swap), bounded in tokens, least recently used first out. Exact: the cached
keys and values are the ones the same weights computed for the same tokens at the same
positions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

# A hit shorter than this is not worth the per-row prefill path.
MIN_HIT_TOKENS = 16


class PrefixCache:
    def __init__(self, max_tokens: int = 32768):
        self.max_tokens = max_tokens
        self._entries: OrderedDict[tuple[int, ...], list[tuple]] = OrderedDict()
        self._tokens = 0
        self.hits = 0  # prompts served from a cached prefix
        self.reused_tokens = 0  # prompt tokens not prefilled again

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._tokens = 0

    def longest(self, prompt: Sequence[int]) -> tuple[int, list[tuple] | None]:
        """The longest cached prefix of prompt, at most len(prompt) - 1 tokens (the last prompt
        token is always run, for its logits): (its length, per-layer (keys, values) of shape
        (1, heads, length, dim)), or (0, None)."""
        best: tuple[int, ...] | None = None
        p = tuple(prompt)
        for key in self._entries:
            if len(key) >= MIN_HIT_TOKENS and (best is None or len(key) > len(best)) and p[:len(key)] == key:
                best = key
        if best is None:
            return 0, None
        self._entries.move_to_end(best)
        n = min(len(best), len(p) - 1)
        if n < MIN_HIT_TOKENS:
            return 0, None
        kv = self._entries[best]
        self.hits += 1
        self.reused_tokens += n
        return n, [(k[:, :, :n], v[:, :, :n]) for k, v in kv]

    def put(self, tokens: Sequence[int], kv: list[tuple]) -> None:
        """kv: per-layer (keys, values) for exactly these tokens, shape (1, heads, len, dim)."""
        key = tuple(tokens)
        if len(key) < MIN_HIT_TOKENS or len(key) > self.max_tokens:
            return
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        self._entries[key] = kv
        self._tokens += len(key)
        while self._tokens > self.max_tokens:
            old, _ = self._entries.popitem(last=False)
            self._tokens -= len(old)
