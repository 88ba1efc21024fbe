"""The event bus: apply and show the topology."""

from __future__ import annotations

import asyncio
import json


from evolver.bus import topology
from evolver.cli._common import console
from evolver.config import load_settings


def cmd_bus_apply(args) -> int:
    """Creates or updates every stream, consumer and bucket (the k8s bootstrap Job runs this)."""
    from evolver.bus import Bus
    settings = load_settings()

    async def go():
        bus = await Bus.connect(settings, name="evolver-bootstrap")
        try:
            await bus.ensure_topology()
        finally:
            await bus.close()
    asyncio.run(go())
    console.print(f"topology applied to {settings.nats.url}: {len(topology.STREAMS)} streams, "
                  f"{len(topology.CONSUMERS)} consumers, {len(topology.KV_BUCKETS)} KV buckets")
    return 0


def cmd_topology(args) -> int:
    out = {"streams": [{"name": s.name, "subjects": list(s.subjects), "work_queue": s.work_queue}
                       for s in topology.STREAMS],
           "consumers": [{"durable": c.durable, "stream": c.stream.name, "filter_subject": c.filter_subject,
                          "service": c.service} for c in topology.CONSUMERS]}
    print(json.dumps(out, indent=2))
    return 0
