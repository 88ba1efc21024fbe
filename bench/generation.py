"""Generation speed of the `hf` backend on SmolLM2-135M-Instruct (CPU), in the same run against
plain `model.generate` and against the backend's previous path (`generate_sync_hf`: transformers'
generate per sampling setting), on the same model, prompts and settings. The baselines run in
float32 (the path when issue 16 was filed); the backend in its measured dtype (bfloat16 weights
and compute on an AMX CPU or a GPU, float32 elsewhere).

- a rollout batch as the explorer makes it: 2 groups x 4 attempts, each group sharing one agent
  prompt with 4 BFCL tool schemas (~1k tokens), sampled at 0.4 with a seed per attempt. Here
  the decode loop prefills each distinct prompt once (prefill dominates on a CPU).
- tokens/s at batch 1 and batch 8 greedy (every side produces the same tokens, so the work is
  identical; the backend also returns per-token log-probs and exact ids), and batch 8 sampled at
  temperature 0.4 with a seed per request (a rollout group). Medians of REPEATS runs, sides
  interleaved.
- the compute dtype the backend measured (decode.fast_dtype) and the matmul rates behind it.
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
    # The baselines run the path as issue 16 found it: everything in float32 (on a CPU without
    # AMX the measured dtype is float32 too, and both backends are the same).
    filed = HFBackend(model_dir, compute_dtype=torch.float32)
    model, tok = filed.model, backend.tokenizer
    prompts = []
    for q in QUESTIONS:
        c = Conversation(tok)
        c.start("You are a helpful assistant.", q)
        prompts.append(c.ids())
    sampling = SamplingParams(max_new_tokens=new_tokens)
    from evolver.envs.bfcl.catalog import tools_for
    from evolver.models.toolcall import system_prompt
    tools = tools_for(["GorillaFileSystem"])
    agent_prompts = []
    for g, q in enumerate(("Move the draft report into the archive folder.", "How many lines does notes.txt have?")):
        c = Conversation(tok)
        c.start(system_prompt(tools[4 * g:4 * g + 4]), q)
        agent_prompts += [c.ids()] * 4

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

    def requests(batch, sampled: bool):
        return [GenerationRequest(p, SamplingParams(max_new_tokens=new_tokens, temperature=0.4, seed=i)
                                  if sampled else sampling) for i, p in enumerate(batch)]

    def today(batch, sampled=False) -> int:
        return sum(len(c.token_ids) for c in filed.generate_sync_hf(requests(batch, sampled)))

    def ours(batch, sampled=False) -> int:
        return sum(len(c.token_ids) for c in backend.generate_sync(requests(batch, sampled)))

    results = {}
    for case, bs, sampled in (("1", 1, False), ("8", 8, False), ("8 sampled", 8, True),
                              ("8 rollout (2 groups x 4)", 8, True)):
        batch = agent_prompts if case.startswith("8 rollout") else prompts[:bs]
        sides = {"today": today, "ours": ours} if sampled else {"plain": plain, "today": today, "ours": ours}
        for f in sides.values():  # warm-up
            f(batch, sampled) if f is not plain else f(batch)
        rates: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(repeats):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                t = time.perf_counter()
                n = plain(batch) if side == "plain" else sides[side](batch, sampled)
                rates[side].append(n / (time.perf_counter() - t))
        results[case] = {k: statistics.median(v) for k, v in rates.items()}
    ttft = []
    for _ in range(repeats):
        t = time.perf_counter()
        backend.generate_sync([GenerationRequest(prompts[0], SamplingParams(max_new_tokens=1))])
        ttft.append(time.perf_counter() - t)
    weight_bytes = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    bw = copy_bandwidth_gbs()
    floor = bw * 1e9 / weight_bytes
    matmul = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = torch.randn(1024, 1024).to(dtype)
        a @ a
        t = time.perf_counter()
        for _ in range(5):
            a @ a
        matmul[name] = 5 * 2 * 1024 ** 3 / (time.perf_counter() - t) / 1e9
    return {"new_tokens": new_tokens, "rollout_prompt_tokens": len(agent_prompts[0]), "repeats": repeats, "threads": torch.get_num_threads(),
            "compute_dtype": str(backend.compute_dtype).removeprefix("torch."), "matmul_gflops": matmul,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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
    t = Table(title=f"SmolLM2-135M, CPU ({res['cpu_capability']}), {res['threads']} threads, up to {a.new_tokens} "
                    f"new tokens, median of {a.repeats} (baselines: model.generate and the previous path, same run)")
    for c in ("batch", "model.generate tok/s", "previous path tok/s", "decode loop tok/s", "vs previous"):
        t.add_column(c, justify="right")
    for bs, v in res["tokens_per_s"].items():
        t.add_row(bs, f"{v['plain']:.1f}" if "plain" in v else "-", f"{v['today']:.1f}", f"{v['ours']:.1f}",
                  f"{v['ours'] / v['today']:.2f}x")
    console.print(t)
    mm = res["matmul_gflops"]
    console.print(f"compute dtype chosen by measurement: {res['compute_dtype']} (1024² matmul: float32 "
                  f"{mm['float32']:.0f} GFLOP/s, bfloat16 {mm['bfloat16']:.0f} GFLOP/s)")
    b1 = res["tokens_per_s"]["1"]["ours"]
    console.print(f"time to first token (batch 1): {res['ttft_ms']:.0f} ms")
    console.print(f"load: first prepare {res['first_prepare_s']:.1f} s vs cached load {res['cached_load_s']:.2f} s")
    console.print(f"floor: {res['weight_bytes'] / 1e6:.0f} MB of weights per decode step / "
                  f"{res['copy_bandwidth_gbs']:.1f} GB/s copy bandwidth = {res['floor_tokens_per_s_batch1']:.0f} tok/s; "
                  f"batch 1 reaches {b1:.1f} tok/s = {b1 / res['floor_tokens_per_s_batch1']:.0%} of it")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
