"""The auxiliary LLM roles: the chat client for a role from its settings, and the caller that
every role's mechanism goes through (counters, a span per call, failures turned into None so
the mechanism's fallback takes over and is counted, never an exception out of a handler)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, fields
from typing import Callable, TypeVar

from evolver import telemetry
from evolver.config import Settings
from evolver.errors import EvolverError, FailedPrecondition
from evolver.models.local_chat import LocalChat
from evolver.models.openai_compat import AuxChatClient, EndpointSettings
from evolver.prompts import PromptTemplate
from evolver.v1 import llm_role_pb2

T = TypeVar("T")


def client_for(role: str, settings: Settings, local_backend=None):
    cfg = settings.llm_roles[role]
    if cfg.endpoint == "local":
        if local_backend is None:
            raise FailedPrecondition(f"role {role} uses the local model, but none is loaded in this process")
        return LocalChat(local_backend, temperature=cfg.temperature)
    key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
    return AuxChatClient(EndpointSettings(cfg.endpoint, cfg.model, key, cfg.timeout_s, cfg.max_retries,
                                          concurrency=cfg.concurrency, temperature=cfg.temperature),
                         prefills=cfg.prefill)


@dataclass
class RoleCounters:
    """One role's cost and failures for one piece of work (a group, an exploration)."""
    role: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    parse_failures: int = 0
    fallbacks: int = 0
    call_failures: int = 0
    skipped: int = 0

    def to_pb(self) -> llm_role_pb2.RoleUsage:
        return llm_role_pb2.RoleUsage(**{f.name: getattr(self, f.name) for f in fields(self)})


def usage_metrics(usages) -> dict[str, float]:
    """RoleUsage messages summed per role into flat metrics: "llm/<role>/<counter>"."""
    out: dict[str, float] = {}
    for u in usages:
        for f in fields(RoleCounters):
            if f.name != "role":
                key = f"llm/{u.role}/{f.name}"
                out[key] = out.get(key, 0.0) + float(getattr(u, f.name))
    return out


class RoleCaller:
    """A role's client and prompt template. ask() returns the parsed reply or None (the call
    failed, timed out or the reply did not parse), counting each outcome in `counters`."""

    def __init__(self, role: str, client, template: PromptTemplate, *, max_tokens: int = 512,
                 timeout_s: float = 120.0, temperature: float | None = None):
        self.role, self.client, self.template = role, client, template
        self.max_tokens, self.timeout_s, self.temperature = max_tokens, timeout_s, temperature

    @property
    def prompt_version(self) -> str:
        return self.template.version

    async def ask(self, counters: RoleCounters, parse: Callable[[str], T | None], *, max_tokens: int | None = None,
                  history: list[dict[str, str]] | None = None, **fields: object) -> T | None:
        """max_tokens: this call's bound when lower than the role's (a reply's length is known).
        history: turns after the template's (a multi-turn role: the solver's replay)."""
        messages = self.template.messages(**fields) + list(history or [])
        # A primed reply ("Step 1 Judgment:") is what makes a small model answer in the format;
        # the parser reads the primer and the continuation together.
        prefix = self.template.reply_prefix if self.client.prefills and not history else ""
        limit = min(self.max_tokens, max_tokens) if max_tokens else self.max_tokens
        counters.calls += 1
        t0 = time.monotonic()
        with telemetry.tracer().start_as_current_span(
                f"llm {self.role}", attributes={"evolver.llm.role": self.role,
                                                "evolver.llm.prompt_version": self.template.version}) as span:
            try:
                reply = await asyncio.wait_for(
                    self.client.complete(messages, temperature=self.temperature, max_tokens=limit,
                                         reply_prefix=prefix),
                    self.timeout_s)
            except (EvolverError, asyncio.TimeoutError, OSError) as e:
                counters.call_failures += 1
                counters.latency_s += time.monotonic() - t0
                span.set_attribute("evolver.llm.failure", f"{type(e).__name__}: {str(e)[:200]}")
                return None
            counters.latency_s += time.monotonic() - t0
            counters.prompt_tokens += reply.prompt_tokens
            counters.completion_tokens += reply.completion_tokens
            span.set_attribute("evolver.llm.prompt_tokens", reply.prompt_tokens)
            span.set_attribute("evolver.llm.completion_tokens", reply.completion_tokens)
            parsed = parse(prefix + reply.text)
            if parsed is None:
                counters.parse_failures += 1
                span.set_attribute("evolver.llm.parse_failure", reply.text[:200])
            return parsed


class RoleCallers:
    """A process's role callers, built on first use: a role on the local endpoint loads the
    base policy model once (shared by every local role of the process), so a service whose
    runs never ask for an LLM role never loads a model."""

    def __init__(self, settings: Settings, *, max_tokens: dict[str, int] | None = None):
        self.settings = settings
        self.max_tokens = max_tokens or {}
        self._callers: dict[str, RoleCaller] = {}
        self._local = None
        self._lock = asyncio.Lock()

    async def _local_backend(self):
        if self._local is None:
            from evolver.models.batching import BatchingBackend
            from evolver.models.hf import HFBackend
            from evolver.models.prepare import resolve_model_dir
            from evolver.models.decode import dtype_setting
            # A group's calls arrive together: they decode as one batch.
            self._local = BatchingBackend(await asyncio.to_thread(
                HFBackend, resolve_model_dir(self.settings.policy.model_dir),
                compute_dtype=dtype_setting(self.settings.policy.compute_dtype)))
        return self._local

    async def get(self, role: str, template: str = "") -> RoleCaller:
        """The role's caller with its own template, or another template (a role with several
        prompts: experience_extractor extracts, validates and rewrites) on the same client."""
        from evolver import prompts
        template = template or role
        async with self._lock:
            if template not in self._callers:
                cfg = self.settings.llm_roles[role]
                backend = await self._local_backend() if cfg.endpoint == "local" else None
                client = next((c.client for c in self._callers.values() if c.role == role), None) \
                    or client_for(role, self.settings, backend)
                self._callers[template] = RoleCaller(role, client, prompts.load(template),
                                                     max_tokens=self.max_tokens.get(template, 512),
                                                     timeout_s=cfg.timeout_s * (cfg.max_retries + 1))
            return self._callers[template]
