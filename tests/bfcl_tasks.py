"""A synthetic BFCL task built the way task_gen builds them, for agent, rollout and attribution
tests (any EnvironmentClient: in-process or over gRPC)."""

from __future__ import annotations

import json

from evolver.envs.base import Call
from evolver.envs.client import EnvironmentClient
from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb


def call(name, **args) -> str:
    """A model turn that calls one tool."""
    return f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(args)}}}</tool_call>'


async def mkdir_task(env: EnvironmentClient) -> task_pb2.Task:
    """Replay the reference in a fresh instance started from the seed, record initial and end states."""
    seed = "multi_turn_base_0"
    query = 'Please create a new directory (mkdir with dir_name "reports").'
    ep = await env.create(seed_task_id=seed, query_override=query)
    initial, _ = await ep.state()
    await ep.step([Call("mkdir", {"dir_name": "reports"}, "c0")])
    end, _ = await ep.state()
    await ep.release()
    return task_pb2.Task(task_id="syn-test-mkdir", env_id="bfcl", source=task_pb2.TASK_SOURCE_SYNTHETIC, split="train",
                         query=query, initial_state_json=json.dumps(initial), reference_end_state_json=json.dumps(end),
                         reference_solution=[tpb.ToolCall(call_id="c0", name="mkdir",
                                                          arguments_json='{"dir_name": "reports"}')],
                         provenance=task_pb2.TaskProvenance(env_id="bfcl", seed_task_id=seed))


from evolver.envs.bfcl import BfclEnvironment  # noqa: E402


class OpaqueBfcl(BfclEnvironment):
    """BFCL that does not expose its state (GetState: FAILED_PRECONDITION), for the paths an
    opaque user environment takes. Module level: instance workers get it by pickling."""
    state_visible = False
