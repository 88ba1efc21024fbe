"""The explorer's policy: loaded once per process on first use, from settings.policy."""

from __future__ import annotations

import asyncio
from pathlib import Path

from evolver.config import Settings
from evolver.errors import FailedPrecondition


def model_dir(settings: Settings) -> Path:
    from evolver.models.prepare import resolve_model_dir
    return resolve_model_dir(settings.policy.model_dir)


class LazyPolicy:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._backend = None
        self._lock = asyncio.Lock()

    async def get(self):
        async with self._lock:
            if self._backend is None:
                p = self.settings.policy
                if p.backend == "openai":
                    from evolver.models.openai_compat import EndpointSettings, OpenAIBackend
                    from evolver.models.prepare import load_tokenizer
                    if not p.endpoint:
                        raise FailedPrecondition("policy.endpoint must be set for the openai backend")
                    # The tokenizer stays local: token ids are exact only if both sides agree.
                    tokenizer = await asyncio.to_thread(load_tokenizer, model_dir(self.settings))
                    self._backend = OpenAIBackend(EndpointSettings(p.endpoint, p.model), tokenizer)
                else:
                    from evolver.models.batching import BatchingBackend
                    from evolver.models.hf import HFBackend
                    # A group's attempts run concurrently; their turns are generated in batches.
                    self._backend = BatchingBackend(await asyncio.to_thread(
                        HFBackend, model_dir(self.settings),
                        prefix_cache_tokens=self.settings.policy.prefix_cache_tokens))
            return self._backend
