"""How far the self-bootstrapped warm start carries to held-out tasks, in one process (no stack):
fine-tune the LoRA policy on demonstrations of synthetic train tasks (the replayed reference
solutions, rendered as rollouts render them) and evaluate held-out synthetic tasks after every
epoch, with the rollout code the explorer runs (seeded attempts: the same policy scores the
same). The baseline is the base model, evaluated in the same run on the same tasks and seeds.

A task pool comes from a run (`--tasks`: length-prefixed Task protos, e.g. dumped with
ListTasks) so settings are compared on the same tasks.

    python bench/warm_start.py --tasks pool.bin [--demos 32] [--epochs 3] [--lr 1e-3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver.agent.demonstration import bootstrap_tasks, demonstration  # noqa: E402
from evolver.agent.rollout import RolloutOptions, run_group  # noqa: E402
from evolver.algorithms.stats import paired_delta  # noqa: E402
from evolver.envs.bfcl import BfclEnvironment  # noqa: E402
from evolver.envs.local import InProcessEnvironment  # noqa: E402
from evolver.models import prepare  # noqa: E402
from evolver.models.batching import BatchingBackend  # noqa: E402
from evolver.models.hf import HFBackend  # noqa: E402
from evolver.v1 import task_pb2  # noqa: E402
from services.trainer.advantages import demonstration_sample  # noqa: E402
from services.trainer.updater import PolicyUpdater  # noqa: E402

console = Console()


def read_tasks(path: Path) -> list[task_pb2.Task]:
    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(task_pb2.Task.FromString(data[i + 4:i + 4 + n]))
        i += 4 + n
    return out


async def evaluate(backend, env, tasks, opts: RolloutOptions) -> dict[str, float]:
    """Per task, the share of its k attempts that succeeded (avg@k)."""
    async def one(t):
        trajs = await run_group(backend, env, t, opts, group_id=f"eval.{t.task_id}")
        return t.task_id, sum(tr.reward.success for tr in trajs) / len(trajs)
    out = {}
    for i in range(0, len(tasks), 2):  # two groups at a time: batches of 2k requests
        out.update(await asyncio.gather(*(one(t) for t in tasks[i:i + 2])))
    return out


async def main(a) -> dict:
    model_dir = prepare.prepare()
    tasks = read_tasks(a.tasks)
    train = bootstrap_tasks(tasks, a.demos)
    held = sorted((t for t in tasks if t.split == "heldout"), key=lambda t: t.task_id)[:a.heldout]
    env = InProcessEnvironment(BfclEnvironment())
    updater = PolicyUpdater(model_dir, learning_rate=a.lr, lora_r=8, lora_alpha=16, beta=0.001, epsilon=0.2,
                            epsilon_high=0.28, off_cliprange_high=0.6, temperature=a.temperature)
    backend = BatchingBackend(HFBackend(model_dir))
    opts = RolloutOptions(group_size=a.k, guided_share=0.0, temperature=a.temperature, max_steps=a.max_steps,
                          max_new_tokens=a.max_new_tokens, max_tools_shown=a.max_tools_shown,
                          first_turn_prefix=a.first_turn_prefix, allow_text_around_calls=True, seed=a.seed)
    demos = []
    for t in train:
        d = await demonstration(updater.tokenizer, env, t, max_tools_shown=a.max_tools_shown, seed=a.seed)
        demos.append(demonstration_sample(t.task_id, d.sequence))
    console.print(f"{len(demos)} demonstrations ({sum(len(d.token_ids) for d in demos) / len(demos):.0f} tokens each), "
                  f"{len(held)} held-out tasks x {a.k} attempts")
    t0 = time.perf_counter()
    points = [{"epoch": 0, "scores": await evaluate(backend, env, held, opts), "s": time.perf_counter() - t0}]
    console.print(f"base: held-out avg@{a.k} {sum(points[0]['scores'].values()) / len(held):.3f} "
                  f"({points[0]['s']:.0f} s)")
    losses = []
    for epoch in range(1, a.epochs + 1):
        t = time.perf_counter()
        for i in range(0, len(demos), a.batch):
            m = updater.update(demos[i:i + a.batch], supervised=True, prompt_grad=a.prompt_grad)
            losses.append(m["loss"])
        train_s = time.perf_counter() - t
        backend.inner.load_adapter_blob(updater.adapter_blob(), updater.version)
        t = time.perf_counter()
        scores = await evaluate(backend, env, held, opts)
        d = paired_delta(points[0]["scores"], scores)
        points.append({"epoch": epoch, "scores": scores, "train_s": train_s, "eval_s": time.perf_counter() - t,
                       "loss_last": losses[-1], "change": None if d is None else vars(d)})
        console.print(f"epoch {epoch}: NLL/token {losses[-1]:.3f}, held-out avg@{a.k} "
                      f"{sum(scores.values()) / len(held):.3f}, vs base {d} (train {train_s:.0f} s)")
    return {"args": {k: str(v) for k, v in vars(a).items()}, "demos": len(demos), "heldout": len(held),
            "losses": losses, "points": points}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=Path, required=True)
    ap.add_argument("--demos", type=int, default=32)
    ap.add_argument("--heldout", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.4)
    ap.add_argument("--max-steps", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--max-tools-shown", type=int, default=2)
    ap.add_argument("--first-turn-prefix", default="")
    ap.add_argument("--prompt-grad", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = asyncio.run(main(args))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
