"""Trainer gRPC surface. WatchRun streams a run's progress events; starting runs arrives with the
self-evolving loop issue (until then GetRun finds nothing)."""

from __future__ import annotations

import asyncio

from nats.js import api

from evolver.bus import Bus
from evolver.errors import InvalidArgument, NotFound
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import trainer_service_pb2 as pb
from evolver.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer.progress import is_terminal


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    def __init__(self, bus: Bus | None = None):
        self.bus = bus

    async def GetRun(self, request: pb.GetRunRequest, context) -> pb.GetRunResponse:
        if not request.run_id:
            raise InvalidArgument("run_id", "must be non-empty")
        raise NotFound(f"run {request.run_id!r} does not exist")

    async def WatchRun(self, request: pb.WatchRunRequest, context):
        """Replays the run's progress from the start, then follows it live, until a terminal
        phase or the client cancels. An ordered ephemeral consumer: watching takes nothing from
        anyone else."""
        if not request.run_id:
            raise InvalidArgument("run_id", "must be non-empty")
        queue: asyncio.Queue = asyncio.Queue()

        async def on_msg(msg) -> None:
            await queue.put(msg)

        sub = await self.bus.js.subscribe("run.progress", stream="EVENTS", cb=on_msg, ordered_consumer=True,
                                          deliver_policy=api.DeliverPolicy.ALL)
        try:
            while True:
                msg = await queue.get()
                progress = await self.bus.decode(msg.subject, msg.data, msg.headers)
                if progress.run_id != request.run_id:
                    continue
                yield pb.WatchRunResponse(progress=progress)
                if is_terminal(progress.phase):
                    return
        finally:  # also on client cancellation
            await sub.unsubscribe()


async def build(ctx: ServiceContext) -> ServiceParts:
    return ServiceParts([Registration("evolver.v1.TrainerService", TrainerServicer(ctx.bus),
                                      pb_grpc.add_TrainerServiceServicer_to_server)])
