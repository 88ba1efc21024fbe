"""Reading the environment registry (KV `environments`, written by task_gen): env id -> spec.
Every service that talks to an environment finds its address here."""

from __future__ import annotations

from evolver.errors import NotFound
from evolver.v1 import environment_pb2 as env_pb


async def environment_spec(kv, env_id: str) -> env_pb.EnvironmentSpec:
    raw = await kv.get(env_id)
    if raw is None:
        raise NotFound(f"no environment registered as {env_id!r}")
    return env_pb.EnvironmentSpec.FromString(raw)
