"""The Environment protocol from the caller's side. The explorer uses this for every
environment, built-in or a user's, so none is special-cased.

`EnvironmentClient` and `EpisodeClient` are what the agent runtime (evolver.agent) needs of an
environment; `RemoteEnvironment` implements them over gRPC and translates every status code into
a domain error (evolver.errors) here, once, so no caller branches on gRPC codes.
`evolver.envs.local.InProcessEnvironment` implements them without a transport."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Protocol, Sequence, TypeVar

import grpc

from evolver.envs import convert
from evolver.envs.arguments import schema_problems
from evolver.envs.base import Call, Score, SeedTask, StepOutcome, Tool
from evolver.errors import (DeadlineExceeded, EnvironmentFailure, EvolverError, FailedPrecondition, InvalidArgument,
                            NotFound, Unavailable)
from evolver.rpc import channel, stub
from evolver.v1 import environment_pb2 as pb
from evolver.v1 import environment_pb2_grpc as pb_grpc

SERVICE_NAME = "evolver.v1.EnvironmentService"
T = TypeVar("T")
# What an attempt cannot be blamed for: the environment (or the way to it) failed, not the policy.
INFRA_ERRORS = (Unavailable, DeadlineExceeded, EnvironmentFailure)


class EpisodeClient(Protocol):
    """One environment instance, from the caller's side (async; errors are evolver.errors)."""

    user_message: str
    tools: list[Tool]

    async def step(self, calls: Sequence[Call], assistant_text: str = "") -> StepOutcome: ...

    async def state(self) -> tuple[dict[str, Any], str]: ...

    async def evaluate(self) -> Score: ...

    async def release(self) -> None: ...


class EnvironmentClient(Protocol):
    async def tools(self, toolsets: Sequence[str] = ()) -> tuple[list[Tool], bool]: ...

    async def seed_tasks(self, split: str = "") -> list[SeedTask]: ...

    async def create(self, *, seed_task_id: str | None = None, initial_state: dict[str, Any] | None = None,
                     toolsets: Sequence[str] = (), query_override: str = "") -> EpisodeClient: ...


def domain_error(e: grpc.aio.AioRpcError, field: str = "environment") -> EvolverError:
    """The domain error an environment server's status stands for (so a caller's caller sees
    NOT_FOUND for an unknown seed task, not INTERNAL). `field` names the request field that led
    to an INVALID_ARGUMENT."""
    details = (e.details() or "")[:300]
    code = e.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(field, f"the environment refused it: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"environment: {details}")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(f"environment: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"environment DEADLINE_EXCEEDED: {details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return Unavailable(f"environment {code.name}: {details}")
    return EnvironmentFailure(f"environment {code.name}: {details}")


async def translated(call: Awaitable[T], field: str) -> T:
    """Awaits one environment RPC; a failure status comes back as the domain error it stands for."""
    try:
        return await call
    except grpc.aio.AioRpcError as e:
        raise domain_error(e, field) from None


@dataclass
class RemoteEpisode:
    env: "RemoteEnvironment"
    instance_id: str
    user_message: str
    tools: list[Tool]

    async def step(self, calls: Sequence[Call], assistant_text: str = "") -> StepOutcome:
        r = await translated(self.env.stub.Step(pb.StepRequest(
            instance_id=self.instance_id, assistant_text=assistant_text,
            tool_calls=[convert.call_to_pb(c) for c in calls])), "tool_calls")
        return StepOutcome([convert.result_from_pb(o) for o in r.observations], r.next_user_message, r.done)

    async def step_raw(self, tool_calls: list, assistant_text: str = "") -> pb.StepResponse:
        """Step with already-built protobuf calls (e.g. straight from a parsed model turn)."""
        return await translated(self.env.stub.Step(pb.StepRequest(
            instance_id=self.instance_id, assistant_text=assistant_text, tool_calls=tool_calls)), "tool_calls")

    async def state(self) -> tuple[dict[str, Any], str]:
        r = await translated(self.env.stub.GetState(pb.GetStateRequest(instance_id=self.instance_id)),
                             "instance_id")
        return json.loads(r.state_json), r.state_hash

    async def evaluate(self) -> Score:
        r = await translated(self.env.stub.Evaluate(pb.EvaluateRequest(instance_id=self.instance_id)),
                             "instance_id")
        return Score(r.score, r.success, json.loads(r.details_json or "{}"))

    async def release(self) -> None:
        await translated(self.env.stub.Release(pb.ReleaseRequest(instance_id=self.instance_id)), "instance_id")


class RemoteEnvironment:
    def __init__(self, address: str, *, deadline_s: float = 30.0):
        self.address = address
        self._channel = channel(address)
        self.stub = stub(pb_grpc.EnvironmentServiceStub, self._channel, deadline_s)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "RemoteEnvironment":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def tools(self, toolsets: Sequence[str] = ()) -> tuple[list[Tool], bool]:
        r = await translated(self.stub.ListTools(pb.ListToolsRequest(toolsets=list(toolsets))), "toolsets")
        return [convert.tool_from_pb(t) for t in r.tools], r.state_visible

    async def seed_tasks(self, split: str = "") -> list[SeedTask]:
        out, token = [], ""
        while True:
            r = await translated(self.stub.ListSeedTasks(
                pb.ListSeedTasksRequest(split=split, page_size=500, page_token=token)), "split")
            out.extend(convert.seed_from_pb(s) for s in r.tasks)
            token = r.next_page_token
            if not token:
                return out

    async def create(self, *, seed_task_id: str | None = None, initial_state: dict[str, Any] | None = None,
                     toolsets: Sequence[str] = (), query_override: str = "") -> RemoteEpisode:
        req = pb.CreateRequest(toolsets=list(toolsets), query_override=query_override)
        if seed_task_id:
            req.seed_task_id = seed_task_id
        elif initial_state is not None:
            req.initial_state_json = json.dumps(initial_state)
        r = await translated(self.stub.Create(req), "seed_task_id" if seed_task_id else "initial_state_json")
        return RemoteEpisode(self, r.instance_id, r.user_message, [convert.tool_from_pb(t) for t in r.tools])


async def check_conformance(address: str, *, timeout_s: float = 5.0) -> tuple[list[Tool], bool]:
    """Checks that a server answers and speaks the Environment protocol with usable tool
    schemas. Returns (tools, state_visible); raises Unavailable or FailedPrecondition saying why."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument("address", f"must be HOST:PORT, got {address!r}")
    # Only the protocol's own calls are required (a user's server need not offer gRPC health).
    async with RemoteEnvironment(address, deadline_s=timeout_s) as env:
        try:
            # Raw stub calls: conformance is judged on the status codes themselves.
            listing = await env.stub.ListTools(pb.ListToolsRequest())
            tools, visible = [convert.tool_from_pb(t) for t in listing.tools], listing.state_visible
            await env.stub.ListSeedTasks(pb.ListSeedTasksRequest(page_size=1))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise FailedPrecondition(f"the server at {address} does not implement {SERVICE_NAME}") from None
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"no Environment server answers at {address} ({e.code().name})") from None
            raise FailedPrecondition(f"the environment at {address} failed a conformance call: "
                                     f"{e.code().name}: {e.details()}") from None
        except json.JSONDecodeError:
            raise FailedPrecondition(f"the environment at {address} returned a tool schema that is not JSON") from None
    if not tools:
        raise FailedPrecondition(f"the environment at {address} lists no tools")
    problems = [f"{t.name}: {p}" for t in tools for p in schema_problems(t.parameters)]
    if problems:
        raise FailedPrecondition(f"the environment at {address} has invalid tool schemas: " + "; ".join(problems[:5]))
    return tools, visible

