"""AttributorService over gRPC: requests in, the attributor's domain (attribution.py) does the work."""

from __future__ import annotations

from evolver.v1 import attributor_service_pb2 as pb
from evolver.v1 import attributor_service_pb2_grpc as pb_grpc
from services.attributor.attribution import Attributor


class AttributorServicer(pb_grpc.AttributorServiceServicer):
    def __init__(self, attributor: Attributor):
        self.attributor = attributor

    async def Attribute(self, request: pb.AttributeRequest, context) -> pb.AttributeResponse:
        return pb.AttributeResponse(attribution=await self.attributor.attribute_one(request.task, request.trajectory))
