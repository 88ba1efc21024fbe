"""Shared CLI helpers."""

from __future__ import annotations

import os

from rich.console import Console

from evolver.config import load_settings

console = Console(stderr=False, highlight=False)


def _state_dir(args) -> str:
    return args.state_dir or os.environ.get("EVOLVER_STATE_DIR") or ".evolver"


def _running_state(args):
    from evolver.stack import Stack, StackError
    state = Stack(_state_dir(args)).running()
    if state is None:
        raise StackError(f"no stack is running from {_state_dir(args)}; start one with `evolver up`")
    return state


def _nats_settings(args):
    if args.nats_url:
        return load_settings(environ={**os.environ, "EVOLVER_NATS__URL": args.nats_url})
    if os.environ.get("EVOLVER_NATS__URL") or os.environ.get("EVOLVER_CONFIG"):
        return load_settings()
    return load_settings(environ={**os.environ, "EVOLVER_NATS__URL": _running_state(args).nats_url})

