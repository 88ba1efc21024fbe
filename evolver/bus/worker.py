"""The durable pull-consumer loop every service uses.

Per message: decode into the declared protobuf type, run the handler inside a CONSUMER span that
continues the publisher's trace, then
  - success           -> ack (confirmed by the server)
  - PoisonMessage     -> copy to the dead-letter stream with the reason, then term
  - any other error   -> nak(delay) with exponential backoff (plain nak ignores the consumer's
                         backoff and redelivers at once), or dead-letter on the final attempt.
Long handlers send in_progress heartbeats so ack_wait only fires when the process is gone; a
process killed mid-handler leaves its message unacked and another replica gets it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable

from google.protobuf.message import Message
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind, Status, StatusCode

from evolver.bus import spans, topology, trace_context
from evolver.bus.client import MSG_ID, Bus
from evolver.errors import InvalidArgument, PoisonMessage
from evolver.limits import check_message

log = logging.getLogger(__name__)

DLQ_REASON = "Dlq-Reason"


def retry_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Delay before redelivering after the given (1-based) failed attempt."""
    return min(cap_s, base_s * (2 ** max(0, attempt - 1)))


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class Delivery:
    """What a handler sees: the decoded message and its delivery facts, no NATS objects.
    (Not frozen: frozen dataclasses cost ~2 us per message to build on the hot path.)"""

    subject: str
    message: Message
    msg_id: str
    attempt: int
    stream_seq: int
    headers: dict[str, str]


Handler = Callable[[Delivery], Awaitable[None]]


async def dead_letter(bus: Bus, *, subject: str, data: bytes, headers: dict[str, str] | None,
                      reason: str, stream: str, stream_seq: int, consumer: str, deliveries: int) -> None:
    """Copies a message to dead.<subject>, keeping its payload and headers (trace context too)."""
    hdrs = dict(headers or {})
    hdrs.update({DLQ_REASON: reason[:2000], "Dlq-Stream": stream, "Dlq-Stream-Seq": str(stream_seq),
                 "Dlq-Consumer": consumer, "Dlq-Deliveries": str(deliveries),
                 "Dlq-Original-Msg-Id": hdrs.get(MSG_ID, ""),
                 # One copy per failing consumer: several consumers can dead-letter one message.
                 MSG_ID: f"dlq:{stream}:{stream_seq}:{consumer}"})
    await bus.js.publish(f"dead.{subject}", data, headers=hdrs, stream=topology.DEAD.name)


class Worker:
    """Runs one handler over one durable consumer until `stop` is set.

    `concurrency` messages are fetched and handled at once; every replica binding the same
    durable competes for messages (load-balanced, no duplicates)."""

    def __init__(self, bus: Bus, consumer: topology.ConsumerSpec, handler: Handler, *, concurrency: int | None = None):
        self.bus = bus
        self.spec = consumer
        self.handler = handler
        cfg = bus.consumer_config(consumer)
        self.ack_wait_s = float(cfg.ack_wait)
        self.max_deliver = int(cfg.max_deliver)
        self.concurrency = concurrency or bus.settings.bus.fetch_batch
        self.handled = 0
        # Messages whose handler is running; one heartbeat task keeps them all alive (a task
        # per message costs more than the rest of the bus layer at small payloads).
        self._in_flight: dict[int, object] = {}

    async def run(self, stop: asyncio.Event) -> None:
        b = self.bus.settings.bus
        # Fetch must return well before ack_wait or fetched messages time out while waiting.
        fetch_timeout = min(b.fetch_timeout_s, self.ack_wait_s / 3)
        heartbeat = asyncio.create_task(self._heartbeat())
        # `concurrency` slots: a fetch asks for as many messages as slots are free, and each
        # message frees its slot when handled, so one slow job never holds the others back.
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task] = set()

        async def free_slots() -> int:
            await slots.acquire()  # at least one
            n = 1
            while n < self.concurrency and not slots.locked():
                await slots.acquire()
                n += 1
            return n

        def done(task: asyncio.Task) -> None:
            running.discard(task)
            slots.release()

        async def on_batch(msgs, asked: int) -> None:
            for _ in range(asked - len(msgs)):
                slots.release()
            for m in msgs:
                task = asyncio.create_task(self._process(m))
                running.add(task)
                task.add_done_callback(done)
        try:
            await pull_batches(self.bus, self.spec, free_slots, fetch_timeout, stop, on_batch)
            if running:  # stopping: handlers in flight finish (the caller bounds how long)
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            for task in running:
                task.cancel()
            heartbeat.cancel()

    async def _process(self, msg) -> None:
        md = msg.metadata
        attempt, seq = md.num_delivered, md.sequence.stream
        headers = msg.headers or {}
        # The publisher's span is this span's parent, which already ties it to its creation
        # context; semconv's link is only needed when the parent is something else.
        parent = trace_context.extract(headers)
        self._in_flight[id(msg)] = msg
        msg_id = headers.get(MSG_ID, "")
        span = spans.start(f"process {msg.subject}", SpanKind.CONSUMER, {
            "messaging.system": "nats", "messaging.operation.name": "process",
            "messaging.destination.name": msg.subject, "messaging.consumer.group.name": self.spec.durable,
            "messaging.message.id": msg_id, "messaging.nats.num_delivered": attempt}, parent)
        token = spans.attach(span)  # the handler's own spans are its children
        try:
            message = await self.bus.decode(msg.subject, msg.data, headers)
            try:  # ids become KV keys and subjects: a bad one must never reach NATS
                check_message(message)
            except InvalidArgument as e:
                raise PoisonMessage(f"out of bounds: {e}") from None
            await self.handler(Delivery(msg.subject, message, msg_id, attempt, seq, headers))
        except PoisonMessage as e:
            span.set_status(Status(StatusCode.ERROR, str(e)))
            span.set_attribute("error.type", "poison")
            await self._dead_letter(msg, f"poison: {e}", attempt)
        except Exception as e:
            span.record_exception(e)
            span.set_status(Status(StatusCode.ERROR, str(e)))
            span.set_attribute("error.type", type(e).__name__)
            if attempt >= self.max_deliver:
                await self._dead_letter(msg, f"failed {attempt} deliveries; last error: {type(e).__name__}: {e}", attempt)
            else:
                delay = retry_delay(attempt, self.bus.settings.bus.retry_base_s, self.bus.settings.bus.retry_max_s)
                log.warning("%s: seq %d attempt %d failed (%s: %s); retry in %.1fs",
                            self.spec.durable, seq, attempt, type(e).__name__, e, delay)
                await msg.nak(delay=delay)
        except BaseException as e:  # cancelled at shutdown: the message stays unacked, redelivered
            span.record_exception(e, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(e).__name__}: {e}"))
            raise
        else:
            await self.bus.replies.ack(msg)
            self.handled += 1
        finally:
            spans.detach(token)
            span.end()
            self._in_flight.pop(id(msg), None)

    async def _dead_letter(self, msg, reason: str, attempt: int) -> None:
        # Copy first: on a WorkQueue stream term() deletes the message.
        md = msg.metadata
        await dead_letter(self.bus, subject=msg.subject, data=msg.data, headers=msg.headers, reason=reason,
                          stream=md.stream, stream_seq=md.sequence.stream, consumer=self.spec.durable,
                          deliveries=attempt)
        log.error("%s: seq %d dead-lettered: %s", self.spec.durable, md.sequence.stream, reason)
        await msg.term()

    async def _heartbeat(self) -> None:
        """Every ack_wait/3, tells the server each running handler is alive, so ack_wait only
        expires when the process is gone."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            for msg in list(self._in_flight.values()):
                try:
                    await msg.in_progress()
                except Exception as e:
                    log.debug("heartbeat failed: %s", e)


class DeadLetterSweeper:
    """Dead-letters messages that ran out of deliveries without the handler getting to decide:
    the process died (or hung past ack_wait) on the final attempt. The server then only emits a
    MAX_DELIVERIES advisory, which the topology captures in a stream."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.spec = topology.consumer("dead-letter-sweeper")
        self.swept = 0

    async def handle_advisory(self, data: bytes) -> None:
        ev = json.loads(data)
        stream, seq = ev["stream"], int(ev["stream_seq"])
        try:
            orig = await self.bus.js.get_msg(stream, seq)
        except NotFoundError:
            return  # already gone (acked late, or expired)
        await dead_letter(self.bus, subject=orig.subject, data=orig.data or b"", headers=orig.headers,
                          reason=f"max deliveries ({ev.get('deliveries')}) reached without ack: handler crashed or hung",
                          stream=stream, stream_seq=seq, consumer=ev.get("consumer", ""), deliveries=int(ev.get("deliveries", 0)))
        if any(s.name == stream and s.work_queue for s in topology.STREAMS):
            # A WorkQueue keeps max-delivered messages until deleted.
            await self.bus.js.delete_msg(stream, seq)
        self.swept += 1

    async def run(self, stop: asyncio.Event) -> None:
        async def on_batch(msgs, asked: int) -> None:
            for m in msgs:
                try:
                    await self.handle_advisory(m.data)
                    await m.ack()
                except Exception as e:
                    log.warning("sweeper: advisory failed (%s)", e)
                    await m.nak(delay=5)

        async def eight() -> int:
            return 8
        await pull_batches(self.bus, self.spec, eight, self.bus.settings.bus.fetch_timeout_s, stop, on_batch)


async def pull_batches(bus: Bus, spec: topology.ConsumerSpec, batch, fetch_timeout: float,
                       stop: asyncio.Event, on_batch) -> None:
    """Binds to a durable pull consumer and hands each fetched batch to on_batch(msgs, asked)
    until `stop`; `batch()` says how many to ask for (it may wait for room). Binding failures
    (consumer not created yet, NATS restarting, a reopened connection) and broken subscriptions
    (server restart, nats.py #504) are retried by rebinding; nothing is acked here."""
    while not stop.is_set():
        try:
            sub = await bus.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream.name)
        except Exception as e:
            log.warning("%s: cannot bind (%s); retrying", spec.durable, e)
            await _sleep_or_stop(stop, 1.0)
            continue
        try:
            while not stop.is_set():
                asked = await batch()
                try:
                    msgs = await sub.fetch(asked, timeout=fetch_timeout)
                except (NatsTimeout, TimeoutError):
                    # Nothing pending (nats-py raises instead of returning []); a plain
                    # TimeoutError when a busy event loop let the client-side wait expire first.
                    await on_batch([], asked)
                    continue
                except BaseException:
                    await on_batch([], asked)
                    raise
                await on_batch(msgs, asked)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("%s: fetch loop error (%s: %s); rebinding", spec.durable, type(e).__name__, e)
            await _sleep_or_stop(stop, 0.5)
        finally:
            try:
                await sub.unsubscribe()
            except Exception:
                pass


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
