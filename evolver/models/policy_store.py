"""Policy versions on the bus: the trainer publishes each LoRA adapter to the Object Store with a
KV pointer and a policy.updated event; explorers switch to the version a rollout job asks for.

Adapters are stored one object per version, so a job that names version N always gets exactly
version N, even after the pointer has moved on."""

from __future__ import annotations

import time

from evolver.bus import topology
from evolver.v1 import events_pb2
from evolver.v1 import policy_pb2 as ppb


def adapter_object(run_id: str, version: int) -> str:
    return f"{run_id}/v{version}"


async def publish_policy(bus, run_id: str, version: int, base_model: str, adapter_blob: bytes) -> ppb.PolicyVersion:
    name = adapter_object(run_id, version)
    digest, size = await bus.put_blob(topology.ADAPTERS_BUCKET, name, adapter_blob)
    policy = ppb.PolicyVersion(run_id=run_id, version=version, base_model=base_model,
                               adapter=ppb.ArtifactRef(bucket=topology.ADAPTERS_BUCKET, name=name, digest=digest,
                                                       size_bytes=size))
    policy.created_at.FromSeconds(int(time.time()))
    await (await bus.kv(topology.POLICIES_BUCKET)).put(run_id, policy.SerializeToString())
    await bus.publish("policy.updated", events_pb2.PolicyUpdated(policy=policy), key=name)
    return policy


class AdapterMissing(Exception):
    pass


class PolicySwitcher:
    """Gives each job the policy (run, version) it names. A backend that serves many adapters
    at once (the `openai` backend on vLLM) returns a view pinned to that version; the in-process
    backend hot-swaps its adapter without a restart. Version 0 is the base model."""

    def __init__(self, bus, backend):
        self.bus, self.backend = bus, backend
        self.current: tuple[str, int] = ("", 0)
        self.swaps = 0

    async def _blob(self, run_id: str, version: int) -> bytes:
        blob = await self.bus.get_blob(topology.ADAPTERS_BUCKET, adapter_object(run_id, version))
        if blob is None:
            raise AdapterMissing(f"adapter {adapter_object(run_id, version)} is not in the object store (yet)")
        return blob

    async def ensure(self, run_id: str, version: int):
        """The backend to generate this job's rollouts with."""
        if hasattr(self.backend, "use_adapter"):
            return await self.backend.use_adapter(run_id, version, lambda: self._blob(run_id, version))
        if version == 0:
            if self.backend.policy_version != 0:
                self.backend.reset_to_base()
                self.swaps += 1
            self.current = (run_id, 0)
            return self.backend
        if self.current == (run_id, version) and self.backend.policy_version == version:
            return self.backend
        blob = await self._blob(run_id, version)
        import asyncio
        await asyncio.to_thread(self.backend.load_adapter_blob, blob, version)
        self.current = (run_id, version)
        self.swaps += 1
        return self.backend
