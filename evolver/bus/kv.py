"""A small key-value interface over a JetStream KV bucket, so business logic stores and reads
bytes without touching NATS objects or exceptions."""

from __future__ import annotations

from nats.js.errors import KeyNotFoundError, NoKeysError


from evolver.errors import InvalidArgument
from evolver.limits import id_problem


class KvStore:
    """`bucket` is an async function returning the current nats-py bucket handle: after the bus
    reconnects (a new connection), the handle is looked up again."""

    def __init__(self, bucket, subjects=None):
        self._bucket = bucket
        self._subjects = subjects

    @staticmethod
    def _key(key: str) -> str:
        # A bad key is a bug upstream of here (ids are checked at the boundary); refusing it keeps
        # the NATS connection alive: the server closes a connection over a malformed subject.
        problem = id_problem(key) if key else "must be non-empty"
        if problem:
            raise InvalidArgument("key", problem)
        return key

    async def put(self, key: str, value: bytes) -> None:
        await (await self._bucket()).put(self._key(key), value)

    async def get(self, key: str) -> bytes | None:
        try:
            entry = await (await self._bucket()).get(self._key(key))
        except KeyNotFoundError:
            return None
        return entry.value

    async def delete(self, key: str) -> None:
        await (await self._bucket()).delete(self._key(key))

    async def keys(self) -> list[str]:
        """Keys with a value or a deletion marker (get() returns None for the latter). Read from
        the stream's subject list: nats-py's keys() leaves a consumer on the server for five
        minutes per call, and at 1,000 the server refuses new ones ('maximum consumers limit
        reached'): a ListTasks poll broke the task pool within minutes."""
        if self._subjects is None:
            try:
                return sorted(await (await self._bucket()).keys())
            except NoKeysError:
                return []
        return sorted(await self._subjects())
