"""Cross-episode batching: the trajectories of a group run concurrently, and the generation
requests they make at about the same time go to the backend as one batch (on CPU a batch of 8
decodes ~5x faster per token than 8 single requests: docs/BENCHMARKS.md, generation)."""

from __future__ import annotations

import asyncio
from typing import Sequence

from evolver.models.backend import Completion, GenerationRequest


class BatchingBackend:
    """Wraps a PolicyBackend. Requests arriving within `window_s` of each other (up to
    `max_batch`) are generated together; everything else (tokenizer, policy version, adapter
    swaps) is the wrapped backend's."""

    def __init__(self, backend, *, max_batch: int = 8, window_s: float = 0.02):
        self.inner = backend
        self.max_batch, self.window_s = max_batch, window_s
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches sent, for tests and metrics
        self.dropped = 0  # requests whose caller gave up before their batch started

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def policy_version(self) -> int:
        return self.inner.policy_version

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name="batching-backend")
        futures = []
        for r in requests:
            fut = asyncio.get_running_loop().create_future()
            await self._queue.put((r, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        while True:
            pending = [await self._queue.get()]
            await asyncio.sleep(self.window_s)  # let the other episodes' turns arrive
            while len(pending) < self.max_batch and not self._queue.empty():
                pending.append(self._queue.get_nowait())
            # A caller that gave up while its request queued (an LLM role's deadline) gets no
            # generation: on a busy CPU the timed-out requests would otherwise still be decoded.
            self.dropped += sum(fut.cancelled() for _, fut in pending)
            pending = [(r, fut) for r, fut in pending if not fut.cancelled()]
            if not pending:
                continue
            self.batches.append(len(pending))
            try:
                results = await self.inner.generate([r for r, _ in pending])
            except Exception as e:  # noqa: BLE001 - every waiting caller gets the failure
                for _, fut in pending:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), c in zip(pending, results):
                if not fut.done():
                    fut.set_result(c)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
