"""The bus connection: topology, idempotent publishing, payload offload, decoding."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

import nats
import nats.errors
from google.protobuf.message import DecodeError, Message
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError, ObjectNotFoundError
from opentelemetry.trace import SpanKind, Status, StatusCode

from evolver.bus import spans, topology, trace_context
from evolver.bus._replies import Replies
from evolver.bus.kv import KvStore
from evolver.config import Settings
from evolver.errors import PoisonMessage, Unavailable

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
PAYLOAD_REF = "Evolver-Payload-Ref"
PAYLOAD_DIGEST = "Evolver-Payload-Digest"


def is_bus_failure(e: BaseException) -> bool:
    """A NATS client error (no connection, a timeout, a JetStream API error): the bus failed,
    not the caller's logic. Lets callers ride out outages without importing nats-py."""
    return isinstance(e, nats.errors.Error)


def message_id(subject: str, key: str) -> str:
    """Deterministic id from the business key: a retried publish is stored once."""
    if not key:
        raise ValueError("a publish needs a non-empty business key")
    return f"{subject}:{key}"


@dataclass(slots=True)
class Event:
    """One message as a reader sees it: decoded into its declared type, or, when it cannot be,
    `message` None and `error` saying why (a reader skips or shows it; it never stops)."""

    subject: str
    message: Message | None
    error: str
    seq: int  # stream sequence; 0 for a live core delivery
    headers: dict[str, str]
    pending: int = 0  # messages after this one in the stream, when read from a stream
    stored_at: float = 0.0  # when the stream stored it (epoch seconds); 0 for a live core delivery


class Subscription:
    """What subscribe() returns: close() it when done."""

    def __init__(self, sub):
        self._sub = sub

    async def close(self) -> None:
        try:
            await self._sub.unsubscribe()
        except Exception:  # the connection may be gone already
            pass


@dataclass(slots=True)
class Published:
    stream: str
    seq: int
    duplicate: bool
    msg_id: str


class Bus:
    """One NATS connection with JetStream. Services hold one each."""

    def __init__(self, nc: nats.NATS, settings: Settings):
        self.nc = nc
        self.js = nc.jetstream()
        self.replies = Replies(nc)
        self.settings = settings
        self._object_store = None
        self._name = ""
        # Connection health for the service's gRPC health status: `connected` is clear while
        # nats-py reconnects; `lost` is set when the connection closed for good (nats-py gives
        # up on some server errors) and the service must open a new one (reopen()).
        self.connected = asyncio.Event()
        self.connected.set()
        self.lost = asyncio.Event()
        self.generation = 0
        self._closing = False

    @classmethod
    async def connect(cls, settings: Settings, *, name: str) -> "Bus":
        holder: list[Bus] = []
        nc = await cls._open(settings, name, _callbacks(holder, 0))
        bus = cls(nc, settings)
        holder.append(bus)
        bus._name = name
        await bus.replies.start()
        return bus

    async def reopen(self) -> None:
        """A new connection in place of a closed one; every handle taken from the bus (KV
        buckets, workers' subscriptions) follows it."""
        nc = await self._open(self.settings, self._name, _callbacks([self], self.generation + 1))
        self.nc, self.js, self.replies = nc, nc.jetstream(), Replies(nc)
        self._object_store = None
        self.generation += 1
        await self.replies.start()
        self.lost.clear()
        self.connected.set()

    @staticmethod
    async def _open(settings: Settings, name: str, callbacks: dict) -> nats.NATS:
        s = settings.nats
        opts: dict = dict(servers=[s.url], name=name, connect_timeout=s.connect_timeout_s,
                          max_reconnect_attempts=-1, drain_timeout=settings.bus.drain_timeout_s,
                          allow_reconnect=True, **callbacks)
        if s.creds_file:
            opts["user_credentials"] = s.creds_file
        if s.user:
            opts["user"], opts["password"] = s.user, s.password or ""
        if s.tls_ca_file:
            import ssl

            opts["tls"] = ssl.create_default_context(cafile=s.tls_ca_file)
        # nats-py retries the *first* connect forever when reconnects are unlimited, so a wrong
        # URL would hang. Bound the first connect, then reconnect forever once the session is live.
        seen: list[str] = []

        async def on_error(e: Exception) -> None:
            seen.append(str(e) or type(e).__name__)
            await _log_error(e)
        try:
            nc = await nats.connect(**{**opts, "max_reconnect_attempts": 1}, reconnect_time_wait=0.5,
                                    error_cb=on_error)
        except Exception as e:  # nats raises several unrelated types for "cannot connect"
            cause = "; ".join(dict.fromkeys(seen)) if seen else (str(e) or type(e).__name__)
            raise Unavailable(f"cannot connect to NATS at {s.url}: {cause}") from e
        nc.options["max_reconnect_attempts"] = -1
        return nc

    async def close(self) -> None:
        # close(), not drain(): drain blocks on idle pull subscriptions (infra notes §1.7).
        self._closing = True
        if not self.nc.is_closed:
            await self.nc.close()

    # --- topology -------------------------------------------------------------------------------

    def _stream_config(self, spec: topology.StreamSpec) -> api.StreamConfig:
        return api.StreamConfig(
            name=spec.name, subjects=list(spec.subjects), description=spec.description or None,
            retention=api.RetentionPolicy.WORK_QUEUE if spec.work_queue else api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, max_age=spec.max_age_s or None,
            duplicate_window=self.settings.bus.duplicate_window_s,
            discard=api.DiscardPolicy.NEW if spec.work_queue else api.DiscardPolicy.OLD,
        )

    def consumer_config(self, spec: topology.ConsumerSpec) -> api.ConsumerConfig:
        b = self.settings.bus
        return api.ConsumerConfig(
            durable_name=spec.durable, filter_subject=spec.filter_subject,
            description=spec.description or None,
            ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=spec.ack_wait_s or b.ack_wait_s, max_deliver=spec.max_deliver or b.max_deliver,
            max_ack_pending=spec.max_ack_pending,
        )

    async def ensure_topology(self) -> None:
        """Creates or updates every stream, consumer and bucket. Safe to run from every replica."""
        for spec in topology.STREAMS:
            await self.ensure_stream(spec)
        for c in topology.CONSUMERS:
            await self.ensure_consumer(c)
        for bucket in topology.KV_BUCKETS:
            await self.kv(bucket)
        await self._payload_store()

    async def ensure_stream(self, spec: topology.StreamSpec) -> None:
        cfg = self._stream_config(spec)
        try:
            await self.js.add_stream(cfg)
        except BadRequestError as e:
            if e.err_code != 10058:  # exists with a different config: update in place
                raise
            await self.js.update_stream(cfg)

    async def ensure_consumer(self, spec: topology.ConsumerSpec) -> None:
        # add_consumer is create-or-update for mutable fields (ack_wait, max_deliver).
        await self.js.add_consumer(spec.stream.name, self.consumer_config(spec))

    async def kv(self, bucket: str) -> KvStore:
        """A key-value bucket (created on first use) behind the small KvStore interface. The
        store looks its bucket up again after a reopen()."""
        cache: dict[int, object] = {}

        async def handle():
            raw = cache.get(self.generation)
            if raw is None:
                try:
                    raw = await self.js.key_value(bucket)
                except (NotFoundError, BadRequestError):
                    raw = await self.js.create_key_value(api.KeyValueConfig(bucket=bucket, history=5))
                cache.clear()
                cache[self.generation] = raw
            return raw
        async def keys() -> list[str]:
            prefix = f"$KV.{bucket}."
            info = await self.js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
            return [subject[len(prefix):] for subject in (info.state.subjects or {})]
        await handle()
        return KvStore(handle, keys)

    async def _object_bucket(self, bucket: str):
        try:
            return await self.js.object_store(bucket)
        except (NotFoundError, BadRequestError):
            return await self.js.create_object_store(bucket)

    async def put_blob(self, bucket: str, name: str, data: bytes) -> tuple[str, int]:
        """Stores an artifact (adapter, checkpoint) in an Object Store bucket; returns
        ("sha256:<hex>", size)."""
        import hashlib
        await (await self._object_bucket(bucket)).put(name, data)
        return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)

    async def get_blob(self, bucket: str, name: str) -> bytes | None:
        from nats.js.errors import ObjectNotFoundError
        try:
            return (await (await self._object_bucket(bucket)).get(name)).data
        except ObjectNotFoundError:
            return None

    async def _payload_store(self):
        if self._object_store is None:
            try:
                self._object_store = await self.js.object_store(topology.PAYLOAD_BUCKET)
            except (NotFoundError, BadRequestError):
                self._object_store = await self.js.create_object_store(
                    topology.PAYLOAD_BUCKET, api.ObjectStoreConfig(
                        ttl=topology.PAYLOAD_TTL_S, description="bus payloads above the inline limit"))
        return self._object_store

    # --- publish / decode ----------------------------------------------------------------------

    async def publish(self, subject: str, message: Message, *, key: str,
                      headers: dict[str, str] | None = None, timeout: float = 5.0) -> Published:
        spec = topology.event_for(subject)
        if not isinstance(message, spec.message_type):
            raise TypeError(f"{subject} carries {spec.message_type.__name__}, not {type(message).__name__}")
        msg_id = message_id(subject, key)
        data = message.SerializeToString()
        hdrs = dict(headers or {})
        hdrs[MSG_ID] = msg_id
        # The span is started, not made current: nothing inside needs it current, and attaching
        # a context across the awaited PubAck measurably slows the hot path.
        span = spans.start(f"send {spec.subject}", SpanKind.PRODUCER, {
            "messaging.system": "nats", "messaging.operation.name": "send",
            "messaging.destination.name": subject, "messaging.message.id": msg_id})
        try:
            if len(data) >= self.settings.bus.inline_payload_limit:
                data = await self._offload(msg_id, data, hdrs)
            trace_context.inject_span(hdrs, span)
            # No stream= assertion: its Nats-Expected-Stream header would be stored with every
            # message and parsed by every consumer; the topology already fixes subject -> stream.
            ack = await self.replies.publish(subject, data, headers=hdrs, timeout=timeout)
        except BaseException as e:
            span.record_exception(e)
            span.set_status(Status(StatusCode.ERROR, str(e)))
            raise
        finally:
            span.end()
        return Published(ack["stream"], ack["seq"], bool(ack.get("duplicate")), msg_id)

    async def _offload(self, msg_id: str, data: bytes, headers: dict[str, str]) -> bytes:
        store = await self._payload_store()
        name = hashlib.sha256(msg_id.encode()).hexdigest()
        info = await store.put(name, data, meta=api.ObjectMeta(
            name=name, options=api.ObjectMetaOptions(max_chunk_size=256 * 1024)))
        headers[PAYLOAD_REF] = f"{topology.PAYLOAD_BUCKET}/{info.name}"
        headers[PAYLOAD_DIGEST] = "sha256:" + hashlib.sha256(data).hexdigest()
        return b""

    async def payload_bytes(self, data: bytes, headers: dict[str, str] | None) -> bytes:
        """The message body, fetched from the Object Store when it travelled as a pointer."""
        ref = (headers or {}).get(PAYLOAD_REF)
        if not ref:
            return data
        bucket, _, name = ref.partition("/")
        if bucket != topology.PAYLOAD_BUCKET or not name:
            raise PoisonMessage(f"bad {PAYLOAD_REF} header: {ref!r}")
        store = await self._payload_store()
        try:
            result = await store.get(name)
        except ObjectNotFoundError:
            raise PoisonMessage(f"offloaded payload {ref} is gone (expired or deleted)") from None
        body = result.data
        want = (headers or {}).get(PAYLOAD_DIGEST, "")
        if want and want != "sha256:" + hashlib.sha256(body).hexdigest():
            raise PoisonMessage(f"offloaded payload {ref} does not match its digest")
        return body

    # --- reading -----------------------------------------------------------------------------

    async def event(self, msg) -> Event:
        """A nats-py message as an Event (dead letters decode as their original subject)."""
        headers = msg.headers or {}
        base = msg.subject[len("dead."):] if msg.subject.startswith("dead.") else msg.subject
        try:
            message, error = await self.decode(base, msg.data, headers), ""
        except PoisonMessage as e:
            message, error = None, str(e)
        try:
            md = msg.metadata
            seq, pending = md.sequence.stream, md.num_pending
            stored_at = md.timestamp.timestamp() if md.timestamp else 0.0
        except Exception:  # a core delivery carries no stream metadata
            seq, pending, stored_at = 0, 0, 0.0
        return Event(msg.subject, message, error, seq, headers, pending, stored_at)

    async def subscribe(self, subject: str, handler, *, stream: topology.StreamSpec | None = None,
                        from_start: bool = False) -> Subscription:
        """handler(Event) for each message on `subject`. Without a stream: a live core
        subscription (it takes nothing from any consumer: how work queues are watched). With a
        stream: an ordered ephemeral consumer, from the start or from now; it changes nothing
        either."""
        async def on_msg(msg) -> None:
            await handler(await self.event(msg))
        if stream is None:
            return Subscription(await self.nc.subscribe(subject, cb=on_msg))
        policy = api.DeliverPolicy.ALL if from_start else api.DeliverPolicy.NEW
        return Subscription(await self.js.subscribe(subject, stream=stream.name, cb=on_msg, ordered_consumer=True,
                                                    deliver_policy=policy))

    async def replay(self, subject: str, stream: topology.StreamSpec, *, idle_s: float = 1.0):
        """Every stored message on `subject`, oldest first, until caught up (or idle_s without
        one); an async iterator of Events."""
        sub = await self.js.subscribe(subject, stream=stream.name, ordered_consumer=True,
                                      deliver_policy=api.DeliverPolicy.ALL)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=idle_s)
                except (TimeoutError, asyncio.TimeoutError):
                    return
                event = await self.event(msg)
                yield event
                if event.pending == 0:
                    return
        finally:
            await sub.unsubscribe()

    async def read_event(self, stream: topology.StreamSpec, seq: int) -> Event:
        """The message stored at `seq` in `stream`; NotFound when it is gone."""
        from evolver.errors import NotFound
        try:
            raw = await self.js.get_msg(stream.name, seq)
        except NotFoundError:
            raise NotFound(f"no message {seq} in stream {stream.name}") from None
        headers = raw.headers or {}
        try:
            message, error = await self.decode(raw.subject, raw.data or b"", headers), ""
        except PoisonMessage as e:
            message, error = None, str(e)
        return Event(raw.subject, message, error, seq, headers)

    async def decode(self, subject: str, data: bytes, headers: dict[str, str] | None) -> Message:
        """Parses a payload into its declared type; PoisonMessage when it cannot be."""
        try:
            spec = topology.event_for(subject)
        except KeyError as e:
            raise PoisonMessage(str(e)) from None
        body = await self.payload_bytes(data, headers) if headers and PAYLOAD_REF in headers else data
        message = spec.message_type()
        try:
            message.ParseFromString(body)
        except DecodeError as e:
            raise PoisonMessage(f"payload is not a valid {spec.message_type.DESCRIPTOR.full_name}: {e}") from None
        return message


def _callbacks(holder: list, generation: int) -> dict:
    """nats-py connection callbacks that keep Bus.connected / Bus.lost true to the connection of
    this generation (a superseded connection's late callbacks change nothing)."""
    def current():
        return holder[0] if holder and holder[0].generation == generation else None

    async def disconnected() -> None:
        if (bus := current()) is not None:
            bus.connected.clear()

    async def reconnected() -> None:
        if (bus := current()) is not None:
            bus.connected.set()

    async def closed() -> None:
        bus = current()
        if bus is not None and not bus._closing:
            log.error("bus: the NATS connection closed (%s); reopening", bus.nc.last_error)
            bus.connected.clear()
            bus.lost.set()
    return {"disconnected_cb": disconnected, "reconnected_cb": reconnected, "closed_cb": closed}


async def _log_error(e: Exception) -> None:
    log.debug("nats: %s", e)
