"""Rollout groups and state-progress attribution over the real Environment protocol (BFCL
behind gRPC), with scripted policies (FakeBackend: a named fake, it runs no model)."""

from __future__ import annotations


import pytest

from evolver.models.backend import FakeBackend
from evolver.agent.rollout import RolloutOptions, run_group
from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb
from services.attributor.attribution import attribute_group
from tests.bfcl_tasks import call, mkdir_task

pytestmark = pytest.mark.integration


async def test_group_rewards_guidance_and_state_progress_labels(bfcl, tokenizer):
    task = await mkdir_task(bfcl)
    # r0 solves it; r1 errors first (cd into a missing folder) then solves it; r2 does something
    # unrelated; r3 answers without acting.
    script = [call("mkdir", dir_name="reports"), "Done.",
              call("cd", folder="nowhere"), call("mkdir", dir_name="reports"), "Done.",
              call("mkdir", dir_name="other"), "Done.",
              "I cannot do that."]
    opts = RolloutOptions(group_size=4, guided_share=0.5, temperature=0.0, max_steps=3)
    experiences = [("e1", "When asked for a directory: call mkdir with dir_name.")]
    backend = FakeBackend(tokenizer, script)
    trajs = await run_group(backend, bfcl, task, opts, group_id="g1", experiences=experiences, concurrent=False)
    assert [t.reward.score for t in trajs] == [1.0, 1.0, 0.0, 0.0]
    assert [list(t.experience_ids) for t in trajs] == [["e1"], ["e1"], [], []]  # guided share 0.5
    assert "<experience>" in tokenizer.decode(backend.requests[0].prompt_token_ids)
    assert "<experience>" not in tokenizer.decode(backend.requests[-1].prompt_token_ids)
    for t in trajs:  # discard mode: the experience block is stripped from the training sequence
        assert "<experience>" not in tokenizer.decode(list(t.tokens.token_ids))
        assert len(t.tokens.token_ids) == len(t.tokens.loss_mask) == len(t.tokens.behaviour_logprobs)

    # keep mode: the block stays in the training sequence, marked by the experience mask
    kept = await run_group(FakeBackend(tokenizer, [call("mkdir", dir_name="reports"), "Done."]), bfcl, task,
                           RolloutOptions(group_size=1, guided_share=1.0, max_steps=2, keep_experience=True),
                           group_id="g0", experiences=experiences, concurrent=False)
    tok = kept[0].tokens
    marked = tokenizer.decode([t for t, m in zip(tok.token_ids, tok.experience_mask) if m])
    assert "call mkdir with dir_name" in marked and not any(
        m and e for m, e in zip(tok.loss_mask, tok.experience_mask))  # never trained on

    attributions = await attribute_group(bfcl, task, tpb.RolloutGroup(group_id="g1", trajectories=trajs))
    labels = {a.trajectory_id: [lab == apb.STEP_LABEL_GOOD for lab in a.labels] for a in attributions}
    assert all(a.method == apb.ATTRIBUTION_METHOD_STATE_PROGRESS for a in attributions)
    assert labels["g1.r0"] == [True, True]  # the mkdir, then an answer ending a success
    assert labels["g1.r1"] == [False, True, True]  # the failed cd is BAD
    assert labels["g1.r2"] == [False, False]  # an unrelated change moves away from the reference
    assert labels["g1.r3"] == [False]


async def test_attribute_rpc_labels_one_trajectory_and_names_bad_fields(bfcl, bus, tokenizer):
    from evolver.bus import topology
    from evolver.errors import InvalidArgument, NotFound
    from evolver.v1 import attributor_service_pb2 as at_pb
    from evolver.v1 import environment_pb2 as env_pb
    from evolver.envs.registry import environment_spec
    from services.attributor.attribution import Attributor
    from services.attributor.servicer import AttributorServicer
    registry = await bus.kv(topology.ENVIRONMENTS_BUCKET)
    await registry.put("bfcl", env_pb.EnvironmentSpec(env_id="bfcl", address=bfcl.address).SerializeToString())
    task = await mkdir_task(bfcl)
    (traj,) = await run_group(FakeBackend(tokenizer, [call("mkdir", dir_name="reports"), "Done."]), bfcl, task,
                              RolloutOptions(group_size=1, guided_share=0.0, max_steps=2), group_id="g3",
                              concurrent=False)
    async def locate(env_id):
        return (await environment_spec(registry, env_id)).address
    servicer = AttributorServicer(Attributor(locate))
    r = await servicer.Attribute(at_pb.AttributeRequest(task=task, trajectory=traj), None)
    assert r.attribution.trajectory_id == "g3.r0" and list(r.attribution.labels) == [apb.STEP_LABEL_GOOD] * 2
    with pytest.raises(InvalidArgument) as bad:
        await servicer.Attribute(at_pb.AttributeRequest(task=task_pb2.Task()), None)
    assert {v.field for v in bad.value.violations} == {"task.env_id", "trajectory.steps"}
    with pytest.raises(NotFound):
        await servicer.Attribute(at_pb.AttributeRequest(task=task_pb2.Task(env_id="nope"), trajectory=traj), None)
    # Caller errors, not INTERNAL: an infrastructure-failed attempt, a reference that is not JSON.
    failed = tpb.Trajectory()
    failed.CopyFrom(traj)
    failed.infra_failure.reason = "environment UNAVAILABLE"
    with pytest.raises(InvalidArgument) as infra:
        await servicer.Attribute(at_pb.AttributeRequest(task=task, trajectory=failed), None)
    assert {v.field for v in infra.value.violations} == {"trajectory.infra_failure"}
    broken = task_pb2.Task()
    broken.CopyFrom(task)
    broken.reference_end_state_json = '{"GorillaFileSystem": '
    with pytest.raises(InvalidArgument) as ref:
        await servicer.Attribute(at_pb.AttributeRequest(task=broken, trajectory=traj), None)
    assert {v.field for v in ref.value.violations} == {"task.reference_end_state_json"}


async def test_explorer_rpcs_map_environment_refusals_to_caller_errors(bfcl, tokenizer):
    """An unknown seed task is NOT_FOUND for the caller (it was INTERNAL); a job without an id is
    refused before any work runs."""
    from evolver.errors import InvalidArgument, NotFound
    from evolver.models.policy_store import PolicySwitcher
    from evolver.v1 import events_pb2
    from evolver.v1 import explorer_service_pb2 as ex_pb
    from services.explorer.explorer import Explorer, Retrieved, rollout_options
    from services.explorer.servicer import ExplorerServicer

    class ScriptedPolicy:
        """Stands in for LazyPolicy: a scripted FakeBackend instead of loading a model."""
        async def get(self):
            return FakeBackend(tokenizer, ["Done."])

    async def locate(env_id):
        return bfcl.address

    async def no_experiences(query, k, env_id, rewrite=False):
        return Retrieved([])
    servicer = ExplorerServicer(Explorer(ScriptedPolicy(), locate, no_experiences,
                                         switcher_factory=lambda backend: PolicySwitcher(None, backend)))
    task = task_pb2.Task(task_id="nope", env_id="bfcl", source=task_pb2.TASK_SOURCE_SEED)
    with pytest.raises(NotFound, match="no BFCL seed task"):
        await servicer.Rollout(ex_pb.RolloutRequest(task=task, group_size=2), None)
    with pytest.raises(NotFound):
        await servicer.Explore(ex_pb.ExploreRequest(env_id="bfcl", seed_task_id="nope", walks=1,
                                                    max_steps_per_walk=2), None)
    with pytest.raises(InvalidArgument) as no_id:
        rollout_options(events_pb2.RolloutRequested(task=task, group_size=2))
    assert {v.field for v in no_id.value.violations} == {"job_id"}
