"""The trainer's bus handler: it indexes each rollout.attributed event by group id (stream
sequence and trace context in the `rollout-index` bucket, read back only by a resumed step) and
hands the group to the run loop waiting for it (GroupArrivals): no loop polls and none holds a
consumer of its own."""

from __future__ import annotations

import json

from evolver.bus import Delivery, Handler
from services.trainer.collection import GroupArrivals


def handlers(index, arrivals: GroupArrivals) -> dict[str, Handler]:
    async def on_attributed(d: Delivery) -> None:
        if d.message.demonstration:  # type: ignore[attr-defined]
            return  # memory's material, not a group any run loop waits for
        trace_headers = {k: v for k, v in d.headers.items() if k.lower() in ("traceparent", "tracestate")}
        await index.put(d.message.group.group_id,  # type: ignore[attr-defined]
                        json.dumps({"seq": d.stream_seq, "trace": trace_headers}).encode())
        arrivals.arrived(d.message.group.group_id, d.message, trace_headers)  # type: ignore[attr-defined]

    return {"trainer-rollout-attributed": on_attributed}
