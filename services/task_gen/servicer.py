"""TaskGenService over gRPC: requests in, task_gen's domain (task_gen.py) does the work."""

from __future__ import annotations

from evolver.v1 import task_gen_service_pb2 as pb
from evolver.v1 import task_gen_service_pb2_grpc as pb_grpc
from services.task_gen.task_gen import TaskGen


class TaskGenServicer(pb_grpc.TaskGenServiceServicer):
    def __init__(self, task_gen: TaskGen):
        self.task_gen = task_gen

    async def RegisterEnvironment(self, request: pb.RegisterEnvironmentRequest, context) -> pb.RegisterEnvironmentResponse:
        spec = await self.task_gen.register(request.env_id, request.address, request.display_name,
                                            request.profile if request.HasField("profile") else None)
        return pb.RegisterEnvironmentResponse(environment=spec)

    async def UnregisterEnvironment(self, request: pb.UnregisterEnvironmentRequest,
                                    context) -> pb.UnregisterEnvironmentResponse:
        await self.task_gen.unregister(request.env_id)
        return pb.UnregisterEnvironmentResponse()

    async def ListEnvironments(self, request: pb.ListEnvironmentsRequest, context) -> pb.ListEnvironmentsResponse:
        return pb.ListEnvironmentsResponse(environments=await self.task_gen.environments())

    async def GenerateTasks(self, request: pb.GenerateTasksRequest, context) -> pb.GenerateTasksResponse:
        ids = await self.task_gen.request_explorations(
            request.env_id, explorations=request.explorations, walks_per_exploration=request.walks_per_exploration,
            max_steps_per_walk=request.max_steps_per_walk, max_calls_per_task=request.max_calls_per_task,
            seed=request.seed, requester_id=request.requester_id, task_writer=request.task_writer,
            explorer=request.explorer, feasibility=request.feasibility)
        return pb.GenerateTasksResponse(explore_request_ids=ids)

    async def ListTasks(self, request: pb.ListTasksRequest, context) -> pb.ListTasksResponse:
        found = await self.task_gen.tasks(request.env_id, request.source, request.split)
        return pb.ListTasksResponse(tasks=[t for t, _ in found], stats=[s for _, s in found])

    async def GetTask(self, request: pb.GetTaskRequest, context) -> pb.GetTaskResponse:
        task, stats = await self.task_gen.task(request.task_id)
        return pb.GetTaskResponse(task=task, stats=stats)
