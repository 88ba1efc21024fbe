"""Shared setup for tests that run services in-process against the real nats-server."""

from __future__ import annotations

import asyncio
import time

from evolver.config import load_settings


def service_settings(nats_url: str, state_dir) -> object:
    return load_settings(environ={"EVOLVER_NATS__URL": nats_url, "EVOLVER_STATE_DIR": str(state_dir),
                                  "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.3"})


async def collect(bus, subject: str) -> tuple[list, object]:
    """Decoded events published on `subject` from now on, and the subscription to close."""
    seen: list = []

    async def on_msg(msg) -> None:
        seen.append(await bus.decode(msg.subject, msg.data, msg.headers))
    return seen, await bus.nc.subscribe(subject, cb=on_msg)


async def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


async def dead_letters(bus, subject: str) -> list:
    """Every dead-lettered copy of messages on `subject` so far."""
    from evolver.bus import topology
    out = []
    sub = await bus.js.subscribe(f"dead.{subject}", stream=topology.DEAD.name, ordered_consumer=True)
    try:
        while True:
            try:
                out.append(await sub.next_msg(timeout=0.5))
            except Exception:
                return out
    finally:
        await sub.unsubscribe()


SERVED = "tiny"  # the vLLM emulator's served model name in tests


def start_emulator(model_dir, *, max_model_len: int = 8192, max_loras: int = 8, dtype: str = "auto"):
    """(base url, process) of a vLLM emulator serving the model as SERVED."""
    from evolver.models import vllm_emulator
    from evolver.stack.processes import free_port
    return vllm_emulator.start(model_dir, port=free_port(), served_name=SERVED, max_model_len=max_model_len,
                               max_loras=max_loras, dtype=dtype)


def embedded_stack(state_dir, tiny_model_dir, cli, **extra_env):
    """Generator for a module fixture: `evolver up` in state_dir with the tiny model as the
    policy, yields the folder, then `evolver down`. extra_env reaches every stack process."""
    import os
    env = {"EVOLVER_POLICY__MODEL_DIR": str(tiny_model_dir), "EVOLVER_BUS__ACK_WAIT_S": "6",
           "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.5", **extra_env}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the stack's processes inherit these
    try:
        up = cli(state_dir, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        yield state_dir
        cli(state_dir, "down")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def robustness_line(kind: str, **counts) -> None:
    """One line of figures for docs/RELIABILITY.md: printed, and appended to $ROBUSTNESS_JSONL
    when set (`make chaos`)."""
    import json
    import os
    line = json.dumps({"kind": kind, **counts})
    print("ROBUSTNESS " + line, flush=True)
    if out := os.environ.get("ROBUSTNESS_JSONL"):
        with open(out, "a") as f:
            f.write(line + "\n")


def no_updates(spec):
    """An updater factory for tests whose run loops never reach a policy update."""
    raise AssertionError("this test's run loop was not meant to update the policy")


async def task_gen_on(bus):
    """task_gen's domain on a test bus: KV-backed registry, pool and counters, and a task index in
    an in-memory Qdrant with the real embedder (loaded only if a task is ever indexed)."""
    from evolver.bus import topology
    from evolver.envs.client import check_conformance
    from evolver.memory.embeddings import MiniLMEmbedder
    from evolver.memory.store import ClientStore
    from services.task_gen.embedding_dedup import TaskVectorIndex
    from services.task_gen.pool import TaskPool, TaskStatsBook
    from services.task_gen.registry import EnvironmentRegistry
    from services.task_gen.task_gen import TaskGen

    async def publish(subject, message, key):
        return await bus.publish(subject, message, key=key)
    return TaskGen(EnvironmentRegistry(await bus.kv(topology.ENVIRONMENTS_BUCKET), check_conformance),
                   TaskPool(await bus.kv(topology.TASKS_BUCKET)), TaskStatsBook(await bus.kv(topology.TASK_STATS_BUCKET)),
                   TaskVectorIndex(ClientStore(MiniLMEmbedder.dim, location=":memory:", collection="task_queries"),
                                   MiniLMEmbedder), publish)


def empty_memory():
    """Memory's domain on an empty in-memory Qdrant with the real embedder (loaded on first use)."""
    from evolver.memory.embeddings import MiniLMEmbedder
    from evolver.memory.store import ClientStore
    from services.memory.memory import Memory
    return Memory(ClientStore(MiniLMEmbedder.dim, location=":memory:"), MiniLMEmbedder)


def status_code(e: BaseException):
    """The gRPC status an environment answered: RemoteEnvironment translates statuses into domain
    errors (evolver.envs.client.domain_error); this maps one back through the server's own table."""
    import grpc

    from evolver.rpc import to_status
    return e.code() if isinstance(e, grpc.aio.AioRpcError) else to_status(e).code
