"""The `openai` backend and the auxiliary chat client against a real OpenAI-compatible server:
`transformers serve` with the tiny model, started on loopback by the test. Real HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from evolver.errors import Unavailable
from evolver.models.backend import GenerationRequest, SamplingParams
from evolver.models.conversation import Conversation
from evolver.models.hf import HFBackend
from evolver.models.local_chat import LocalChat
from evolver.models.openai_compat import AuxChatClient, EndpointSettings, OpenAIBackend
from evolver.stack.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    port = free_port()
    cli = Path(sys.executable).parent / "transformers"
    p = subprocess.Popen([str(cli), "serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port", str(port),
                          "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
        assert p.poll() is None, "transformers serve exited"
    else:
        p.kill()
        pytest.fail("transformers serve did not become healthy")
    yield f"http://127.0.0.1:{port}/v1", str(tiny_model_dir)
    p.terminate()
    p.wait(15)


async def test_openai_backend_says_plainly_when_it_cannot_be_exact(server, tokenizer):
    url, model = server
    backend = OpenAIBackend(EndpointSettings(url, model), tokenizer, policy_version=3)
    conv = Conversation(tokenizer)
    conv.start("You are helpful.", "List the files.")
    try:
        (c,) = await backend.generate([GenerationRequest(conv.ids(), SamplingParams(max_new_tokens=6))])
    finally:
        await backend.close()
    # transformers serve takes text prompts only and returns no log-probs: the result says so.
    assert c.tokens_exact is False and c.logprobs is None and not c.logprobs_exact
    assert c.notes and "re-tokenised" in c.notes[0]
    assert c.prompt_token_ids == conv.ids() and c.token_ids and c.policy_version == 3
    assert tokenizer.decode([t for t in c.token_ids if t not in backend.end_ids]) == c.text


async def test_aux_chat_client_completes_with_a_concurrency_limit(server):
    url, model = server
    client = AuxChatClient(EndpointSettings(url, model, concurrency=2))
    try:
        replies = await asyncio.gather(*(client.complete([{"role": "user", "content": f"hi {i}"}], max_tokens=4)
                                         for i in range(5)))
    finally:
        await client.close()
    assert len(replies) == 5 and all(r.text and r.completion_tokens > 0 and r.prompt_tokens > 0 for r in replies)
    assert 1 <= client.http.max_in_flight <= 2


async def test_unreachable_endpoint_fails_after_bounded_retries():
    client = AuxChatClient(EndpointSettings(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=2, backoff_s=0.05,
                                            timeout_s=1.0))
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="after 3 attempts"):
        await client.complete([{"role": "user", "content": "hi"}])
    await client.close()
    assert time.monotonic() - t0 < 5


async def test_local_chat_is_the_offline_default(tiny_model_dir):
    chat = LocalChat(HFBackend(tiny_model_dir, threads=2))
    reply = await chat.complete([{"role": "user", "content": "Summarise: ls then cd."}], max_tokens=5)
    assert isinstance(reply.text, str) and reply.prompt_tokens > 5 and 0 < reply.completion_tokens <= 5
    # A primed reply: the primer's tokens follow the generation prompt (counted as prompt) and
    # the text returned is the continuation only.
    primer = "Step 1 Judgment:"
    primed = await chat.complete([{"role": "user", "content": "Summarise: ls then cd."}], max_tokens=5,
                                 reply_prefix=primer)
    n_primer = len(chat.backend.tokenizer.encode(primer, add_special_tokens=False))
    assert primed.prompt_tokens == reply.prompt_tokens + n_primer and not primed.text.startswith(primer)
