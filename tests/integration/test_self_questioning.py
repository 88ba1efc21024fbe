"""Self-questioning across real services: task_gen asks for exploration, the explorer walks BFCL
through the Environment protocol, task_gen verifies candidates by replay and keeps them in the
durable pool."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from evolver.algorithms.rewards import synthetic_reward
from evolver.bus import Bus
from evolver.envs.base import Call
from evolver.envs.bfcl import BfclEnvironment
from evolver.envs.client import RemoteEnvironment
from evolver.envs.server import EnvironmentServicer
from evolver.rpc import GrpcServer, Registration, bad_request_fields, channel, stub
from evolver.service import ServiceRunner
from evolver.v1 import environment_pb2_grpc as env_grpc
from evolver.v1 import explorer_service_pb2 as ex
from evolver.v1 import explorer_service_pb2_grpc as ex_grpc
from evolver.v1 import task_gen_service_pb2 as tg
from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc
from evolver.v1 import task_pb2
from services.explorer.app import build as build_explorer
from services.task_gen.app import build as build_task_gen
from services.task_gen.synthesis import split_for
from tests.integration._helpers import collect, service_settings, wait_until

pytestmark = pytest.mark.integration


async def test_generated_tasks_are_verified_unique_and_durable(nats_url, bus: Bus, tmp_path):
    env_servicer = EnvironmentServicer(BfclEnvironment())
    env_server = GrpcServer([Registration("evolver.v1.EnvironmentService", env_servicer,
                                          env_grpc.add_EnvironmentServiceServicer_to_server)])
    await env_server.start()
    settings = service_settings(nats_url, tmp_path)
    runners = [ServiceRunner("explorer", build_explorer, settings), ServiceRunner("task_gen", build_task_gen, settings)]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    accepted, sub = await collect(bus, "tasks.accepted")
    try:
        await wait_until(lambda: all(r.server for r in runners), timeout=10)
        async with channel(runners[1].server.address) as ch:
            task_gen = stub(tg_grpc.TaskGenServiceStub, ch, 60)
            await task_gen.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="bfcl", address=env_server.address))
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await task_gen.GenerateTasks(tg.GenerateTasksRequest(env_id="bfcl", explorations=0))
            assert {"explorations", "walks_per_exploration", "max_steps_per_walk"} <= set(bad_request_fields(bad.value))
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await task_gen.GenerateTasks(tg.GenerateTasksRequest(env_id="nope", explorations=1,
                                                                     walks_per_exploration=1, max_steps_per_walk=5))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND

            async with channel(runners[0].server.address) as ech:  # walks straight over gRPC too
                explorer = stub(ex_grpc.ExplorerServiceStub, ech, 60)
                direct = await explorer.Explore(ex.ExploreRequest(env_id="bfcl", seed_task_id="multi_turn_base_0",
                                                                  walks=1, max_steps_per_walk=3, seed=1))
                assert len(direct.walks) == 1 and len(direct.walks[0].steps) == 3
                with pytest.raises(grpc.aio.AioRpcError) as bad_walks:
                    await explorer.Explore(ex.ExploreRequest(env_id="bfcl", walks=0, max_steps_per_walk=3))
                assert set(bad_request_fields(bad_walks.value)) == {"walks"}
            r = await task_gen.GenerateTasks(tg.GenerateTasksRequest(env_id="bfcl", explorations=2, walks_per_exploration=2,
                                                                     max_steps_per_walk=20, seed=4))
            assert len(r.explore_request_ids) == 2
            # Ids carry who asked: the same requester asks idempotently, another never collides
            # (a second run on the same environment and seed used to stall as a "duplicate").
            again = await task_gen.GenerateTasks(tg.GenerateTasksRequest(
                env_id="bfcl", explorations=1, walks_per_exploration=1, max_steps_per_walk=2, seed=9,
                requester_id="run-a"))
            same = await task_gen.GenerateTasks(tg.GenerateTasksRequest(
                env_id="bfcl", explorations=1, walks_per_exploration=1, max_steps_per_walk=2, seed=9,
                requester_id="run-a"))
            other = await task_gen.GenerateTasks(tg.GenerateTasksRequest(
                env_id="bfcl", explorations=1, walks_per_exploration=1, max_steps_per_walk=2, seed=9,
                requester_id="run-b"))
            assert list(again.explore_request_ids) == list(same.explore_request_ids) == ["run-a.bfcl.9.0"]
            assert list(other.explore_request_ids) == ["run-b.bfcl.9.0"]
            assert not set(r.explore_request_ids) & set(again.explore_request_ids)
            await wait_until(lambda: len(accepted) >= 4, timeout=90)
            assert len(accepted) == 4  # two, plus one each for run-a (asked twice) and run-b
            pool = (await task_gen.ListTasks(tg.ListTasksRequest(env_id="bfcl",
                                                                 source=task_pb2.TASK_SOURCE_SYNTHETIC))).tasks
        train_seeds = {s.seed_task_id for s in BfclEnvironment().seed_tasks("train")}
        assert pool, "exploration produced no verified task"
        print(f"{len(pool)} verified tasks, e.g. {pool[0].query!r}")
        assert len({t.task_id for t in pool}) == len(pool) <= sum(len(a.tasks) for a in accepted)
        for t in pool:
            assert t.task_id.startswith("syn-") and t.task_id not in train_seeds
            assert t.provenance.seed_task_id in train_seeds and t.provenance.walk_id
            assert t.split == split_for(t.task_id)  # a stable share is held out for evaluation
            assert t.reference_solution and t.reference_end_state_json
        # Replaying a task's reference solution in a fresh instance earns the full reward.
        async with RemoteEnvironment(env_server.address) as env:
            for t in pool[:3]:
                ep = await env.create(seed_task_id=t.provenance.seed_task_id, query_override=t.query)
                out = await ep.step([Call(c.name, json.loads(c.arguments_json), c.call_id) for c in t.reference_solution])
                end, _ = await ep.state()
                await ep.release()
                answer = " ".join(r.content for r in out.results)
                reward = synthetic_reward(json.loads(t.initial_state_json), json.loads(t.reference_end_state_json), end,
                                          list(t.expected_answer_facts), answer)
                assert reward.success, (t.query, reward)
    finally:
        await sub.unsubscribe()
        for r in runners:
            r.stop_requested.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await env_server.stop(0)
        await env_servicer.close()
