"""Attributor gRPC surface; step attribution arrives with the self-evolving loop issue."""

from __future__ import annotations

from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import attributor_service_pb2_grpc as pb_grpc


class AttributorServicer(pb_grpc.AttributorServiceServicer):
    pass


async def build(ctx: ServiceContext) -> ServiceParts:
    return ServiceParts([Registration("evolver.v1.AttributorService", AttributorServicer(),
                                      pb_grpc.add_AttributorServiceServicer_to_server)])
