"""TrainerService over gRPC: requests in, the trainer's domain (runs.py) does the work."""

from __future__ import annotations

from evolver.v1 import trainer_service_pb2 as pb
from evolver.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer.runs import Runs


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    def __init__(self, runs: Runs):
        self.runs = runs

    async def StartRun(self, request: pb.StartRunRequest, context) -> pb.StartRunResponse:
        return pb.StartRunResponse(run=await self.runs.start(request.run_id, request.config))

    async def GetRun(self, request: pb.GetRunRequest, context) -> pb.GetRunResponse:
        return pb.GetRunResponse(run=await self.runs.existing(request.run_id))

    async def StopRun(self, request: pb.StopRunRequest, context) -> pb.StopRunResponse:
        return pb.StopRunResponse(run=await self.runs.stop(request.run_id))

    async def WatchRun(self, request: pb.WatchRunRequest, context):
        async for progress in self.runs.watch(request.run_id):
            yield pb.WatchRunResponse(progress=progress)
