"""Policy models."""

from __future__ import annotations

from pathlib import Path


from evolver.cli._common import console


def cmd_models_prepare(args) -> int:
    from evolver.models import prepare
    cache = Path(args.cache) if args.cache else None
    with console.status("preparing SmolLM2-135M-Instruct...") as status:
        out = prepare.prepare(cache, force=args.force, on_progress=lambda m: (console.print(f"  {m}"), status.update(m)))
    console.print(f"model ready in {out}")
    return 0
