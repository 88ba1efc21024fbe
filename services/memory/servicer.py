"""Memory gRPC surface. The experience store arrives with the self-evolving loop issue; until
then the store is empty, so Retrieve returns no experiences and Stats zeros."""

from __future__ import annotations

from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import memory_service_pb2 as pb
from evolver.v1 import memory_service_pb2_grpc as pb_grpc
from services.memory.retrieval import validate_retrieve


class MemoryServicer(pb_grpc.MemoryServiceServicer):
    async def Retrieve(self, request: pb.RetrieveRequest, context) -> pb.RetrieveResponse:
        validate_retrieve(request.query, request.k)
        return pb.RetrieveResponse()

    async def Stats(self, request: pb.StatsRequest, context) -> pb.StatsResponse:
        return pb.StatsResponse()


async def build(ctx: ServiceContext) -> ServiceParts:
    return ServiceParts([Registration("evolver.v1.MemoryService", MemoryServicer(),
                                      pb_grpc.add_MemoryServiceServicer_to_server)])
