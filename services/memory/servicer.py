"""MemoryService over gRPC: requests in, the memory domain (memory.py) does the work."""

from __future__ import annotations

from evolver.v1 import experience_pb2 as exp_pb
from evolver.v1 import memory_service_pb2 as pb
from evolver.v1 import memory_service_pb2_grpc as pb_grpc
from services.memory.memory import Memory, to_pb


class MemoryServicer(pb_grpc.MemoryServiceServicer):
    def __init__(self, memory: Memory):
        self.memory = memory

    async def Retrieve(self, request: pb.RetrieveRequest, context) -> pb.RetrieveResponse:
        hits = await self.memory.retrieve(request.query, request.k, request.env_id)
        text, usage = await self.memory.rewrite(request.query, hits) if request.rewrite else ("", [])
        return pb.RetrieveResponse(experiences=[exp_pb.RetrievedExperience(experience=to_pb(e), similarity=s)
                                                for e, s in hits], rewritten_context=text, role_usage=usage)

    async def Stats(self, request: pb.StatsRequest, context) -> pb.StatsResponse:
        return pb.StatsResponse(**self.memory.counts())
