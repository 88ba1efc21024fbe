"""TaskGen gRPC surface: the environment registry. Task synthesis and the pool arrive with the
self-evolving loop issue; until then GetTask finds nothing."""

from __future__ import annotations

from evolver.bus import topology
from evolver.envs.client import check_conformance
from evolver.errors import InvalidArgument, NotFound
from evolver.rpc import Registration
from evolver.service import ServiceContext, ServiceParts
from evolver.v1 import environment_pb2 as env_pb
from evolver.v1 import task_gen_service_pb2 as pb
from evolver.v1 import task_gen_service_pb2_grpc as pb_grpc
from services.task_gen.registry import EnvironmentRegistry

BUILTIN_IDS = {"bfcl"}


class TaskGenServicer(pb_grpc.TaskGenServiceServicer):
    def __init__(self, registry: EnvironmentRegistry):
        self.registry = registry

    async def RegisterEnvironment(self, request: pb.RegisterEnvironmentRequest, context) -> pb.RegisterEnvironmentResponse:
        kind = env_pb.ENVIRONMENT_KIND_BUILTIN if request.env_id in BUILTIN_IDS else env_pb.ENVIRONMENT_KIND_USER
        spec = await self.registry.register(request.env_id, request.address, request.display_name, kind)
        return pb.RegisterEnvironmentResponse(environment=spec)

    async def ListEnvironments(self, request: pb.ListEnvironmentsRequest, context) -> pb.ListEnvironmentsResponse:
        return pb.ListEnvironmentsResponse(environments=await self.registry.list())

    async def GetTask(self, request: pb.GetTaskRequest, context) -> pb.GetTaskResponse:
        if not request.task_id:
            raise InvalidArgument("task_id", "must be non-empty")
        raise NotFound(f"task {request.task_id!r} is not in the pool")


async def build(ctx: ServiceContext) -> ServiceParts:
    registry = EnvironmentRegistry(await ctx.bus.kv(topology.ENVIRONMENTS_BUCKET), check_conformance)
    return ServiceParts([Registration("evolver.v1.TaskGenService", TaskGenServicer(registry),
                                      pb_grpc.add_TaskGenServiceServicer_to_server)])
