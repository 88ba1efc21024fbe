"""The event bus: NATS JetStream behind a small surface.

    bus = await Bus.connect(settings, name="explorer"); await bus.ensure_topology()
    await bus.publish("rollout.completed", event, key=group_id)
    await Worker(bus, topology.consumer("memory-rollout-completed"), handler).run(stop)
"""

from evolver.bus import topology
from evolver.bus.client import Bus, Published, message_id
from evolver.bus.worker import DeadLetterSweeper, Delivery, Handler, Worker, dead_letter, retry_delay

__all__ = ["Bus", "DeadLetterSweeper", "Delivery", "Handler", "Published", "Worker", "dead_letter",
           "message_id", "retry_delay", "topology"]
