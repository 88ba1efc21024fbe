"""The GPU path's rollout side, measured: the `openai` backend following the policy on a vLLM
server (or, on a machine without a GPU, on the vLLM emulator: evolver.models.vllm_emulator,
the same endpoints backed by the CPU decode loop).

Per policy version, with the real trainer producing each version (PolicyUpdater, LoRA r=8):
  - adapter swap latency: what a job naming a new version waits for on the explorer (the
    adapter written to the shared folder + /v1/load_lora_adapter), against the same-run
    baseline of the in-process `hf` backend's hot swap (HFBackend.load_adapter_blob);
  - intended-version share: requests for the new and the previous version run concurrently
    on the same server; each completion is attributed to the version whose weights give its
    behaviour log-probs (the trainer recomputes them under every loaded version and picks the
    closest): the share attributed to the version the request named (must be 100%);
  - log-prob agreement: max |server log-prob - trainer log-prob| under the named version;
  - tokens/s of the rollout batch through the server, and the trainer's step time.

  python bench/vllm_path.py                       # emulator on this machine (CPU)
  python bench/vllm_path.py --endpoint http://127.0.0.1:8000/v1 --served-model smollm2 \\
      --adapter-dir /shared/adapters              # a real vLLM (scripts/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import asyncio
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
from evolver.models import vllm_emulator  # noqa: E402
from evolver.models.openai_compat import EndpointSettings, OpenAIBackend  # noqa: E402

console = Console(width=160)
QUESTIONS = ["Move final_report.pdf into the temp folder and sort it.", "List every file in the workspace.",
             "Create a directory named reports, then list the files.", "Show the last lines of notes.txt."]
RUN = "bench"


def rollout_requests(tokenizer, n: int, new_tokens: int, seed: int) -> list[GenerationRequest]:
    from evolver.envs.bfcl.catalog import tools_for
    from evolver.models.toolcall import system_prompt
    tools = tools_for(["GorillaFileSystem"])
    out = []
    for i in range(n):
        c = Conversation(tokenizer)
        c.start(system_prompt(tools[4 * (i % 2):4 * (i % 2) + 4]), QUESTIONS[i % len(QUESTIONS)])
        out.append(GenerationRequest(c.ids(), SamplingParams(max_new_tokens=new_tokens, temperature=1.0,
                                                             seed=seed * 1000 + i)))
    return out


def samples_of(completions, sign_seed: int):
    from services.trainer.advantages import completion_sample
    return [completion_sample(c, 1.0 if (i + sign_seed) % 2 else -1.0, f"t{i}") for i, c in enumerate(completions)]


def logprob_gaps(updater, completions, checkpoint: bytes) -> list[float]:
    """Per completion: max |server log-prob - trainer log-prob| with the trainer at `checkpoint`."""
    updater.restore(checkpoint)
    return [max((abs(a - b) for a, b in zip(updater.recompute_logprobs(s), c.logprobs)), default=0.0)
            for s, c in zip(samples_of(completions, 0), completions)]


async def measure(args) -> dict:
    import torch

    from evolver.models.hf import HFBackend
    from services.trainer.updater import PolicyUpdater

    model_dir = Path(args.model_dir) if args.model_dir else prepare.prepare(on_progress=console.log)
    emulator = None
    if args.endpoint:
        url, served = args.endpoint, args.served_model
    else:
        served = "smollm2"
        from evolver.stack.processes import free_port
        url, emulator = vllm_emulator.start(model_dir, port=free_port(), served_name=served, threads=args.threads,
                                            timeout_s=600)
    adapter_dir = Path(args.adapter_dir or tempfile.mkdtemp(prefix="evolver-adapters-"))
    adapter_dir.mkdir(parents=True, exist_ok=True)
    updater = PolicyUpdater(model_dir, learning_rate=args.learning_rate, lora_r=8, lora_alpha=16, beta=0.001,
                            epsilon=0.2, epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0,
                            gradient_checkpointing=torch.cuda.is_available())
    backend = OpenAIBackend(EndpointSettings(url, served, timeout_s=900, concurrency=64), updater.tokenizer,
                            adapter_dir=adapter_dir, max_loaded_adapters=2)
    hf = HFBackend(model_dir, prefix_cache_tokens=0)  # the in-process swap baseline
    states = {0: updater.checkpoint_blob()}  # per version: restored to recompute its log-probs
    blobs: dict[int, bytes] = {}
    rows = []
    try:
        previous = await backend.use_adapter(RUN, 0, None)
        for v in range(args.versions + 1):
            t0 = time.perf_counter()
            view = await backend.use_adapter(RUN, v, lambda v=v: asyncio.sleep(0, blobs[v]))
            swap_s = time.perf_counter() - t0
            hf_swap_s = 0.0
            if v:
                t0 = time.perf_counter()
                await asyncio.to_thread(hf.load_adapter_blob, blobs[v], v)
                hf_swap_s = time.perf_counter() - t0
            reqs = rollout_requests(updater.tokenizer, args.requests, args.new_tokens, seed=v)
            half = len(reqs) // 2
            t0 = time.perf_counter()
            # The new version and the previous one at once, on the same server.
            new, old = await asyncio.gather(view.generate(reqs[:half]), previous.generate(reqs[half:]))
            gen_s = time.perf_counter() - t0
            tokens = sum(len(c.token_ids) for c in new + old)
            named = [(c, v) for c in new] + [(c, previous.policy_version) for c in old]
            candidates = sorted({v, previous.policy_version})
            gaps = {cv: logprob_gaps(updater, [c for c, _ in named], states[cv]) for cv in candidates}
            attributed = [min(candidates, key=lambda cv: gaps[cv][i]) for i in range(len(named))]
            intended = sum(a == want == c.policy_version for a, (c, want) in zip(attributed, named)) / len(named)
            agreement = max(gaps[want][i] for i, (_, want) in enumerate(named))
            separation = min((gaps[cv][i] for i, (_, want) in enumerate(named) for cv in candidates if cv != want),
                             default=float("nan"))
            row = {"version": v, "swap_s": swap_s, "hf_swap_s": hf_swap_s, "generate_s": gen_s, "tokens": tokens,
                   "tokens_per_s": tokens / gen_s, "requests": len(named), "intended_share": intended,
                   "max_logprob_gap_named": agreement, "min_logprob_gap_other": separation,
                   "exact": all(c.logprobs_exact for c, _ in named)}
            if v < args.versions:  # the trainer makes the next version from these rollouts
                updater.restore(states[v])
                t0 = time.perf_counter()
                updater.update(samples_of([c for c, _ in named], v), micro_batch=2)
                row["update_s"] = time.perf_counter() - t0
                states[v + 1] = updater.checkpoint_blob()
                blobs[v + 1] = updater.adapter_blob()
            rows.append(row)
            console.log(f"version {v}: swap {swap_s:.3f}s (hf {hf_swap_s:.3f}s), {row['tokens_per_s']:.1f} tok/s, "
                        f"intended {intended:.0%}, gap {agreement:.2e} vs other {separation:.2e}")
            previous = view
    finally:
        await backend.close()
        if emulator is not None:
            emulator.terminate()
            emulator.wait(30)
    swaps = [r["swap_s"] for r in rows if r["version"]]
    hf_swaps = [r["hf_swap_s"] for r in rows if r["version"]]
    return {"server": "vLLM " + url if args.endpoint else "vLLM emulator (CPU)", "model": str(model_dir),
            "device": str(updater.device), "requests_per_version": args.requests, "new_tokens": args.new_tokens,
            "rows": rows, "counters": backend.counters,
            "median_swap_s": statistics.median(swaps), "median_hf_swap_s": statistics.median(hf_swaps),
            "intended_share": sum(r["intended_share"] * r["requests"] for r in rows) / sum(r["requests"] for r in rows),
            "max_logprob_gap_named": max(r["max_logprob_gap_named"] for r in rows)}


def report(res: dict) -> None:
    t = Table(title=f"openai backend on {res['server']}: {res['requests_per_version']} requests per version "
                    f"(half new version, half previous, concurrent), trainer on {res['device']}")
    for col in ("version", "swap s", "hf swap s", "tok/s", "intended", "max |lp gap| named", "min |lp gap| other",
                "update s"):
        t.add_column(col, justify="right")
    for r in res["rows"]:
        t.add_row(str(r["version"]), f"{r['swap_s']:.3f}", f"{r['hf_swap_s']:.3f}", f"{r['tokens_per_s']:.1f}",
                  f"{r['intended_share']:.0%}", f"{r['max_logprob_gap_named']:.2e}", f"{r['min_logprob_gap_other']:.2e}",
                  f"{r.get('update_s', 0):.1f}")
    console.print(t)
    console.print(f"median swap {res['median_swap_s']:.3f}s vs in-process hf swap {res['median_hf_swap_s']:.3f}s "
                  f"(ratio {res['median_swap_s'] / res['median_hf_swap_s']:.2f}); intended-version share "
                  f"{res['intended_share']:.1%}; counters {res['counters']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default="", help="a vLLM server's /v1 URL (default: start the emulator)")
    ap.add_argument("--served-model", default="smollm2")
    ap.add_argument("--adapter-dir", default="", help="a folder the server reads (default: a temp folder)")
    ap.add_argument("--model-dir", default="", help="default: the prepared SmolLM2-135M-Instruct")
    ap.add_argument("--versions", type=int, default=3)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1, help="emulator threads")
    ap.add_argument("--json", default="", help="write the raw results here")
    args = ap.parse_args()
    res = asyncio.run(measure(args))
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
