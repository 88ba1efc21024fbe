"""Model fixtures: the real SmolLM2 tokenizer (from the packaged GGUF) and a tiny random model
built on it, once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from transformers import AutoTokenizer

    from evolver.models import prepare
    src = prepare.gguf_path()
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    d = tmp_path_factory.mktemp("tokenizer")
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    from evolver.models.tiny import build_tiny_model
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), tokenizer, seed=0)
