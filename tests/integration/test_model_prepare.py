"""GGUF -> safetensors conversion of the real SmolLM2-135M gives the same logits."""

from __future__ import annotations

import json
import time

import pytest
import torch

from evolver.models import prepare

pytestmark = pytest.mark.integration


def test_prepare_converts_once_with_identical_logits(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    out = prepare.prepare(tmp_path)
    first = time.perf_counter() - t0
    manifest = json.loads((out / prepare.MANIFEST).read_text())
    assert manifest["parameters"] == 134_515_008 and manifest["dtype"] == "float32"
    assert (out / "model.safetensors").exists() and prepare.is_prepared(tmp_path)

    t1 = time.perf_counter()
    assert prepare.prepare(tmp_path) == out  # cached: nothing redone
    assert time.perf_counter() - t1 < 1.0 < first

    from evolver.models.hf import HFBackend
    # the hf backend loads GGUF directly too (in float32 here: the conversion is what is compared)
    gguf = HFBackend(prepare.gguf_path(), compute_dtype=torch.float32)
    gguf_model, tok = gguf.model, gguf.tokenizer
    t2 = time.perf_counter()
    plain = AutoModelForCausalLM.from_pretrained(str(out))
    load_seconds = time.perf_counter() - t2
    plain_tok = AutoTokenizer.from_pretrained(str(out))
    text = "<|im_start|>user\nMove final_report.pdf into temp.<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, return_tensors="pt").input_ids
    assert plain_tok(text, return_tensors="pt").input_ids.tolist() == ids.tolist()
    with torch.no_grad():
        a = gguf_model(ids).logits
        b = plain(ids).logits
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert load_seconds < 10  # later loads take seconds
