"""Environment data <-> protobuf (used only by the server and client)."""

from __future__ import annotations

import json

from evolver.envs.base import Call, CallResult, SeedTask, Tool
from evolver.v1 import environment_pb2 as env_pb
from evolver.v1 import trajectory_pb2 as traj_pb


def tool_to_pb(t: Tool) -> env_pb.ToolSchema:
    return env_pb.ToolSchema(name=t.name, description=t.description, parameters_json_schema=json.dumps(t.parameters),
                             toolset=t.toolset)


def tool_from_pb(t: env_pb.ToolSchema) -> Tool:
    return Tool(t.name, t.description, json.loads(t.parameters_json_schema or "{}"), t.toolset)


def seed_to_pb(s: SeedTask) -> env_pb.SeedTask:
    return env_pb.SeedTask(seed_task_id=s.seed_task_id, split=s.split, user_turns=list(s.user_turns),
                           initial_state_json=json.dumps(s.initial_state), involved_classes=list(s.toolsets))


def seed_from_pb(s: env_pb.SeedTask) -> SeedTask:
    return SeedTask(s.seed_task_id, s.split, tuple(s.user_turns), json.loads(s.initial_state_json or "{}"),
                    tuple(s.involved_classes))


def call_to_pb(c: Call) -> traj_pb.ToolCall:
    return traj_pb.ToolCall(call_id=c.call_id, name=c.name, arguments_json=json.dumps(c.arguments))


def result_to_pb(r: CallResult) -> traj_pb.Observation:
    kind = traj_pb.OBSERVATION_KIND_TOOL_ERROR if r.is_error else traj_pb.OBSERVATION_KIND_RESULT
    return traj_pb.Observation(call_id=r.call_id, kind=kind, content=r.content)


def result_from_pb(o: traj_pb.Observation) -> CallResult:
    return CallResult(o.call_id, o.content, o.kind != traj_pb.OBSERVATION_KIND_RESULT)
