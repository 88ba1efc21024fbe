"""An adapter published to the NATS Object Store is hot-swapped into a running backend."""

import pytest

from evolver.bus import Bus
from evolver.models.backend import GenerationRequest, SamplingParams
from evolver.models.hf import HFBackend, pack_adapter
from tests.unit.test_policy_runtime import make_adapter, prompts

pytestmark = pytest.mark.integration


async def test_adapter_from_object_store(bus: Bus, tiny_model_dir, tokenizer, tmp_path):
    store = await bus.js.create_object_store("adapters-test")
    await store.put("run1/v1.zip", pack_adapter(make_adapter(tiny_model_dir, tmp_path / "a", 5)))
    backend = HFBackend(tiny_model_dir, threads=2)
    req = [GenerationRequest(prompts(tokenizer)[0], SamplingParams(max_new_tokens=10))]
    before = backend.generate_sync(req)[0]
    await backend.load_adapter_from_object_store(bus, "adapters-test", "run1/v1.zip", version=1)
    after = backend.generate_sync(req)[0]
    assert (before.policy_version, after.policy_version) == (0, 1)
    assert before.token_ids != after.token_ids
