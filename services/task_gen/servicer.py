"""TaskGen gRPC surface. The pool is filled by the self-evolving loop issue; until then GetTask
finds nothing."""

from __future__ import annotations

from evolver.errors import InvalidArgument, NotFound
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import task_gen_service_pb2 as pb
from evolver.v1 import task_gen_service_pb2_grpc as pb_grpc


class TaskGenServicer(pb_grpc.TaskGenServiceServicer):
    async def GetTask(self, request: pb.GetTaskRequest, context) -> pb.GetTaskResponse:
        if not request.task_id:
            raise InvalidArgument("task_id", "must be non-empty")
        raise NotFound(f"task {request.task_id!r} is not in the pool")


async def build(ctx: ServiceContext) -> ServiceParts:
    return ServiceParts([Registration("evolver.v1.TaskGenService", TaskGenServicer(),
                                      pb_grpc.add_TaskGenServiceServicer_to_server)])
