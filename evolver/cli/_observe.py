"""Watching a running system: events and traces."""

from __future__ import annotations

import asyncio
from pathlib import Path


from evolver.cli._common import _nats_settings, _state_dir, console


def cmd_events_tail(args) -> int:
    from evolver.bus import Bus
    from evolver.cli.observe import tail
    settings = _nats_settings(args)

    async def go():
        bus = await Bus.connect(settings, name="evolver-tail")
        try:
            return await tail(bus, args.filter, as_json=args.json, max_messages=args.max,
                              deliver_new_only=not args.all, emit=lambda line: print(line, flush=True))
        finally:
            await bus.close()
    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_trace(args) -> int:
    from evolver.cli.observe import find_traces, load_spans, render_tree
    path = Path(args.spans) if args.spans else Path(_state_dir(args)) / "traces" / "spans.jsonl"
    spans = load_spans(path)
    traces = find_traces(spans, args.key)
    if not traces:
        console.print(f"[red]no trace matches {args.key!r}[/] in {path} ({len(spans)} spans)")
        return 1
    for t in traces:
        console.print(f"trace {t}")
        for line in render_tree(spans, t):
            console.print("  " + line, highlight=False, markup=False)
    return 0
