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
        self._digest: str | None = None

    async def get(self):
        async with self._lock:
            if self._backend is None:
                p = self.settings.policy
                if p.backend == "openai":
                    from evolver.models.openai_compat import EndpointSettings, OpenAIBackend
                    from evolver.models.prepare import load_tokenizer
                    if not p.endpoint or not p.model:
                        raise FailedPrecondition("policy.endpoint and policy.model (the server's base model name) "
                                                 "must be set for the openai backend")
                    # The tokenizer stays local: token ids are exact only if both sides agree.
                    tokenizer = await asyncio.to_thread(load_tokenizer, model_dir(self.settings))
                    adapter_dir = Path(p.adapter_dir or Path(self.settings.state_dir) / "adapters")
                    adapter_dir.mkdir(parents=True, exist_ok=True)
                    self._backend = OpenAIBackend(EndpointSettings(p.endpoint, p.model), tokenizer,
                                                  adapter_dir=adapter_dir, server_adapter_dir=p.server_adapter_dir,
                                                  max_loaded_adapters=p.max_loaded_adapters)
                else:
                    from evolver.models.batching import BatchingBackend
                    from evolver.models.hf import HFBackend
                    from evolver.models.decode import dtype_setting
                    # A group's attempts run concurrently; their turns are generated in batches.
                    self._backend = BatchingBackend(await asyncio.to_thread(
                        HFBackend, model_dir(self.settings),
                        prefix_cache_tokens=self.settings.policy.prefix_cache_tokens,
                        compute_dtype=dtype_setting(self.settings.policy.compute_dtype)))
            return self._backend

    async def base_model_digest(self) -> str:
        """Of the weights this explorer's rollouts come from: the local model folder (with the
        `openai` backend, the folder its tokenizer and the server's model were prepared from)."""
        if self._digest is None:
            from evolver.models.prepare import model_digest
            self._digest = await asyncio.to_thread(model_digest, model_dir(self.settings))
        return self._digest

    def base_model_name(self) -> str:
        return self.settings.policy.model or str(model_dir(self.settings).name)
