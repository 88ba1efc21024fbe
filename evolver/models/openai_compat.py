"""OpenAI-compatible endpoints: the `openai` policy backend and the auxiliary chat client.

Policy backend: asks for exactness where the server offers it. vLLM accepts a token-id prompt on
/v1/completions and returns the sampled token ids (`return_tokens_as_token_ids`) with their
log-probs: the completion is then exact. A server that takes only text (e.g. `transformers
serve`) gets the decoded prompt; its completion is tokenised locally and returned with
tokens_exact=False and no log-probs, said in `notes`, so the trainer recomputes them. Nothing
is re-tokenised silently as if exact."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import httpx

from evolver.errors import InvalidArgument, Unavailable
from evolver.models.backend import ChatReply, Completion, GenerationRequest

RETRYABLE = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class EndpointSettings:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str = ""
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 8
    temperature: float = 0.0


class _Http:
    """POST with a deadline, bounded retries with jittered exponential backoff, and a limit on
    concurrent requests."""

    def __init__(self, s: EndpointSettings):
        if not s.base_url.startswith(("http://", "https://")):
            raise InvalidArgument("base_url", "must start with http:// or https://")
        self.s = s
        headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
        self.client = httpx.AsyncClient(base_url=s.base_url.rstrip("/"), timeout=s.timeout_s, headers=headers)
        self.limit = asyncio.Semaphore(s.concurrency)
        self.in_flight = 0
        self.max_in_flight = 0

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        last: str = ""
        for attempt in range(self.s.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.s.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random()))
            async with self.limit:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    r = await self.client.post(path, json=body)
                except (httpx.TransportError, httpx.TimeoutException) as e:
                    last = f"{type(e).__name__}: {e}"
                    continue
                finally:
                    self.in_flight -= 1
            if r.status_code in RETRYABLE:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            return r
        raise Unavailable(f"{self.s.base_url}{path} failed after {self.s.max_retries + 1} attempts: {last}")

    async def close(self) -> None:
        await self.client.aclose()


CONTEXT_ERRORS = ("maximum context length", "maximum model length", "context length")


def is_context_length_error(status: int, body: str) -> bool:
    """vLLM answers 400 when the prompt plus max_tokens exceed max_model_len ("This model's
    maximum context length is N tokens...", or "... longer than the maximum model length")."""
    return status == 400 and any(m in body.lower() for m in CONTEXT_ERRORS)


def adapter_name(run_id: str, version: int) -> str:
    """The LoRA name a request names: one per (run, version), so a request can only ever be
    served by the version it asks for."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in run_id)[:80]
    return f"evolver-{safe}-v{version}"


class AdapterLoadFailed(Unavailable):
    """The server could not load an adapter: an infrastructure failure (the job is retried),
    never a poison message."""


class OpenAIBackend:
    """Rollouts on an OpenAI-compatible server. With vLLM (runtime LoRA loading on) every policy
    version is its own named adapter: `use_adapter` writes the version's files where the server
    reads them, loads them through /v1/load_lora_adapter, unloads superseded ones, and returns a
    view that names that adapter in each of its requests. Several versions can be served at once
    and no request can be served by another version than the one it names."""

    def __init__(self, settings: EndpointSettings, tokenizer, *, policy_version: int = 0,
                 adapter_dir: Path | str | None = None, server_adapter_dir: str = "", max_loaded_adapters: int = 2):
        """adapter_dir: where this process writes adapter folders; server_adapter_dir: the same
        folder as the server sees it (a shared volume; empty = the same path)."""
        self.http = _Http(settings)
        self.tokenizer = tokenizer
        self._version = policy_version
        self.end_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.server_adapter_dir = server_adapter_dir
        self.max_loaded_adapters = max(1, max_loaded_adapters)
        self._loaded: dict[str, str] = {}  # adapter name -> path as the server sees it, in load order
        self._written: dict[str, str] = {}  # every adapter this process wrote: name -> server path
        self._in_flight: dict[str, int] = {}
        self._adapter_lock = asyncio.Lock()
        self.counters = {"requests": 0, "exact": 0, "text_fallbacks": 0, "context_exhausted": 0,
                         "adapter_loads": 0, "adapter_unloads": 0, "adapter_reloads": 0}
        self.load_seconds: list[float] = []  # write + load, per adapter version

    @property
    def policy_version(self) -> int:
        return self._version

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """The base model (or whatever `model` names), stamped with this backend's version."""
        return await self._generate(requests, self.http.s.model, self._version)

    # --- adapters ------------------------------------------------------------------------------

    async def use_adapter(self, run_id: str, version: int, fetch_blob) -> "PinnedPolicy":
        """The view that generates with (run_id, version): version 0 is the base model. fetch_blob:
        an async callable returning the adapter archive (called only when not loaded yet)."""
        if version == 0:
            return PinnedPolicy(self, self.http.s.model, 0)
        name = adapter_name(run_id, version)
        if name not in self._loaded:
            async with self._adapter_lock:
                if name not in self._loaded:
                    t0 = time.perf_counter()
                    server_path = await self._write_adapter(name, await fetch_blob())
                    await self._load(name, server_path)
                    self.load_seconds.append(time.perf_counter() - t0)
                    await self._unload_superseded(keep=name)
        return PinnedPolicy(self, name, version)

    async def _write_adapter(self, name: str, blob: bytes) -> str:
        from evolver.models.hf import unpack_adapter
        if self.adapter_dir is None:
            raise AdapterLoadFailed("policy.adapter_dir is not set: the openai backend needs a folder shared with "
                                    "the server to hand it adapters (see docs/OPERATIONS.md, GPU path)")
        final = self.adapter_dir / name
        if not (final / "adapter_config.json").exists():
            # Written aside and renamed: another replica sharing the folder never sees half an adapter.
            tmp = self.adapter_dir / f".{name}.{os.getpid()}.{random.randrange(1 << 30)}"
            await asyncio.to_thread(unpack_adapter, blob, tmp)
            try:
                os.replace(tmp, final)
            except OSError:  # another replica renamed its copy first: same bytes
                await asyncio.to_thread(shutil.rmtree, tmp, True)
        self._written[name] = f"{self.server_adapter_dir.rstrip('/')}/{name}" if self.server_adapter_dir else str(final)
        return self._written[name]

    async def _load(self, name: str, server_path: str) -> None:
        r = await self.http.post("/load_lora_adapter", {"lora_name": name, "lora_path": server_path})
        # 400 "has already been loaded": another replica sharing the server loaded it first.
        if r.status_code >= 400 and "already been loaded" not in r.text:
            raise AdapterLoadFailed(f"{self.http.s.base_url} could not load adapter {name} from {server_path}: "
                                    f"HTTP {r.status_code}: {r.text[:300]}")
        self._loaded[name] = server_path
        self.counters["adapter_loads"] += 1

    async def _unload_superseded(self, keep: str) -> None:
        """Oldest first, beyond max_loaded_adapters, never one with requests in flight."""
        for name in list(self._loaded):
            if len(self._loaded) <= self.max_loaded_adapters:
                break
            if name == keep or self._in_flight.get(name):
                continue
            r = await self.http.post("/unload_lora_adapter", {"lora_name": name})
            if r.status_code < 400 or r.status_code == 404:  # 404: another replica unloaded it
                self._loaded.pop(name)
                self.counters["adapter_unloads"] += 1

    # --- completions ---------------------------------------------------------------------------

    async def _generate(self, requests: Sequence[GenerationRequest], model: str, version: int) -> list[Completion]:
        self._in_flight[model] = self._in_flight.get(model, 0) + len(requests)
        try:
            return list(await asyncio.gather(*(self._one(r, model, version) for r in requests)))
        finally:
            self._in_flight[model] -= len(requests)

    async def _post_completion(self, model: str, body: dict[str, Any]) -> httpx.Response:
        resp = await self.http.post("/completions", {**body, "model": model})
        if resp.status_code == 404 and model in self._written:
            # The server lost the adapter (restarted, or another replica or this one unloaded it
            # while a late job still names it): load it again from the shared folder, once.
            async with self._adapter_lock:
                self._loaded.pop(model, None)
                await self._load(model, self._written[model])
            self.counters["adapter_reloads"] += 1
            resp = await self.http.post("/completions", {**body, "model": model})
        return resp

    def _context_exhausted(self, r: GenerationRequest, version: int, body: str) -> Completion:
        self.counters["context_exhausted"] += 1
        return Completion(list(r.prompt_token_ids), [], "", "context_length", version, logprobs=[],
                          notes=[f"the server refused the turn: {body[:200]}"])

    async def _one(self, r: GenerationRequest, model: str, version: int) -> Completion:
        self.counters["requests"] += 1
        body: dict[str, Any] = {"max_tokens": r.sampling.max_new_tokens, "temperature": r.sampling.temperature,
                                "top_p": r.sampling.top_p, "stop": ["<|im_end|>"]}
        if r.sampling.seed is not None:
            body["seed"] = r.sampling.seed
        # Token ids in, token ids and log-probs out (vLLM). Decided per request: an error on one
        # request never changes how the next one is asked.
        resp = await self._post_completion(model, {**body, "prompt": list(r.prompt_token_ids), "logprobs": 1,
                                                   "return_tokens_as_token_ids": True})
        if is_context_length_error(resp.status_code, resp.text):
            return self._context_exhausted(r, version, resp.text)
        if resp.status_code < 400:
            exact = self._exact(r, resp.json(), version)
            if exact is not None:
                self.counters["exact"] += 1
                return exact
        # This request only: a server that takes text prompts (e.g. `transformers serve`).
        self.counters["text_fallbacks"] += 1
        prompt_text = self.tokenizer.decode(list(r.prompt_token_ids), skip_special_tokens=False)
        resp = await self._post_completion(model, {**body, "prompt": prompt_text})
        if is_context_length_error(resp.status_code, resp.text):
            return self._context_exhausted(r, version, resp.text)
        if resp.status_code >= 400:
            raise Unavailable(f"{self.http.s.base_url}/completions rejected the request: HTTP {resp.status_code}: {resp.text[:200]}")
        choice = resp.json()["choices"][0]
        text = choice.get("text", "")
        ended = choice.get("finish_reason") == "stop"
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if ended:
            ids.append(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        return Completion(list(r.prompt_token_ids), ids, text, "stop" if ended else "length", version,
                          logprobs=None, tokens_exact=False,
                          notes=["server accepted only a text prompt and returned text: completion tokens were "
                                 "re-tokenised locally and no log-probs were returned; recompute them before training"])

    def _exact(self, r: GenerationRequest, data: dict, version: int) -> Completion | None:
        choice = data["choices"][0]
        lp = choice.get("logprobs") or {}
        tokens, token_lps = lp.get("tokens"), lp.get("token_logprobs")
        if not tokens or token_lps is None or not all(str(t).startswith("token_id:") for t in tokens):
            return None
        ids = [int(str(t).split(":", 1)[1]) for t in tokens]
        finish = "stop" if choice.get("finish_reason") == "stop" else "length"
        if finish == "stop" and ids and ids[-1] not in self.end_ids:
            # vLLM leaves a matched stop string out of the output; the training sequence needs the
            # end-of-turn token the policy sampled (its log-prob is not returned: recomputed).
            ids.append(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
            return Completion(list(r.prompt_token_ids), ids, choice.get("text", ""), finish, version,
                              logprobs=None, tokens_exact=True,
                              notes=["the end-of-turn token came back as a stop string: its log-prob is recomputed"])
        return Completion(list(r.prompt_token_ids), ids, choice.get("text", ""), finish, version,
                          logprobs=[float(x) for x in token_lps], tokens_exact=True)

    async def close(self) -> None:
        await self.http.close()


class PinnedPolicy:
    """One policy version of an OpenAIBackend: every request names its adapter and every
    completion is stamped with its version."""

    def __init__(self, backend: OpenAIBackend, model: str, version: int):
        self.backend, self.model, self._version = backend, model, version
        self.tokenizer = backend.tokenizer

    @property
    def policy_version(self) -> int:
        return self._version

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return await self.backend._generate(requests, self.model, self._version)


class AuxChatClient:
    """Chat for an auxiliary LLM role (task writer, judge, step attributor, experience
    extractor), configured per role."""

    def __init__(self, settings: EndpointSettings, *, prefills: bool = False):
        self.http = _Http(settings)
        # vLLM's chat API continues a final assistant message (continue_final_message); OpenAI's
        # rejects the parameter, so priming the reply is opted into per role.
        self.prefills = prefills

    async def complete(self, messages: list[dict[str, str]], *, temperature: float | None = None,
                       max_tokens: int = 512, reply_prefix: str = "") -> ChatReply:
        body = {"model": self.http.s.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": self.http.s.temperature if temperature is None else temperature}
        if reply_prefix and self.prefills:
            body |= {"messages": [*messages, {"role": "assistant", "content": reply_prefix}],
                     "continue_final_message": True, "add_generation_prompt": False}
        r = await self.http.post("/chat/completions", body)
        if r.status_code >= 400:
            raise Unavailable(f"{self.http.s.base_url}/chat/completions: HTTP {r.status_code}: {r.text[:200]}")
        try:
            data = r.json()
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            # A refusal (OpenAI's `refusal` field) or a null content is an empty reply: the
            # role's parser counts it as a parse failure and its fallback takes over.
            return ChatReply(choice["message"].get("content") or "", int(usage.get("prompt_tokens") or 0),
                             int(usage.get("completion_tokens") or 0), choice.get("finish_reason") or "")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise Unavailable(f"{self.http.s.base_url}/chat/completions: malformed response ({type(e).__name__}): "
                              f"{r.text[:200]}") from None

    async def close(self) -> None:
        await self.http.close()
