"""OpenAI-compatible endpoints: the `openai` policy backend and the auxiliary chat client.

Policy backend: asks for exactness where the server offers it. vLLM accepts a token-id prompt on
/v1/completions and returns the sampled token ids (`return_tokens_as_token_ids`) with their
log-probs: the completion is then exact. A server that takes only text (e.g. `transformers
serve`) gets the decoded prompt; its completion is tokenised locally and returned with
tokens_exact=False and no log-probs, said in `notes`, so the trainer recomputes them. Nothing
is re-tokenised silently as if exact."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Sequence

import httpx

from evolver.errors import InvalidArgument, Unavailable
from evolver.models.backend import Completion, GenerationRequest

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


class OpenAIBackend:
    def __init__(self, settings: EndpointSettings, tokenizer, *, policy_version: int = 0):
        self.http = _Http(settings)
        self.tokenizer = tokenizer
        self._version = policy_version
        self._token_prompts = True  # until the server says otherwise
        self.end_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}

    @property
    def policy_version(self) -> int:
        return self._version

    def set_policy_version(self, version: int) -> None:
        """After the server loaded a new adapter (vLLM runtime LoRA loading)."""
        self._version = version

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, r: GenerationRequest) -> Completion:
        body: dict[str, Any] = {"model": self.http.s.model, "max_tokens": r.sampling.max_new_tokens,
                                "temperature": r.sampling.temperature, "top_p": r.sampling.top_p,
                                "stop": ["<|im_end|>"]}
        if r.sampling.seed is not None:
            body["seed"] = r.sampling.seed
        if self._token_prompts:
            resp = await self.http.post("/completions", {**body, "prompt": list(r.prompt_token_ids), "logprobs": 1,
                                                         "return_tokens_as_token_ids": True})
            if resp.status_code < 400:
                exact = self._exact(r, resp.json())
                if exact is not None:
                    return exact
            self._token_prompts = False  # the server takes text only
        prompt_text = self.tokenizer.decode(list(r.prompt_token_ids), skip_special_tokens=False)
        resp = await self.http.post("/completions", {**body, "prompt": prompt_text})
        if resp.status_code >= 400:
            raise Unavailable(f"{self.http.s.base_url}/completions rejected the request: HTTP {resp.status_code}: {resp.text[:200]}")
        choice = resp.json()["choices"][0]
        text = choice.get("text", "")
        ended = choice.get("finish_reason") == "stop"
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if ended:
            ids.append(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        return Completion(list(r.prompt_token_ids), ids, text, "stop" if ended else "length", self._version,
                          logprobs=None, tokens_exact=False,
                          notes=["server accepted only a text prompt and returned text: completion tokens were "
                                 "re-tokenised locally and no log-probs were returned; recompute them before training"])

    def _exact(self, r: GenerationRequest, data: dict) -> Completion | None:
        choice = data["choices"][0]
        lp = choice.get("logprobs") or {}
        tokens, token_lps = lp.get("tokens"), lp.get("token_logprobs")
        if not tokens or token_lps is None or not all(str(t).startswith("token_id:") for t in tokens):
            return None
        ids = [int(str(t).split(":", 1)[1]) for t in tokens]
        finish = "stop" if choice.get("finish_reason") == "stop" else "length"
        return Completion(list(r.prompt_token_ids), ids, choice.get("text", ""), finish, self._version,
                          logprobs=[float(x) for x in token_lps], tokens_exact=True)

    async def close(self) -> None:
        await self.http.close()


class AuxChatClient:
    """Chat for an auxiliary LLM role (task writer, judge, step attributor, experience
    extractor), configured per role."""

    def __init__(self, settings: EndpointSettings):
        self.http = _Http(settings)

    async def complete(self, messages: list[dict[str, str]], *, temperature: float | None = None,
                       max_tokens: int = 512) -> str:
        body = {"model": self.http.s.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": self.http.s.temperature if temperature is None else temperature}
        r = await self.http.post("/chat/completions", body)
        if r.status_code >= 400:
            raise Unavailable(f"{self.http.s.base_url}/chat/completions: HTTP {r.status_code}: {r.text[:200]}")
        return r.json()["choices"][0]["message"]["content"] or ""

    async def close(self) -> None:
        await self.http.close()
