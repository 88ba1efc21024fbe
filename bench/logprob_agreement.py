"""Do the rollouts' behaviour log-probs agree with the trainer's recomputation of them? The
importance ratio exp(new - behaviour) depends on it, and on a CPU with AMX (or a GPU) both sides
now hold the base weights in bfloat16. SmolLM2-135M-Instruct, a rollout batch as the explorer
makes it (2 agent prompts with 4 BFCL tools x 4 attempts, sampled at temperature 1.0 so the
log-probs are the model's own), scored by:

- the trainer in the measured dtype (`PolicyUpdater.recompute_logprobs`, what training uses),
- the trainer in float32 (the path as issue 16 filed it),

and, as the control, the same pairs for a float32 rollout backend. Reported: mean and max
|behaviour - recomputed| in nats, and the largest importance ratio such a gap alone makes
(exp(max gap)), against PPO's clip (1 + epsilon_high = 1.28).

    python bench/logprob_agreement.py [--new-tokens 48] [--json docs/bench_logprob_agreement.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver.envs.bfcl.catalog import tools_for  # noqa: E402
from evolver.models import prepare  # noqa: E402
from evolver.models.backend import GenerationRequest, SamplingParams  # noqa: E402
from evolver.models.conversation import Conversation  # noqa: E402
from evolver.models.hf import HFBackend  # noqa: E402
from evolver.models.toolcall import system_prompt  # noqa: E402
from services.trainer.advantages import completion_sample  # noqa: E402
from services.trainer.updater import PolicyUpdater  # noqa: E402

console = Console()
QUESTIONS = ("Move the draft report into the archive folder.", "How many lines does notes.txt have?")


def rollout_requests(tokenizer, new_tokens: int) -> list[GenerationRequest]:
    tools = tools_for(["GorillaFileSystem"])
    out = []
    for g, q in enumerate(QUESTIONS):
        c = Conversation(tokenizer)
        c.start(system_prompt(tools[4 * g:4 * g + 4]), q)
        out += [GenerationRequest(c.ids(), SamplingParams(max_new_tokens=new_tokens, temperature=1.0, seed=10 * g + a))
                for a in range(4)]
    return out


def gaps(completions, updater: PolicyUpdater) -> list[float]:
    out = []
    for c in completions:
        recomputed = updater.recompute_logprobs(completion_sample(c))[:len(c.token_ids)]
        out += [abs(a - b) for a, b in zip(c.logprobs, recomputed)]
    return out


def main(new_tokens: int) -> dict:
    model_dir = prepare.prepare()
    measured = HFBackend(model_dir)
    dtypes = {"measured": measured.compute_dtype, "float32": torch.float32}
    backends = {"measured": measured, "float32": HFBackend(model_dir, compute_dtype=torch.float32)}
    trainers = {name: PolicyUpdater(model_dir, learning_rate=1e-5, lora_r=8, lora_alpha=16, beta=0.0, epsilon=0.2,
                                    epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0, compute_dtype=dt)
                for name, dt in dtypes.items()}
    reqs = rollout_requests(measured.tokenizer, new_tokens)
    rows = {}
    for b_name, backend in backends.items():
        completions = backend.generate_sync(reqs)
        for t_name, trainer in trainers.items():
            g = gaps(completions, trainer)
            rows[f"rollout {b_name} / trainer {t_name}"] = {
                "rollout_dtype": str(backend.compute_dtype).removeprefix("torch."),
                "trainer_dtype": str(trainer.compute_dtype).removeprefix("torch."),
                "tokens": len(g), "mean_gap": sum(g) / len(g), "max_gap": max(g), "max_ratio": math.exp(max(g))}
    return {"new_tokens": new_tokens, "prompt_tokens": len(reqs[0].prompt_token_ids),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "pairs": rows}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with console.status("sampling and recomputing..."):
        res = main(a.new_tokens)
    t = Table(title=f"SmolLM2-135M behaviour vs recomputed log-probs, {res['prompt_tokens']}-token agent prompts, "
                    f"up to {a.new_tokens} sampled tokens x 8 ({res['cpu_capability']})")
    for c in ("rollout / trainer", "tokens", "mean |gap| nats", "max |gap| nats", "largest ratio"):
        t.add_column(c, justify="right")
    for name, r in res["pairs"].items():
        t.add_row(f"{r['rollout_dtype']} / {r['trainer_dtype']}", str(r["tokens"]), f"{r['mean_gap']:.4f}",
                  f"{r['max_gap']:.4f}", f"{r['max_ratio']:.3f}")
    console.print(t)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
