"""The chat client for an auxiliary LLM role, from its settings."""

from __future__ import annotations

import os

from evolver.config import Settings
from evolver.errors import FailedPrecondition
from evolver.models.local_chat import LocalChat
from evolver.models.openai_compat import AuxChatClient, EndpointSettings


def client_for(role: str, settings: Settings, local_backend=None):
    cfg = settings.llm_roles[role]
    if cfg.endpoint == "local":
        if local_backend is None:
            raise FailedPrecondition(f"role {role} uses the local model, but none is loaded in this process")
        return LocalChat(local_backend, temperature=cfg.temperature)
    key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
    return AuxChatClient(EndpointSettings(cfg.endpoint, cfg.model, key, cfg.timeout_s, cfg.max_retries,
                                          concurrency=cfg.concurrency, temperature=cfg.temperature))
