"""Explorer gRPC surface. Exploration and rollouts arrive with the environment and policy
issues; until then the generated base class answers UNIMPLEMENTED for them."""

from __future__ import annotations

from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import explorer_service_pb2_grpc as pb_grpc


class ExplorerServicer(pb_grpc.ExplorerServiceServicer):
    pass


async def build(ctx: ServiceContext) -> ServiceParts:
    return ServiceParts([Registration("evolver.v1.ExplorerService", ExplorerServicer(),
                                      pb_grpc.add_ExplorerServiceServicer_to_server)])
