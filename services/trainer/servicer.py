"""Trainer gRPC surface. Runs arrive with the self-evolving loop issue; until then GetRun finds
nothing."""

from __future__ import annotations

from evolver.errors import InvalidArgument, NotFound
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import trainer_service_pb2 as pb
from evolver.v1 import trainer_service_pb2_grpc as pb_grpc


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    async def GetRun(self, request: pb.GetRunRequest, context) -> pb.GetRunResponse:
        if not request.run_id:
            raise InvalidArgument("run_id", "must be non-empty")
        raise NotFound(f"run {request.run_id!r} does not exist")


async def build(ctx: ServiceContext) -> ServiceParts:
    return ServiceParts([Registration("evolver.v1.TrainerService", TrainerServicer(),
                                      pb_grpc.add_TrainerServiceServicer_to_server)])
