"""ExplorerService over gRPC: requests in, the explorer's domain (explorer.py) does the work."""

from __future__ import annotations

from evolver.errors import InvalidArgument
from evolver.v1 import events_pb2
from evolver.v1 import explorer_service_pb2 as pb
from evolver.v1 import explorer_service_pb2_grpc as pb_grpc
from services.explorer.explorer import Explorer


class ExplorerServicer(pb_grpc.ExplorerServiceServicer):
    def __init__(self, explorer: Explorer):
        self.explorer = explorer

    async def Explore(self, request: pb.ExploreRequest, context) -> pb.ExploreResponse:
        req = events_pb2.ExploreRequested(request_id=f"rpc.{request.env_id}.{request.seed}", env_id=request.env_id,
                                          seed_task_id=request.seed_task_id, walks=request.walks,
                                          max_steps_per_walk=request.max_steps_per_walk, seed=request.seed)
        return pb.ExploreResponse(walks=await self.explorer.walks(req))

    async def Rollout(self, request: pb.RolloutRequest, context) -> pb.RolloutResponse:
        if not request.task.task_id:
            raise InvalidArgument("task.task_id", "must be non-empty")
        req = events_pb2.RolloutRequested(job_id=f"rpc.{request.task.task_id}", task=request.task,
                                          group_size=request.group_size, guided_share=request.guided_share,
                                          temperature=request.temperature)
        return pb.RolloutResponse(group=await self.explorer.rollout(req))
