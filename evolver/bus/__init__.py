"""The event bus: NATS JetStream behind a small surface.

    bus = await Bus.connect(settings, name="explorer"); await bus.ensure_topology()
    await bus.publish("rollout.completed", event, key=group_id)
    await Worker(bus, topology.consumer("memory-rollout-completed"), handler).run(stop)

Readers that are not consumers use `subscribe` (live, or an ordered replay), `replay` (what a
stream holds, until caught up) and `read_event` (one stored message); `trace_parent(headers)`
is the trace context a message carries. Nothing outside this package touches nats-py.
"""

from evolver.bus import topology
from evolver.bus.trace_context import extract as trace_parent
from evolver.bus.client import Bus, Event, Published, Subscription, is_bus_failure, message_id
from evolver.bus.worker import DeadLetterSweeper, Delivery, Handler, Worker, dead_letter, retry_delay

__all__ = ["Bus", "DeadLetterSweeper", "Delivery", "Event", "Handler", "Published", "Subscription", "Worker",
           "dead_letter", "is_bus_failure", "message_id", "retry_delay", "topology", "trace_parent"]
