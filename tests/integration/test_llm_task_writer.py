"""The LLM explorer (questioning.explorer llm | mixed) and the LLM task writer
(questioning.task_writer llm | hybrid) on real BFCL exploration walks over
the Environment protocol, against ScriptedOpenAIServer (a FAKE OpenAI-compatible server): every
<task> block becomes its own candidate, each named step sequence is replayed, queries that write
code are refused, confidence ranks the near-duplicate filter, and an unusable reply falls back to
the template writer for that walk, counted."""

from __future__ import annotations

import json
import re

import pytest

from evolver import prompts
from evolver.agent.exploration import run_walk, walk_to_pb
from evolver.models.openai_compat import AuxChatClient, EndpointSettings
from evolver.models.roles import RoleCaller
from evolver.v1 import events_pb2, task_pb2
from services.task_gen.synthesis import synthesize
from tests.fake_openai_server import Reply, ScriptedOpenAIServer

pytestmark = pytest.mark.integration


def block(**task) -> str:
    return f"<task>{json.dumps(task)}</task>"


async def walks(bfcl, *seeds: int) -> list:
    """Seeded schema walks (the planner is deterministic): seeds 0, 13 and 14 each make a
    successful state change among failed calls."""
    return [await run_walk(bfcl, walk_id=f"x/w{i}", seed=seed, max_steps=6, seed_task_id="multi_turn_base_0")
            for i, seed in enumerate(seeds)]


async def test_llm_written_tasks_are_replayed_filtered_and_carry_their_provenance(bfcl):
    (walk, other) = await walks(bfcl, 0, 14)  # 14 never calls walk 0's first tool (rmdir)
    changed = [i for i, s in enumerate(walk.steps) if s.changed_state and not s.is_error]
    failed = [i for i, s in enumerate(walk.steps) if s.is_error]
    assert changed, "the walk needs a successful step that changed state"
    k = changed[0] + 1  # the prompt numbers steps from 1
    reply = "\n".join([
        "Here are the tasks.",
        block(query="Set things up the way the log shows, with the concrete names from step one.",
              confidence=0.9, action_sequence=[k]),
        block(query="Set things up the way the log shows, with the concrete names from step one!",
              confidence=0.4, action_sequence=[k]),  # a near-duplicate of a more confident task
        "<task>{\"query\": \"broken\", </task>",  # not JSON: dropped, the rest still count
        block(query=f"Call {walk.steps[changed[0]].call.name}(...) for me", confidence=0.8, action_sequence=[k]),
        block(query="Do the step that failed.", confidence=0.7,
              action_sequence=[failed[0] + 1] if failed else [len(walk.steps) + 5]),
    ])
    event = events_pb2.ExploreCompleted(request_id="x", env_id="bfcl", seed_task_id="multi_turn_base_0",
                                        walks=[walk_to_pb(walk), walk_to_pb(other)], max_calls_per_task=2,
                                        task_writer=task_pb2.TASK_WRITER_KIND_LLM)
    with ScriptedOpenAIServer() as fake:
        first = f"<|ACTION|>{walk.steps[0].call.name}("  # which walk a request is about (they run at once)
        fake.add("task_writer", *[lambda body: Reply(reply) if first in body["messages"][1]["content"]
                                  else Reply("I would rather not.")] * 2)  # the 2nd walk's reply is unusable
        client = AuxChatClient(EndpointSettings(fake.url, "writer-7b", max_retries=0))
        llm = RoleCaller("task_writer", client, prompts.load("task_writer"))

        async def role():
            return llm
        made = await synthesize(bfcl, event, ["an existing task in the pool"], task_writer=role)
        bodies = fake.calls("task_writer")
    (usage,) = made.role_usage
    assert (usage.role, usage.calls, usage.parse_failures, usage.fallbacks) == ("task_writer", 2, 1, 1)
    written = [t for t in made.accepted if t.provenance.prompt_version == "task_writer/v1"]
    assert len(written) == 1 and written[0].provenance.confidence == pytest.approx(0.9)
    t = written[0]
    assert t.query.startswith("Set things up") and t.provenance.generator_version == "task_writer/v1"
    step = walk.steps[changed[0]]
    assert [(c.name, json.loads(c.arguments_json)) for c in t.reference_solution] == [(step.call.name, step.call.arguments)]
    assert t.reference_end_state_json  # replayed in a fresh instance
    reasons = " | ".join(made.reasons)
    assert "not valid JSON" in reasons and "query names a tool" in reasons and "lexical near-duplicate" in reasons
    assert "missing or failed step" in reasons
    # the walk whose reply was unusable: the template writer's tasks, counted as a fallback
    assert any(not x.provenance.prompt_version and x.provenance.walk_id == "x/w1" for x in made.accepted)
    # the prompt: the numbered log with each step's status, the pool's tasks as "already known"
    # the request about the first walk (the two run at once, in either order; the profile names
    # every tool, so only the log's own first action tells them apart)
    user = next(b["messages"][1]["content"] for b in bodies if first in b["messages"][1]["content"])
    assert f">>> STEP {k} <<< (ok)" in user and "an existing task in the pool" in user and "1 to 2 steps" not in user
    # the environment profile derived from the tool schemas: the entities this walk touched
    assert "### ENVIRONMENT" in user and "GorillaFileSystem" in user and "Task preference" in user
    assert "Use 1 to 2 steps" in bodies[0]["messages"][0]["content"]


async def test_hybrid_keeps_both_writers_and_template_mode_never_calls(bfcl):
    (walk,) = await walks(bfcl, 13)
    changed = [i for i, s in enumerate(walk.steps) if s.changed_state and not s.is_error]
    assert changed
    reply = block(query="Please make the change from the log, exactly as it was done there.", confidence=0.95,
                  action_sequence=[changed[0] + 1])
    with ScriptedOpenAIServer(default=Reply(reply)) as fake:
        llm = RoleCaller("task_writer", AuxChatClient(EndpointSettings(fake.url, "w", max_retries=0)),
                         prompts.load("task_writer"))

        async def role():
            return llm
        event = events_pb2.ExploreCompleted(request_id="y", env_id="bfcl", seed_task_id="multi_turn_base_0",
                                            walks=[walk_to_pb(walk)], max_calls_per_task=2,
                                            task_writer=task_pb2.TASK_WRITER_KIND_HYBRID)
        hybrid = await synthesize(bfcl, event, [], task_writer=role)
        event.task_writer = task_pb2.TASK_WRITER_KIND_TEMPLATE
        template = await synthesize(bfcl, event, [], task_writer=role)
        assert len(fake.requests) == 1  # the template writer calls nobody
    sources = {bool(t.provenance.prompt_version) for t in hybrid.accepted}
    assert sources == {True, False} and hybrid.role_usage[0].fallbacks == 0
    assert not template.role_usage and all(not t.provenance.prompt_version for t in template.accepted)
    assert {t.task_id for t in template.accepted} <= {t.task_id for t in hybrid.accepted}


async def test_a_registered_environment_has_a_profile_derived_or_supplied_and_bad_ones_are_named(bfcl, bus):
    from evolver.bus import topology
    from evolver.envs.client import check_conformance
    from evolver.errors import InvalidArgument
    from evolver.v1 import environment_pb2 as env_pb
    from evolver.v1 import task_gen_service_pb2 as tg
    from services.task_gen.registry import EnvironmentRegistry
    from services.task_gen.servicer import TaskGenServicer
    from services.task_gen.task_gen import TaskGen
    task_gen = TaskGen(EnvironmentRegistry(await bus.kv(topology.ENVIRONMENTS_BUCKET), check_conformance),
                       None, None, None, None)
    servicer = TaskGenServicer(task_gen)
    r = await servicer.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="bfcl", address=bfcl.address), None)
    derived = r.environment.profile
    assert derived.source == "derived" and {e.name for e in derived.entities} >= {"GorillaFileSystem", "TwitterAPI"}
    fs = next(e for e in derived.entities if e.name == "GorillaFileSystem")
    assert "mkdir" in {o.name for o in fs.operations} and "dir_name" in fs.attributes
    mine = env_pb.EnvironmentProfile(name="Alice", background="keeps her files tidy",
                                     entities=[env_pb.ProfileEntity(name="Files", description="her documents",
                                                                    operations=[env_pb.ProfileOperation(name="mkdir")])],
                                     task_preference=env_pb.TaskPreference(num_entities=1, relation_difficulty=3))
    await servicer.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="mine", address=bfcl.address,
                                                                     profile=mine), None)
    listed = {e.env_id: e for e in (await servicer.ListEnvironments(tg.ListEnvironmentsRequest(), None)).environments}
    assert listed["mine"].profile.name == "Alice" and listed["mine"].profile.source == "user"
    assert listed["bfcl"].profile.source == "derived"
    hostile = env_pb.EnvironmentProfile(name="x" * 5000, entities=[env_pb.ProfileEntity(name="")],
                                        task_preference=env_pb.TaskPreference(relation_difficulty=9))
    with pytest.raises(InvalidArgument) as bad:
        await servicer.RegisterEnvironment(tg.RegisterEnvironmentRequest(env_id="bad", address=bfcl.address,
                                                                         profile=hostile), None)
    assert {v.field for v in bad.value.violations} == {
        "profile.name", "profile.entities[0].name", "profile.task_preference.relation_difficulty"}
    assert all(len(v.description) < 200 for v in bad.value.violations)


async def test_the_llm_explorer_chooses_each_step_and_the_planner_covers_unusable_replies(bfcl):
    from evolver.envs.profile import derive_profile
    from services.explorer.explorer import Explorer

    def explorer_reply(body: dict) -> Reply:
        text = body["messages"][1]["content"]
        step = int(text.rsplit("(step ", 1)[1].split(")")[0])
        return {1: Reply('Map first.\n<tool_call>\n{"name": "ls", "arguments": {}}\n</tool_call>'),
                2: Reply('Make one.\n<tool_call>\n{"name": "mkdir", "arguments": {"dir_name": "probe"}}\n</tool_call>'),
                3: Reply('<tool_call>\n{"name": "mkdir", "arguments": {"dir_name": "probe"}}\n</tool_call>'),  # a repeat
                4: Reply("I am not sure what to do."),  # unusable: the planner's step
                5: Reply('<tool_call>\n{"name": "launch_rocket", "arguments": {}}\n</tool_call>')}[step]

    tools, _ = await bfcl.tools()
    with ScriptedOpenAIServer(default=explorer_reply) as fake:
        llm = RoleCaller("explorer", AuxChatClient(EndpointSettings(fake.url, "explorer-7b", max_retries=0)),
                         prompts.load("explorer"))

        async def role():
            return llm

        async def locate(env_id):
            return bfcl.address

        async def profile_of(env_id):
            return derive_profile(tools, env_id)
        explorer = Explorer(None, locate, None, switcher_factory=None, explorer_role=role, profile_of=profile_of)
        req = events_pb2.ExploreRequested(request_id="e1", env_id="bfcl", seed_task_id="multi_turn_base_0", walks=2,
                                          max_steps_per_walk=5, seed=3, explorer=task_pb2.EXPLORER_KIND_MIXED)
        walks, (usage,) = await explorer.walks_counted(req)
        bodies = fake.calls("explorer")
    schema_walk, llm_walk = walks  # mixed: walk 0 by the schema planner, walk 1 by the LLM
    assert (schema_walk.prompt_version, llm_walk.prompt_version) == ("", "explorer/v1")
    calls = [(s.tool_calls[0].name, json.loads(s.tool_calls[0].arguments_json)) for s in llm_walk.steps]
    assert calls[0] == ("ls", {}) and calls[1] == ("mkdir", {"dir_name": "probe"})
    assert calls[2] != calls[1] and calls[4][0] != "launch_rocket"  # the planner's steps instead
    assert (usage.role, usage.calls, usage.parse_failures, usage.fallbacks) == ("explorer", 5, 3, 3)  # steps 3-5
    assert len(bodies) == 5  # walk 0 called nobody
    first, second = bodies[0]["messages"], bodies[1]["messages"]
    assert "DO NOT try to answer" in first[0]["content"] and "GorillaFileSystem" in first[0]["content"]
    assert "(nothing yet)" in first[1]["content"] and "1. ls({}) -> ok" in second[1]["content"]
    seed_question = (await bfcl.create(seed_task_id="multi_turn_base_0")).user_message
    assert seed_question[:40] in first[1]["content"]
    bad = events_pb2.ExploreRequested(request_id="e2", env_id="bfcl", walks=1, max_steps_per_walk=2, explorer=9)
    from evolver.errors import InvalidArgument
    with pytest.raises(InvalidArgument) as refused:
        await explorer.walks_counted(bad)
    assert [v.field for v in refused.value.violations] == ["explorer"]


async def test_llm_feasibility_replays_with_a_tip_and_the_judge_decides(bfcl):
    (walk,) = await walks(bfcl, 26)

    def solver(body: dict) -> Reply:
        messages = body["messages"]
        if messages[-1]["role"] == "user" and "<tool_response>" in messages[-1]["content"]:
            return Reply("Done.")  # after one round of calls
        tip = messages[1]["content"].split("(it may not be correct):", 1)[1]
        calls = re.findall(r"\d+\. (\w+)\((\{.*?\})\)", tip)
        if any(name == "pwd" for name, _ in calls):  # this one goes wrong on purpose
            return Reply('<tool_call>\n{"name": "get_tweet", "arguments": {"tweet_id": 987654}}\n</tool_call>')
        return Reply("".join(f'<tool_call>\n{{"name": "{n}", "arguments": {a}}}\n</tool_call>\n' for n, a in calls))

    def verdict(body: dict) -> Reply:
        steps = body["messages"][1]["content"]
        if "ERROR" in steps:
            return Reply("Success: false\nReason: a call failed.")
        if "mkdir" in steps:
            return Reply("Hard to say.")  # unusable: the replay check decides
        return Reply("Success: true\nReason: done as asked.")

    event = events_pb2.ExploreCompleted(request_id="f", env_id="bfcl", seed_task_id="multi_turn_base_0",
                                        walks=[walk_to_pb(walk)], max_calls_per_task=2,
                                        feasibility=task_pb2.FEASIBILITY_KIND_LLM)
    with ScriptedOpenAIServer() as fake:
        fake.script["solver"], fake.script["feasibility"] = [], []
        fake.default = lambda body: solver(body) if "Feel free to use this tip" in json.dumps(body) else verdict(body)
        client = AuxChatClient(EndpointSettings(fake.url, "agent-7b", max_retries=0))

        async def roles(role: str, template: str):
            return RoleCaller(role, client, prompts.load(template))
        made = await synthesize(bfcl, event, [], feasibility_roles=roles)
        n_solver, n_verdict = len(fake.calls("solver")), len(fake.calls("feasibility"))
    usage = {u.role: u for u in made.role_usage}
    assert usage["explorer"].calls == n_solver > 0 and usage["judge"].calls == n_verdict > 0
    names = [[c.name for c in t.reference_solution] for t in made.accepted]
    # seed 26's walk: the user's tweets (judged true), mkdir (an unusable verdict: the replay
    # check accepts it, counted), pwd (the tip-guided replay failed: the judge refused it)
    assert sorted(names) == [["get_user_tweets"], ["mkdir"]]
    assert "LLM feasibility: the judge found the tip-guided replay unsuccessful" in made.reasons
    assert usage["judge"].fallbacks == 1 and usage["judge"].parse_failures == 1
    for t in made.accepted:  # the reference is what the replay did, with its end state
        assert t.reference_end_state_json and all(c.call_id.startswith("ref_") for c in t.reference_solution)


async def test_an_opaque_environment_gets_tasks_and_rewards_from_the_llm_roles_only():
    """An environment that does not expose its state (GetState: FAILED_PRECONDITION): walks still
    run, the LLM feasibility check accepts tasks without a reference end state, and attempts are
    scored 0 by the state match, then by the judge."""
    from evolver.agent.rollout import RolloutOptions, run_group
    from evolver.envs.client import RemoteEnvironment
    from evolver.envs.server import EnvironmentServicer
    from evolver.models.backend import FakeBackend
    from evolver.models.roles import RoleCounters
    from evolver.rpc import GrpcServer, Registration
    from evolver.v1 import environment_pb2_grpc as env_grpc
    from services.explorer.explorer import judge_group
    from tests.bfcl_tasks import OpaqueBfcl, call
    from transformers import AutoTokenizer

    servicer = EnvironmentServicer(OpaqueBfcl())
    server = GrpcServer([Registration("evolver.v1.EnvironmentService", servicer,
                                      env_grpc.add_EnvironmentServiceServicer_to_server)])
    await server.start()
    try:
        async with RemoteEnvironment(server.address) as env:
            walk = await run_walk(env, walk_id="o/w0", seed=9, max_steps=6, seed_task_id="multi_turn_base_0")
            assert walk.steps and not any(s.changed_state for s in walk.steps) and walk.initial_state == {}

            def replies(body: dict) -> Reply:
                text = json.dumps(body)
                if "Feel free to use this tip" in text:
                    if "<tool_response>" in body["messages"][-1]["content"]:
                        return Reply("Done.")
                    tip = body["messages"][1]["content"].split("(it may not be correct):", 1)[1]
                    n, a = re.findall(r"\d+\. (\w+)\((\{.*?\})\)", tip)[0]
                    return Reply(f'<tool_call>\n{{"name": "{n}", "arguments": {a}}}\n</tool_call>')
                if "strictly check whether an agent" in text:
                    return Reply("Success: true" if "ERROR" not in body["messages"][1]["content"] else "Success: false")
                return Reply("Solved.\n<reward>80</reward>")  # the outcome judge
            with ScriptedOpenAIServer(default=replies) as fake:
                client = AuxChatClient(EndpointSettings(fake.url, "m", max_retries=0))

                async def roles(role: str, template: str):
                    return RoleCaller(role, client, prompts.load(template))
                event = events_pb2.ExploreCompleted(request_id="o", env_id="opaque", seed_task_id="multi_turn_base_0",
                                                    walks=[walk_to_pb(walk)], max_calls_per_task=1,
                                                    feasibility=task_pb2.FEASIBILITY_KIND_LLM)
                made = await synthesize(env, event, [], feasibility_roles=roles)
                assert made.accepted and all(t.reference_end_state_json == "" for t in made.accepted)
                task = made.accepted[0]
                tokenizer = AutoTokenizer.from_pretrained(str(prepare_dir()))
                script = [call(c.name, **json.loads(c.arguments_json)) for c in task.reference_solution] + ["Done."]
                trajs = await run_group(FakeBackend(tokenizer, script), env, task,
                                        RolloutOptions(group_size=1, guided_share=0.0, max_steps=3), group_id="og",
                                        concurrent=False)
                assert not trajs[0].infra_failure.reason and trajs[0].reward.score == 0.0
                assert "not observable" in trajs[0].reward.details_json
                counters = RoleCounters("judge")
                await judge_group(await roles("judge", "judge"), counters, task, trajs, hybrid=False)
                assert trajs[0].reward.score == pytest.approx(0.8) and trajs[0].reward.success and counters.calls == 1
    finally:
        await server.stop(0)
        await servicer.close()


def prepare_dir():
    from evolver.models import prepare
    return prepare.prepare()
