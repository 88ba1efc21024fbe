"""Does `allow_text_around_calls` still earn its place (issue 16, item 8)? Measured on a finished
run's own evaluation rollouts, read back from its stack's EVENTS stream: every assistant turn is
parsed again strictly, and the turns and successes that depended on the lenient parser are counted.

A success counted as "relied on it" had at least one turn whose calls were accepted only because
text around them was allowed; under strict parsing that turn is an error observation instead (the
policy may still recover on its next turn, so this is an upper bound on the successes lost).

  .venv/bin/python bench/text_around_calls.py --state-dir .evolver-bench-learning/run0 \
      --run-id learning-0-seed0 [--json docs/bench_text_around_calls.json]

The run's stack must be down: this starts its nats-server alone on the stored JetStream data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolver.bus import Bus  # noqa: E402
from evolver.cli.run_events import read_run_events  # noqa: E402
from evolver.config import load_settings  # noqa: E402
from evolver.models.toolcall import parse_turn  # noqa: E402
from evolver.stack import Stack  # noqa: E402
from evolver.stack.processes import exit_on_sigterm  # noqa: E402


def relied_on_leniency(text: str) -> bool:
    """The turn's calls were accepted leniently and rejected strictly."""
    lenient = parse_turn(text, allow_text_around_calls=True)
    strict = parse_turn(text, allow_text_around_calls=False)
    return bool(lenient.calls) and not lenient.errors and bool(strict.errors)


def count(completed) -> dict[str, dict]:
    """Per evaluation point (train step, policy version): turns, turns with calls, turns that
    relied on leniency, successes, and successes with such a turn."""
    out: dict[str, dict] = {}
    for ev in completed:
        if not ev.evaluation:
            continue
        key = f"step {ev.group.train_step}, policy v{ev.group.trajectories[0].policy_version if ev.group.trajectories else 0}"
        row = out.setdefault(key, {"trajectories": 0, "turns": 0, "turns_with_calls": 0, "lenient_turns": 0,
                                   "successes": 0, "successes_relying": 0})
        for t in ev.group.trajectories:
            if t.infra_failure.reason:
                continue
            row["trajectories"] += 1
            lenient = [relied_on_leniency(s.assistant_text) for s in t.steps]
            row["turns"] += len(t.steps)
            row["turns_with_calls"] += sum(1 for s in t.steps if s.tool_calls)
            row["lenient_turns"] += sum(lenient)
            if t.reward.success:
                row["successes"] += 1
                row["successes_relying"] += int(any(lenient))
    return dict(sorted(out.items()))


async def read(nats_url: str, run_id: str):
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": nats_url}), name="text-around-calls")
    try:
        return (await read_run_events(bus, run_id, idle_s=2.0)).completed
    finally:
        await bus.close()


def main() -> None:
    exit_on_sigterm()  # a SIGTERM takes the stack this benchmark started down with it
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", required=True, help="the finished run's stack state folder")
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    stack = Stack(Path(args.state_dir))
    state = stack.up(services=(), environments=())
    try:
        completed = asyncio.run(read(state.nats_url, args.run_id))
    finally:
        stack.down()
    rows = count(completed)
    for key, r in rows.items():
        print(f"{key}: {r['trajectories']} attempts, {r['turns']} turns ({r['turns_with_calls']} with calls), "
              f"{r['lenient_turns']} accepted only with text around calls; {r['successes']} successes, "
              f"{r['successes_relying']} of them with such a turn")
    if args.json:
        Path(args.json).write_text(json.dumps({"run_id": args.run_id, "evaluations": rows}, indent=2))


if __name__ == "__main__":
    main()
