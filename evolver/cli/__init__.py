"""`evolver` command line: the embedded stack, environments, models, events and traces."""

from __future__ import annotations

import argparse
import sys

from evolver.cli._bus import cmd_bus_apply, cmd_topology
from evolver.cli._common import console
from evolver.cli._envs import cmd_env_add, cmd_env_list, cmd_eval
from evolver.cli._models import cmd_models_prepare
from evolver.cli._observe import cmd_events_tail, cmd_trace
from evolver.cli._run import DEFAULT_CONFIG, cmd_run, load_spec
from evolver.cli._stack import cmd_down, cmd_ping, cmd_restart, cmd_smoke, cmd_status, cmd_up
from evolver.config import ConfigError
from evolver.errors import EvolverError

__all__ = ["DEFAULT_CONFIG", "build_parser", "load_spec", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evolver", description=__doc__)
    p.add_argument("--state-dir", help="where the embedded stack keeps its state (default .evolver or $EVOLVER_STATE_DIR)")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start nats-server and the five services")
    up.add_argument("--nats-port", type=int, help="fixed NATS port (default: a free one)")
    up.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N",
                    help="processes of a service sharing its work queues, e.g. explorer=2 (repeatable)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("status", help="health of every component").set_defaults(func=cmd_status)
    rs = sub.add_parser("restart", help="restart one service while the others keep running")
    rs.add_argument("service", help="explorer | task_gen | memory | attributor | trainer")
    rs.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM (rehearse a crash)")
    rs.set_defaults(func=cmd_restart)
    run = sub.add_parser("run", help="the self-evolving loop: train the policy on an environment (the main job)")
    run.add_argument("--config", help="run YAML (default: configs/default.yaml)")
    run.add_argument("--steps", type=int, help="override the number of training steps")
    run.add_argument("--env", help="override the environment id")
    run.add_argument("--seed", type=int, help="override the seed")
    run.add_argument("--run-id", help="run id (default: run-<timestamp>); the same id resumes/returns that run")
    run.add_argument("--out", default="runs", help="parent folder of the run folder")
    run.add_argument("--keep-stack", action="store_true", help="leave the embedded stack running afterwards")
    run.add_argument("--warm-start", metavar="FILE",
                     help="start RL from this warm start (a run folder's warm_start.bin) instead of fine-tuning "
                          "again; it must have been made on this run's base model and train tasks")
    run.set_defaults(func=cmd_run)
    sub.add_parser("down", help="stop the stack").set_defaults(func=cmd_down)
    pg = sub.add_parser("ping", help="send one event through every service")
    pg.add_argument("--timeout", type=float, default=10.0)
    pg.set_defaults(func=cmd_ping)
    sm = sub.add_parser("smoke", help="up, status, ping, down")
    sm.add_argument("--nats-port", type=int)
    sm.add_argument("--timeout", type=float, default=10.0)
    sm.set_defaults(func=cmd_smoke)
    sub.add_parser("topology", help="print streams and consumers as JSON").set_defaults(func=cmd_topology)
    events = sub.add_parser("events", help="event streams").add_subparsers(dest="events_command", required=True)
    et = events.add_parser("tail", help="print events as they flow, one line each")
    et.add_argument("filter", nargs="?", default=">", help="subject filter, e.g. 'rollout.>' (default: everything)")
    et.add_argument("--json", action="store_true", help="one JSON object per event")
    et.add_argument("--all", action="store_true", help="replay stored events first")
    et.add_argument("--max", type=int, default=0, help="stop after N events")
    et.add_argument("--nats-url", help="default: the embedded stack's, or EVOLVER_NATS__URL / EVOLVER_CONFIG")
    et.set_defaults(func=cmd_events_tail)
    tr = sub.add_parser("trace", help="the span tree of a trace (by trace id, rollout id, message id...)")
    tr.add_argument("key")
    tr.add_argument("--spans", help="spans JSONL (default: the embedded stack's)")
    tr.set_defaults(func=cmd_trace)
    bus = sub.add_parser("bus", help="the event bus").add_subparsers(dest="bus_command", required=True)
    bus.add_parser("apply", help="create/update streams, consumers and buckets (idempotent)").set_defaults(func=cmd_bus_apply)
    env = sub.add_parser("env", help="environments").add_subparsers(dest="env_command", required=True)
    add = env.add_parser("add", help="register a server speaking the Environment protocol")
    add.add_argument("address", help="HOST:PORT")
    add.add_argument("--id", help="environment id (default: derived from the address)")
    add.add_argument("--name", help="display name")
    add.add_argument("--task-gen", help="task_gen address (default: the running embedded stack's)")
    add.set_defaults(func=cmd_env_add)
    ls = env.add_parser("list", help="registered environments")
    ls.add_argument("--task-gen", help="task_gen address (default: the running embedded stack's)")
    ls.set_defaults(func=cmd_env_list)
    models = sub.add_parser("models", help="policy models").add_subparsers(dest="models_command", required=True)
    mp = models.add_parser("prepare", help="convert SmolLM2-135M-Instruct (GGUF) to safetensors, once")
    mp.add_argument("--cache", help="cache folder (default $EVOLVER_MODEL_CACHE or ~/.cache/evolver/models)")
    mp.add_argument("--force", action="store_true")
    mp.set_defaults(func=cmd_models_prepare)
    ev = sub.add_parser("eval", help="k attempts per seed task: avg@k and best@k")
    ev.add_argument("--env", default="bfcl")
    ev.add_argument("--env-address", help="HOST:PORT (default: the embedded stack's env-<env>)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--k", type=int, default=1)
    ev.add_argument("--temperature", type=float, default=0.0)
    ev.add_argument("--agent", default="reference", help="policy | reference | reference-perturbed")
    ev.add_argument("--model-dir", help="policy agent: a prepared model folder (default: `models prepare` cache)")
    ev.add_argument("--max-steps", type=int, default=12, help="policy agent: assistant turns per episode")
    ev.add_argument("--limit", type=int, default=0, help="first N tasks only")
    ev.add_argument("--out", default="runs/eval.jsonl")
    ev.set_defaults(func=cmd_eval)
    return p


def _configure_clients() -> None:
    """The CLI's gRPC calls carry the same token and CA as the services' (settings.grpc)."""
    from evolver.config import load_settings
    from evolver.rpc import configure_clients, read_token
    try:
        s = load_settings().grpc
    except ConfigError:  # the command that needs settings says what is wrong (or the services do)
        return
    configure_clients(tls_ca_file=s.tls_ca_file, token=read_token(s.auth_token_file))


def main(argv: list[str] | None = None) -> None:
    from evolver.stack import StackError
    from evolver.stack.processes import exit_on_sigterm
    args = build_parser().parse_args(argv)
    exit_on_sigterm()  # `evolver run` / `up` stopped by SIGTERM take down the stack they started
    try:
        _configure_clients()
        rc = args.func(args)
    except (StackError, ConfigError, FileNotFoundError, EvolverError) as e:
        console.print(f"[red]error:[/] {e}")
        rc = 1
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc)

