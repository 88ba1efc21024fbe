"""The environment registry: which Environment servers task_gen knows, kept in NATS KV so a
restarted task_gen (or another replica) sees the same set."""

from __future__ import annotations

import re
from typing import Awaitable, Callable, Protocol

from evolver.envs.convert import tool_to_pb
from evolver.envs.profile import check_profile, derive_profile
from evolver.envs.base import Tool
from evolver.envs.registry import environment_spec
from evolver.errors import FailedPrecondition, NotFound, Validator
from evolver.v1 import environment_pb2 as env_pb

ENV_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")

Checker = Callable[[str], Awaitable[tuple[list[Tool], bool]]]


class KeyValue(Protocol):
    async def put(self, key: str, value: bytes) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def keys(self) -> list[str]: ...
    async def delete(self, key: str) -> None: ...


def validate_registration(env_id: str, address: str, profile: env_pb.EnvironmentProfile | None = None) -> None:
    v = Validator()
    if profile is not None:
        check_profile(profile, v)
    v.check(bool(ENV_ID.match(env_id)), "env_id", "must be 1-63 chars of a-z, 0-9, '_' or '-', starting alphanumeric")
    port_ok = bool(ADDRESS.match(address)) and 0 < int(address.rsplit(":", 1)[1]) < 65536
    v.check(port_ok, "address", "must be HOST:PORT with a port between 1 and 65535")
    v.raise_if_any()


class EnvironmentRegistry:
    def __init__(self, kv: KeyValue, check: Checker):
        self.kv = kv
        self.check = check

    async def register(self, env_id: str, address: str, display_name: str = "",
                       kind: int = env_pb.ENVIRONMENT_KIND_USER,
                       profile: env_pb.EnvironmentProfile | None = None) -> env_pb.EnvironmentSpec:
        """Validates, checks the server answers and conforms, then records it (re-registering an
        id replaces its address: that is how an environment moves). Without a profile, one is
        derived from the tool schemas."""
        supplied = profile is not None and profile.ByteSize() > 0
        validate_registration(env_id, address, profile if supplied else None)
        tools, state_visible = await self.check(address)
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:  # a call by name would be ambiguous
            raise FailedPrecondition(f"the environment at {address} lists tools more than once: {duplicates[:5]}")
        spec = env_pb.EnvironmentSpec(env_id=env_id, display_name=display_name or env_id, address=address,
                                      kind=kind, tools=[tool_to_pb(t) for t in tools],
                                      state_visible=state_visible)
        if supplied:
            spec.profile.CopyFrom(profile)
            spec.profile.source = "user"
        else:
            spec.profile.CopyFrom(derive_profile(tools, display_name or env_id))
        await self.kv.put(env_id, spec.SerializeToString())
        return spec

    async def unregister(self, env_id: str) -> None:
        await self.get(env_id)  # NotFound when unknown
        await self.kv.delete(env_id)

    async def get(self, env_id: str) -> env_pb.EnvironmentSpec:
        return await environment_spec(self.kv, env_id)

    async def list(self) -> list[env_pb.EnvironmentSpec]:
        out = []
        for k in await self.kv.keys():
            try:
                out.append(await self.get(k))
            except NotFound:  # removed between keys() and get()
                continue
        return out
