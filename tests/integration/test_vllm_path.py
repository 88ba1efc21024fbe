"""The `openai` policy backend on vLLM's API, against the vLLM emulator (evolver.models.
vllm_emulator: vLLM has no CPU build, so an emulator, named as one, serves the same endpoints
with the tiny model). Real HTTP, real adapters written by the real trainer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import torch

from evolver.models.backend import GenerationRequest, SamplingParams
from evolver.models.conversation import Conversation
from evolver.models.openai_compat import AdapterLoadFailed, EndpointSettings, OpenAIBackend, adapter_name
from services.trainer.advantages import Sample, completion_sample
from services.trainer.updater import PolicyUpdater
from tests.integration._helpers import SERVED, start_emulator

pytestmark = pytest.mark.integration
MAX_LEN = 600


@pytest.fixture(scope="module")
def emulator(tiny_model_dir):
    # float32 on both sides (here and the trainer below): the log-probs must match to 2e-3, which
    # is float32's agreement; bfloat16's (an AMX CPU's measured default) is tested in
    # tests/unit/test_policy_runtime.py with its own tolerance.
    url, p = start_emulator(tiny_model_dir, max_model_len=MAX_LEN, dtype="float32")
    yield url
    p.terminate()
    p.wait(15)


def _ledger(url: str) -> list[dict]:
    return httpx.get(url.removesuffix("/v1") + "/emulator/ledger").json()["requests"]


def _prompt(tokenizer, text: str) -> list[int]:
    conv = Conversation(tokenizer)
    conv.start("You are helpful.", text)
    return conv.ids()


def _recomputed(updater: PolicyUpdater, c) -> list[float]:
    return updater.recompute_logprobs(completion_sample(c))[:len(c.token_ids)]


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    """A trainer one and two steps past the base, its adapters (what the object store holds) and
    its checkpoints at versions 0 and 1 (restored to recompute log-probs at that version)."""
    upd = PolicyUpdater(tiny_model_dir, learning_rate=0.05, lora_r=4, lora_alpha=8, beta=0.0, epsilon=0.2,
                        epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0, compute_dtype=torch.float32)
    push = Sample("a", "g", [1, 2, 3, 40, 41, 42], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0.0] * 6, False, False, 1.0)
    states = {0: upd.checkpoint_blob()}
    upd.update([push])
    v1 = upd.adapter_blob()
    states[1] = upd.checkpoint_blob()
    upd.update([push])
    v2 = upd.adapter_blob()
    return upd, {1: v1, 2: v2}, states


def backend_for(url: str, tokenizer, tmp_path: Path, **kw) -> OpenAIBackend:
    return OpenAIBackend(EndpointSettings(url, SERVED, timeout_s=60), tokenizer, adapter_dir=tmp_path / "adapters", **kw)


async def test_token_ids_in_exact_tokens_and_logprobs_out_matching_the_trainer(emulator, tokenizer, tmp_path, trained):
    upd, blobs, states = trained
    backend = backend_for(emulator, tokenizer, tmp_path)
    (tmp_path / "adapters").mkdir()
    try:
        prompt = _prompt(tokenizer, "List the files.")
        (c,) = await backend.generate([GenerationRequest(prompt, SamplingParams(max_new_tokens=12, temperature=1.0, seed=5))])
        assert c.tokens_exact and c.logprobs_exact and len(c.logprobs) == len(c.token_ids) > 0
        assert backend.counters["exact"] == 1 and backend.counters["text_fallbacks"] == 0
        # The behaviour log-probs are the trainer's at version 0 (the base).
        upd.restore(states[0])
        assert _recomputed(upd, c) == pytest.approx(c.logprobs, abs=2e-3)

        # Version 1's adapter, loaded into the server from the trainer's blob.
        v1 = await backend.use_adapter("r", 1, lambda: asyncio.sleep(0, blobs[1]))
        (c1,) = await v1.generate([GenerationRequest(prompt, SamplingParams(max_new_tokens=12, temperature=1.0, seed=5))])
        assert c1.policy_version == 1 and c1.logprobs_exact
        upd.restore(states[1])
        assert _recomputed(upd, c1) == pytest.approx(c1.logprobs, abs=2e-3)
        # ...and not the base's: the adapter really served it.
        upd.restore(states[0])
        assert max(abs(a - b) for a, b in zip(_recomputed(upd, c1), c1.logprobs)) > 0.05
    finally:
        await backend.close()


async def test_each_request_names_its_version_and_superseded_adapters_are_unloaded(emulator, tokenizer, tmp_path,
                                                                                     trained):
    _, blobs, _ = trained
    backend = backend_for(emulator, tokenizer, tmp_path, max_loaded_adapters=2)
    (tmp_path / "adapters").mkdir()
    fetches = []

    def fetch(v):
        async def f():
            fetches.append(v)
            return blobs[1 + (v % 2)]
        return f
    try:
        views = {v: await backend.use_adapter("run-a", v, fetch(v)) for v in (1, 2)}
        assert await backend.use_adapter("run-a", 1, fetch(1)) is not None and fetches == [1, 2]  # loaded once
        before = len(_ledger(emulator))
        # Concurrent requests of two versions, told apart by their prompt lengths.
        prompts = {1: _prompt(tokenizer, "one"), 2: _prompt(tokenizer, "two two two two two")}
        sp = SamplingParams(max_new_tokens=6, temperature=1.0, seed=1)
        results = await asyncio.gather(*(views[v].generate([GenerationRequest(prompts[v], sp)] * 3) for v in (1, 2, 1, 2)))
        assert [c.policy_version for r in results for c in r] == [1] * 3 + [2] * 3 + [1] * 3 + [2] * 3
        served = _ledger(emulator)[before:]
        assert len(served) == 12
        for entry in served:
            v = 1 if entry["prompt_tokens"] == len(prompts[1]) else 2
            assert entry["model"] == adapter_name("run-a", v)

        # A third version: the oldest is unloaded from the server (max_loaded_adapters=2).
        await backend.use_adapter("run-a", 3, fetch(3))
        loaded = {m["id"] for m in httpx.get(f"{emulator}/models").json()["data"]}
        assert adapter_name("run-a", 1) not in loaded and {adapter_name("run-a", v) for v in (2, 3)} <= loaded
        assert backend.counters["adapter_unloads"] == 1 and backend.counters["adapter_loads"] == 3
        # A late job still naming version 1 gets version 1: reloaded from the shared folder.
        (c,) = await views[1].generate([GenerationRequest(prompts[1], sp)])
        assert c.policy_version == 1 and backend.counters["adapter_reloads"] == 1
        assert _ledger(emulator)[-1]["model"] == adapter_name("run-a", 1)
        assert len(backend.load_seconds) == 3 and all(0 < s < 30 for s in backend.load_seconds)
    finally:
        for v in (1, 2, 3):
            httpx.post(f"{emulator}/unload_lora_adapter", json={"lora_name": adapter_name("run-a", v)})
        await backend.close()


async def test_a_context_length_error_ends_that_turn_only(emulator, tokenizer, tmp_path):
    backend = backend_for(emulator, tokenizer, tmp_path)
    try:
        long = _prompt(tokenizer, "files " * (MAX_LEN + 50))
        short = _prompt(tokenizer, "List the files.")
        sp = SamplingParams(max_new_tokens=8, temperature=1.0, seed=2)
        c_long, c_short = await backend.generate([GenerationRequest(long, sp), GenerationRequest(short, sp)])
        assert c_long.finish_reason == "context_length" and c_long.token_ids == [] and "maximum context" in c_long.notes[0]
        assert c_short.logprobs_exact and backend.counters["context_exhausted"] == 1
        # No process-wide downgrade: the next request is token-exact again.
        (again,) = await backend.generate([GenerationRequest(short, sp)])
        assert again.logprobs_exact and backend.counters["text_fallbacks"] == 0
    finally:
        await backend.close()


async def test_an_episode_that_outgrows_the_context_ends_cleanly(emulator, tokenizer, tmp_path, bfcl):
    from evolver.agent.episode import run_episode
    backend = backend_for(emulator, tokenizer, tmp_path)
    episode = await bfcl.create(seed_task_id="multi_turn_base_1")
    try:
        # BFCL's system prompt with every tool schema is longer than this server's context.
        record = await run_episode(backend, episode, episode.tools, sampling=SamplingParams(max_new_tokens=8),
                                   max_steps=3)
    finally:
        await backend.close()
    assert record.context_exhausted and not record.infra_failure and record.steps == []
    assert backend.counters["context_exhausted"] == 1


async def test_load_failures_are_infrastructure_failures_with_a_reason(emulator, tokenizer, tmp_path):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("adapter_config.json", '{"peft_type": "LORA", "r": "not a number"}')
    backend = backend_for(emulator, tokenizer, tmp_path)
    (tmp_path / "adapters").mkdir()
    try:
        with pytest.raises(AdapterLoadFailed, match="could not load adapter evolver-bad-v1"):
            await backend.use_adapter("bad", 1, lambda: asyncio.sleep(0, buf.getvalue()))
    finally:
        await backend.close()
    nowhere = OpenAIBackend(EndpointSettings(emulator, SERVED), tokenizer)  # no adapter_dir
    with pytest.raises(AdapterLoadFailed, match="adapter_dir is not set"):
        await nowhere.use_adapter("r", 1, lambda: asyncio.sleep(0, b""))
    await nowhere.close()
