"""The `hf` backend: transformers on CPU (GPU when present), batched generation with the KV
cache (our decode loop, evolver.models.decode: a generator per request, the compute dtype
measured), exact token ids and per-token log-probs, and LoRA adapter hot-swap.

Generation and adapter swaps take the same lock, so every batch runs under exactly one policy
version, and each completion is stamped with it."""

from __future__ import annotations

import asyncio
import io
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from evolver.models.backend import Completion, GenerationRequest
from evolver.models.loading import MODEL_LOAD_LOCK
from evolver.models.decode import decode, fast_dtype
from evolver.models.prefix_cache import PrefixCache


def pack_adapter(adapter_dir: Path) -> bytes:
    """A LoRA adapter directory as one blob (for the NATS Object Store)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(Path(adapter_dir).iterdir()):
            if f.is_file():
                z.write(f, f.name)
    return buf.getvalue()


def unpack_adapter(blob: bytes, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for name in z.namelist():
            if "/" in name or name.startswith("."):
                raise ValueError(f"unexpected entry {name!r} in adapter archive")
        z.extractall(out_dir)
    return out_dir


def length_buckets(idxs: Sequence[int], lengths: Sequence[int], max_ratio: float = 1.5) -> list[list[int]]:
    """Splits a batch so no prompt is padded to more than max_ratio times its length: one
    4k-token prompt would otherwise make every short prompt in its batch cost 4k tokens."""
    buckets: list[list[int]] = []
    for i in sorted(idxs, key=lambda i: lengths[i]):
        if buckets and lengths[i] <= max_ratio * max(1, lengths[buckets[-1][0]]):
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


class HFBackend:
    def __init__(self, model_dir: Path | str, *, device: str | None = None, threads: int | None = None,
                 compute_dtype=None, prefix_cache_tokens: int = 32768):
        """model_dir: a safetensors model folder (e.g. the `models prepare` cache), or a .gguf
        file (dequantised on load; slower: prefer preparing once). compute_dtype: None =
        measured (decode.fast_dtype); the base weights are held in it, adapters stay float32.
        prefix_cache_tokens: the prefix cache's bound (0: no cache; ~46 KB per token for
        SmolLM2-135M in float32, half that in bfloat16)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = Path(model_dir)
        source = dict(pretrained_model_name_or_path=str(path.parent), gguf_file=path.name) if path.suffix == ".gguf" \
            else dict(pretrained_model_name_or_path=str(path))
        self.compute_dtype = compute_dtype if compute_dtype is not None else fast_dtype(self.device)
        # Weights in the compute dtype: float32 weights under bfloat16 autocast are cast again on
        # every forward, and decode is memory-bound (half the bytes per token in bfloat16).
        with MODEL_LOAD_LOCK:
            self.tokenizer = AutoTokenizer.from_pretrained(**source)
            self.model = AutoModelForCausalLM.from_pretrained(**source, dtype=self.compute_dtype).to(self.device)
        self.tokenizer.padding_side = "left"
        self.model.eval()
        self.end_ids = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self._lock = threading.Lock()
        self._version = 0
        self._adapter_name: str | None = None
        # The next turn of an episode reuses its previous turn's KV (cleared on every swap:
        # a cache belongs to the weights that computed it).
        self.prefix_cache = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens else None

    @property
    def policy_version(self) -> int:
        return self._version

    # --- adapters ------------------------------------------------------------------------------

    def load_adapter(self, adapter_dir: Path | str, version: int) -> None:
        """Switches to a LoRA adapter without a restart. In-flight batches finish on the old
        version; the next batch uses the new one."""
        from peft import PeftModel

        name = f"v{version}"
        with self._lock, MODEL_LOAD_LOCK:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(adapter_dir), adapter_name=name)
                self.model.set_adapter(name)
                old = self._adapter_name
                if old and old != name:
                    self.model.delete_adapter(old)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(adapter_dir), adapter_name=name).to(self.device)
            self.model.eval()
            self._adapter_name = name
            self._version = version
            if self.prefix_cache is not None:
                self.prefix_cache.clear()

    def reset_to_base(self) -> None:
        """Back to the base model (policy version 0), dropping any adapter."""
        from peft import PeftModel
        with self._lock:
            if isinstance(self.model, PeftModel):
                self.model = self.model.unload()
                self.model.eval()
            self._adapter_name = None
            self._version = 0
            if self.prefix_cache is not None:
                self.prefix_cache.clear()

    def load_adapter_blob(self, blob: bytes, version: int) -> None:
        with tempfile.TemporaryDirectory(prefix="evolver-adapter-") as d:
            self.load_adapter(unpack_adapter(blob, Path(d)), version)

    async def load_adapter_from_object_store(self, bus, bucket: str, name: str, version: int) -> None:
        blob = await bus.get_blob(bucket, name)
        if blob is None:
            raise FileNotFoundError(f"no adapter {name!r} in object store bucket {bucket!r}")
        await asyncio.to_thread(self.load_adapter_blob, blob, version)

    # --- generation ----------------------------------------------------------------------------

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return await asyncio.to_thread(self.generate_sync, requests)

    def generate_sync(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Every request in one decode (per length bucket), each with its own sampling settings
        and its own seeded generator."""
        out: list[Completion | None] = [None] * len(requests)
        with self._lock:
            version = self._version
            for chunk in length_buckets(range(len(requests)), [len(r.prompt_token_ids) for r in requests]):
                prompts = [requests[i].prompt_token_ids for i in chunk]
                decoded = decode(self.model, prompts, [requests[i].sampling for i in chunk], pad_id=self.pad_id,
                                 end_ids=self.end_ids, device=self.device, dtype=self.compute_dtype,
                                 prefix_cache=self.prefix_cache)
                for i, p, d in zip(chunk, prompts, decoded):
                    text = self.tokenizer.decode([t for t in d.token_ids if t not in self.end_ids],
                                                 skip_special_tokens=False)
                    out[i] = Completion(list(p), d.token_ids, text, d.finish_reason, version, d.logprobs)
        return out  # type: ignore[return-value]

    def generate_sync_hf(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """The previous path, kept as the same-run baseline of bench/generation.py: transformers'
        `generate`, one batch per distinct sampling setting, a batch seeded with its smallest seed."""
        out: list[Completion | None] = [None] * len(requests)
        groups: dict = {}
        for i, r in enumerate(requests):
            groups.setdefault(replace(r.sampling, seed=None), []).append(i)
        with self._lock:
            version = self._version
            for sampling, idxs in groups.items():
                seeds = [requests[i].sampling.seed for i in idxs if requests[i].sampling.seed is not None]
                sampling = replace(sampling, seed=min(seeds) if seeds else None)
                for chunk in length_buckets(idxs, [len(r.prompt_token_ids) for r in requests]):
                    prompts = [requests[i].prompt_token_ids for i in chunk]
                    for i, c in zip(chunk, self._generate_batch_hf(prompts, sampling, version)):
                        out[i] = c
        return out  # type: ignore[return-value]

    def _generate_batch_hf(self, prompts: list[Sequence[int]], sampling, version: int) -> list[Completion]:
        import torch

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):  # left padding: every prompt ends at the same column
            input_ids[row, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            attention[row, width - len(p):] = 1
        greedy = sampling.temperature <= 0
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=not greedy, pad_token_id=self.pad_id,
                      eos_token_id=sorted(self.end_ids), return_dict_in_generate=True, output_scores=True)
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.no_grad():
            res = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **kwargs)
        new = res.sequences[:, width:].cpu()
        # scores are the processed logits each token was sampled from: their log-softmax is the
        # behaviour log-prob (temperature and top-p applied; the raw distribution when greedy).
        logps = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in res.scores], dim=1).cpu()
        completions = []
        for row, p in enumerate(prompts):
            ids, lps, finish = [], [], "length"
            for t in range(new.shape[1]):
                tok = int(new[row, t])
                ids.append(tok)
                lps.append(float(logps[row, t, tok]))
                if tok in self.end_ids:
                    finish = "stop"
                    break
            text = self.tokenizer.decode([i for i in ids if i not in self.end_ids], skip_special_tokens=False)
            completions.append(Completion(list(p), ids, text, finish, version, lps))
        return completions
