"""Generation speed of the `hf` backend on SmolLM2-135M-Instruct (CPU), against plain
`model.generate` on the same model, prompts and settings in the same run.

- tokens/s at batch 1 and batch 8, greedy: both sides produce the same tokens, so the work is
  identical; ours also returns per-token log-probs and exact ids. Medians of REPEATS runs.
- time to first token (batch 1: prefill plus one token).
- load time: first `models prepare` (GGUF dequantise + convert + save) vs loading the cache.
- the memory-bandwidth floor: a decode step at batch 1 reads every weight once, so tokens/s
  cannot beat (memory bandwidth / weight bytes); bandwidth is measured here with a large
  tensor copy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver.models import prepare  # noqa: E402
from evolver.models.backend import GenerationRequest, SamplingParams  # noqa: E402
from evolver.models.conversation import Conversation  # noqa: E402
from evolver.models.hf import HFBackend  # noqa: E402

console = Console()
QUESTIONS = ["Move final_report.pdf into the temp folder and sort it.", "What is 17 times 23?",
             "Post a tweet about the quarterly results.", "Book a flight from SFO to JFK next Monday.",
             "List every file in the workspace.", "Check the fuel level and fill the tank.",
             "Create a support ticket about a broken charger.", "Buy 10 shares of the cheapest tech stock."]


def copy_bandwidth_gbs(size_mb: int = 512, repeats: int = 5) -> float:
    import torch
    a = torch.ones(size_mb * (1 << 20) // 4)
    b = torch.empty_like(a)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        b.copy_(a)
        dt = time.perf_counter() - t
        best = max(best, 2 * a.numel() * 4 / dt / 1e9)  # bytes read + written per second
    return best


def main(new_tokens: int, repeats: int, cache: Path | None) -> dict:
    import torch

    with tempfile.TemporaryDirectory() as fresh:
        t = time.perf_counter()
        prepare.prepare(Path(fresh))
        first_prepare = time.perf_counter() - t
    model_dir = prepare.prepare(cache)
    t = time.perf_counter()
    backend = HFBackend(model_dir)
    cached_load = time.perf_counter() - t
    model, tok = backend.model, backend.tokenizer
    prompts = []
    for q in QUESTIONS:
        c = Conversation(tok)
        c.start("You are a helpful assistant.", q)
        prompts.append(c.ids())
    sampling = SamplingParams(max_new_tokens=new_tokens)

    def plain(batch: list[list[int]]) -> int:
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), backend.pad_id)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(batch):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=backend.pad_id, eos_token_id=sorted(backend.end_ids),
                                 temperature=None, top_p=None, top_k=None)
        new = out[:, width:]
        return int(sum(_until_end(row.tolist(), backend.end_ids) for row in new))

    def ours(batch: list[list[int]]) -> int:
        return sum(len(c.token_ids) for c in backend.generate_sync([GenerationRequest(p, sampling) for p in batch]))

    results = {}
    for bs in (1, 8):
        batch = prompts[:bs]
        plain(batch), ours(batch)  # warm-up
        rates = {"plain": [], "ours": []}
        for r in range(repeats):
            for side in (("plain", "ours") if r % 2 == 0 else ("ours", "plain")):
                t = time.perf_counter()
                n = plain(batch) if side == "plain" else ours(batch)
                rates[side].append(n / (time.perf_counter() - t))
        results[bs] = {k: statistics.median(v) for k, v in rates.items()}
    ttft = []
    for _ in range(repeats):
        t = time.perf_counter()
        backend.generate_sync([GenerationRequest(prompts[0], SamplingParams(max_new_tokens=1))])
        ttft.append(time.perf_counter() - t)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bw = copy_bandwidth_gbs()
    floor = bw * 1e9 / weight_bytes
    return {"new_tokens": new_tokens, "repeats": repeats, "threads": torch.get_num_threads(),
            "first_prepare_s": first_prepare, "cached_load_s": cached_load,
            "tokens_per_s": {str(k): v for k, v in results.items()}, "ttft_ms": statistics.median(ttft) * 1e3,
            "weight_bytes": weight_bytes, "copy_bandwidth_gbs": bw, "floor_tokens_per_s_batch1": floor}


def _until_end(row: list[int], end_ids: set[int]) -> int:
    for i, t in enumerate(row):
        if t in end_ids:
            return i + 1
    return len(row)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with console.status("measuring (prepare, load, generate)..."):
        res = main(a.new_tokens, a.repeats, a.cache)
    t = Table(title=f"SmolLM2-135M fp32, CPU, {res['threads']} threads, greedy, up to {a.new_tokens} new tokens, "
                    f"median of {a.repeats} (baseline: model.generate, same run)")
    for c in ("batch", "model.generate tok/s", "hf backend tok/s", "ratio"):
        t.add_column(c, justify="right")
    for bs, v in res["tokens_per_s"].items():
        t.add_row(bs, f"{v['plain']:.1f}", f"{v['ours']:.1f}", f"{v['ours'] / v['plain']:.2f}x")
    console.print(t)
    b1 = res["tokens_per_s"]["1"]["ours"]
    console.print(f"time to first token (batch 1): {res['ttft_ms']:.0f} ms")
    console.print(f"load: first prepare {res['first_prepare_s']:.1f} s vs cached load {res['cached_load_s']:.2f} s")
    console.print(f"floor: {res['weight_bytes'] / 1e6:.0f} MB of weights per decode step / "
                  f"{res['copy_bandwidth_gbs']:.1f} GB/s copy bandwidth = {res['floor_tokens_per_s_batch1']:.0f} tok/s; "
                  f"batch 1 reaches {b1:.1f} tok/s = {b1 / res['floor_tokens_per_s_batch1']:.0%} of it")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
