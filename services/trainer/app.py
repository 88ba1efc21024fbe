"""Wiring: the trainer's runs (resumed at start), its servicer and the rollout index handler."""

from __future__ import annotations

import asyncio

from evolver.bus import topology
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer.collection import GroupArrivals
from services.trainer.handlers import handlers
from services.trainer.run_loop import default_updater_factory
from services.trainer.runs import Runs
from services.trainer.servicer import TrainerServicer


async def build(ctx: ServiceContext) -> ServiceParts:
    arrivals = GroupArrivals()  # the consumer below wakes the run loops' waits
    runs = Runs(ctx, default_updater_factory(ctx.settings), arrivals)

    async def resume(stop: asyncio.Event) -> None:
        await runs.resume_all()
        await stop.wait()
        await runs.close()

    return ServiceParts([Registration("evolver.v1.TrainerService", TrainerServicer(runs),
                                      pb_grpc.add_TrainerServiceServicer_to_server)],
                        handlers=handlers(await ctx.bus.kv(topology.ROLLOUT_INDEX_BUCKET), arrivals),
                        background=[resume])
