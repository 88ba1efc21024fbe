"""A small key-value interface over a JetStream KV bucket, so business logic stores and reads
bytes without touching NATS objects or exceptions."""

from __future__ import annotations

from nats.js.errors import KeyNotFoundError, NoKeysError


class KvStore:
    def __init__(self, bucket):
        self._bucket = bucket

    async def put(self, key: str, value: bytes) -> None:
        await self._bucket.put(key, value)

    async def get(self, key: str) -> bytes | None:
        try:
            entry = await self._bucket.get(key)
        except KeyNotFoundError:
            return None
        return entry.value

    async def delete(self, key: str) -> None:
        await self._bucket.delete(key)

    async def keys(self) -> list[str]:
        try:
            return sorted(await self._bucket.keys())
        except NoKeysError:
            return []
