"""Exploration and task writing, against the previous behaviour in the same run:

- walks: the planner filling arguments from values the environment returned under that field
  name (and the keys of id-keyed maps) vs the previous planner (schema types and any value
  seen), on the same environments, seeds and walk lengths: share of calls that succeeded and of
  calls that changed state, candidates cut;
- queries: the natural-language writer vs the previous template ("Please <description>
  (<tool> with key "value")"), on the same candidates: share of queries that name a tool or an
  argument key (evolver.algorithms.questioning.names_code), distinct 3-grams / all 3-grams over
  distinct queries, and MiniLM embedding spread (mean pairwise cosine distance).

Environments: the library-loans API written from the proto alone (examples/proto_only_env, its
own process), the inventory example and BFCL (in process).

    python bench/exploration.py [--walks 12] [--steps 8] [--json docs/bench_exploration.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver.agent.exploration import run_walk  # noqa: E402
from evolver.algorithms.diversity import embedding_spread, trigram_ratio  # noqa: E402
from evolver.algorithms.questioning import short_description, candidates_from_walk, names_code  # noqa: E402
from evolver.envs.bfcl import BfclEnvironment  # noqa: E402
from evolver.envs.client import RemoteEnvironment  # noqa: E402
from evolver.envs.local import InProcessEnvironment  # noqa: E402
from examples.inventory_env.environment import InventoryEnvironment  # noqa: E402

console = Console()


def previous_template(calls, tools, facts) -> str:
    """The template writer this one replaced (for comparison only)."""
    parts = []
    for c in calls:
        desc = short_description(tools[c.name]) if c.name in tools else c.name
        args = ", ".join(f"{k} {json.dumps(v)}" for k, v in c.arguments.items())
        parts.append(f"{desc} ({c.name}{' with ' + args if args else ''})")
    return "Please " + "; then ".join(parts) + "." + (" Tell me what you find." if facts else "")


class Previous:
    def write(self, calls, tools, facts):
        return previous_template(calls, tools, facts)


def spread(queries: list[str]) -> float:
    from evolver.memory.embeddings import MiniLMEmbedder
    return embedding_spread(MiniLMEmbedder().embed(queries)) if len(queries) > 1 else 0.0


async def measure(env, seeds: list[str], walks: int, steps: int, use_returned_fields: bool) -> dict:
    tools, _ = await env.tools()
    calls = ok = changed = 0
    new_q, old_q = [], []
    for seed_task in seeds:
        for i in range(walks):
            w = await run_walk(env, walk_id=f"{seed_task}/w{i}", seed=i, max_steps=steps, seed_task_id=seed_task,
                               use_returned_fields=use_returned_fields)
            calls += len(w.steps)
            ok += sum(not s.is_error for s in w.steps)
            changed += sum(s.changed_state for s in w.steps)
            new_q += [c.query for c in candidates_from_walk(w, tools, "env", seed_task, max_len=3)]
            old_q += [c.query for c in candidates_from_walk(w, tools, "env", seed_task, max_len=3, writer=Previous())]
    out = {"calls": calls, "succeeded": ok / max(1, calls), "changed_state": changed / max(1, calls),
           "candidates": len(new_q)}
    if use_returned_fields:  # the writers compared on the same candidates
        for name, qs in (("natural", new_q), ("previous_template", old_q)):
            distinct = sorted(set(qs))
            out[name] = {"distinct_queries": len(distinct),
                         "leaking_share": sum(bool(names_code(q, tools)) for q in distinct) / max(1, len(distinct)),
                         "trigram_ratio": trigram_ratio(distinct), "embedding_spread": spread(distinct)}
    return out


async def main(walks: int, steps: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as stubs:
        subprocess.run([sys.executable, str(ROOT / "examples/proto_only_env/generate_stubs.py"), stubs], check=True,
                       capture_output=True)
        server = subprocess.Popen([sys.executable, str(ROOT / "examples/proto_only_env/server.py"), "--stubs", stubs,
                                   "--port", "0"], cwd=stubs, stdout=subprocess.PIPE, text=True)
        try:
            address = re.search(r"grpc=(\S+)", server.stdout.readline()).group(1)
            async with RemoteEnvironment(address) as library:
                envs = [("library (proto only)", library, ["lib-0", "lib-1"]),
                        ("inventory", InProcessEnvironment(InventoryEnvironment()), ["inv-0", "inv-1"]),
                        ("bfcl", InProcessEnvironment(BfclEnvironment()),
                         ["multi_turn_base_0", "multi_turn_base_17", "multi_turn_base_60", "multi_turn_base_120"])]
                for name, env, seeds in envs:
                    results[name] = {"returned_values": await measure(env, seeds, walks, steps, True),
                                     "previous": await measure(env, seeds, walks, steps, False)}
        finally:
            server.terminate()
    return {"walks_per_seed": walks, "steps": steps, "environments": results}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--walks", type=int, default=12)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with console.status("walking and writing..."):
        res = asyncio.run(main(a.walks, a.steps))
    t = Table(title=f"exploration: {a.walks} walks x {a.steps} calls per seed task (baseline: the previous planner, same run)")
    for c in ("environment", "calls", "succeeded prev -> new", "changed state prev -> new", "candidates prev -> new"):
        t.add_column(c, justify="right")
    for name, r in res["environments"].items():
        new, old = r["returned_values"], r["previous"]
        t.add_row(name, str(new["calls"]), f"{old['succeeded']:.0%} -> {new['succeeded']:.0%}",
                  f"{old['changed_state']:.0%} -> {new['changed_state']:.0%}", f"{old['candidates']} -> {new['candidates']}")
    console.print(t)
    q = Table(title="queries on the same candidates (baseline: the previous template writer)")
    for c in ("environment", "writer", "distinct", "name a tool/key", "distinct 3-grams", "MiniLM spread"):
        q.add_column(c, justify="right")
    for name, r in res["environments"].items():
        for writer in ("previous_template", "natural"):
            w = r["returned_values"][writer]
            q.add_row(name, writer.replace("_", " "), str(w["distinct_queries"]), f"{w['leaking_share']:.0%}",
                      f"{w['trigram_ratio']:.2f}", f"{w['embedding_spread']:.3f}")
    console.print(q)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
