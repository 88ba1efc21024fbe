"""Request/reply for the bus hot path: PubAcks and confirmed acks.

Every publish waits for a PubAck and every handled message for its ack confirmation, so this
round trip runs twice per event. nats-py's `request` costs 13-26 us more CPU per call than this
(bench/bus_throughput.py --breakdown): a NUID plus random hex per token, `asyncio.wait_for`,
subject validation, a dataclass built field by field from the PubAck. At 1 KiB that is as much
as the rest of our layer.
`Replies` keeps the same shape - one wildcard reply subscription per connection, replies matched
by token - with a counter for tokens and one timer per request, and raises the same nats-py
errors: `TimeoutError`, `NoRespondersError`, `NoStreamResponseError`, `APIError`.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import nats
from nats.errors import NoRespondersError, NotJSMessageError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NoStreamResponseError

_NO_RESPONDERS = "503"


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(NatsTimeout())


class Replies:
    """One reply subscription per connection; nats-py re-subscribes it after a reconnect."""

    def __init__(self, nc: nats.NATS):
        self.nc = nc
        self._pending: dict[str, asyncio.Future] = {}
        self._tokens = itertools.count()
        self._prefix = ""

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def _on_reply(self, msg) -> None:
        future = self._pending.pop(msg.subject[len(self._prefix):], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def request(self, subject: str, payload: bytes, *, headers: dict[str, str] | None = None,
                      timeout: float):
        """Publishes with a reply subject and returns the reply; NatsTimeout when none comes in
        time, NoRespondersError when nothing listens on `subject`."""
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending[token] = future
        timer = None
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            timer = loop.call_later(timeout, _expire, future)
            msg = await future
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(token, None)
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS and not msg.data:
            raise NoRespondersError
        return msg

    async def publish(self, subject: str, payload: bytes, *, headers: dict[str, str] | None,
                      timeout: float) -> dict:
        """A JetStream publish; returns the PubAck as sent (stream, seq, duplicate, ...)."""
        try:
            msg = await self.request(subject, payload, headers=headers, timeout=timeout)
        except NoRespondersError:
            raise NoStreamResponseError from None
        ack = json.loads(msg.data)
        if "error" in ack:
            raise APIError.from_error(ack["error"])
        return ack

    async def ack(self, msg, timeout: float = 1.0) -> None:
        """`msg.ack_sync()`: acks a JetStream message and waits for the server to confirm."""
        if not msg.reply:
            raise NotJSMessageError
        await self.request(msg.reply, b"+ACK", timeout=timeout)
