"""The run loop's pure parts, without NATS: the evaluation schedule and sums, a step's tally,
the rollout request a step sends, and the event-driven wait for groups."""

from __future__ import annotations

import asyncio

import pytest

from evolver.algorithms.adca import AdcaConfig
from evolver.v1 import events_pb2, task_pb2
from evolver.v1 import trajectory_pb2 as tpb
from evolver.algorithms.stats import TASK_METRIC_PREFIX
from services.trainer.collection import GroupArrivals, job_id, rollout_request, wait_for_groups
from services.trainer.evaluation import eval_metrics, evaluation_due
from services.trainer.run_config import RunSpec
from services.trainer.step_tally import tally


def _traj(tid, score, *, success=False, infra=False, guided=False, exhausted=False) -> tpb.Trajectory:
    t = tpb.Trajectory(trajectory_id=tid, reward=tpb.Reward(score=score, success=success),
                       tokens=tpb.TokenRecord(token_ids=[1, 2, 10, 11], loss_mask=[0, 0, 1, 1], step_ids=[-1, -1, 0, 0],
                                              behaviour_logprobs=[0, 0, -1, -1], logprobs_exact=True),
                       context_exhausted=exhausted)
    t.steps.append(tpb.Step(index=0))
    if infra:
        t.infra_failure.reason = "UNAVAILABLE"
    if guided:
        t.experience_ids.append("e")
    return t


def _group(gid, trajs, *, source=task_pb2.TASK_SOURCE_SYNTHETIC, split="train", task_id="t") -> events_pb2.RolloutAttributed:
    return events_pb2.RolloutAttributed(group=tpb.RolloutGroup(group_id=gid, trajectories=trajs),
                                        task=task_pb2.Task(task_id=task_id, source=source, split=split))


@pytest.mark.parametrize("step,steps,every,done,due", [
    (0, 4, 2, [], True), (0, 4, 2, [0], False), (1, 4, 2, [0], False), (2, 4, 2, [0], True), (4, 4, 0, [0], True),
    (2, 4, 0, [0], False), (3, 4, 3, [0], True), (4, 4, 3, [0, 3], True), (4, 4, 3, [0, 3, 4], False)])
def test_evaluation_is_due_before_every_eval_every_and_at_the_end_once(step, steps, every, done, due):
    assert evaluation_due(step, steps, every, done) is due


@pytest.mark.parametrize("step,steps,every,due", [(0, 4, 2, False), (0, 4, 0, False), (2, 4, 2, True), (4, 4, 0, True)])
def test_evaluation_before_training_can_be_left_to_the_run_that_measured_it(step, steps, every, due):
    assert evaluation_due(step, steps, every, [], before_training=False) is due


def test_eval_metrics_per_source_over_valid_trajectories():
    tasks = [task_pb2.Task(task_id="h1", source=task_pb2.TASK_SOURCE_SYNTHETIC),
             task_pb2.Task(task_id="s1", source=task_pb2.TASK_SOURCE_SEED)]
    groups = [_group("e.t0", [_traj("a", 1.0, success=True), _traj("b", 0.0), _traj("c", 0.0, infra=True)]),
              _group("e.t1", [_traj("d", 0.5), _traj("e", 0.5)])]
    m = eval_metrics(tasks, groups, k=2, temperature=0.7)
    assert m[f"{TASK_METRIC_PREFIX}synthetic/h1"] == pytest.approx(0.5)  # the infra failure takes no part
    assert m["eval_synthetic_tasks"] == 1 and m["eval_seed_tasks"] == 1
    assert m["eval_synthetic_pass_at_k"] == 1.0 and m["eval_seed_pass_at_k"] == 0.0
    assert m["eval_seed_avg_at_k"] == pytest.approx(0.5)


def test_a_step_tally_sums_what_the_trained_progress_reports():
    groups = [_group("s0.t0", [_traj("a", 1.0, success=True, guided=True), _traj("b", 0.0, exhausted=True)]),
              _group("s0.t1", [_traj("c", 1.0, success=True), _traj("d", 0.0, infra=True)],
                     source=task_pb2.TASK_SOURCE_SEED)]
    t = tally(groups, AdcaConfig(), attributing=False, alpha=0.1)
    m = t.metrics(alpha=0.1, groups=len(groups))
    assert m["trajectories"] == 3 and m["infra_failed"] == 1 and m["guided_trajectories"] == 1
    assert m["reward_mean"] == pytest.approx(2 / 3) and m["success_rate"] == pytest.approx(2 / 3)
    assert m["context_exhausted"] == 1 and m["groups"] == 2
    assert t.own_successes == {"a"}  # synthetic train tasks only: "c" was a seed task
    assert len(t.samples) == 3 and all(s.trajectory_id != "d" for s in t.samples)


def test_the_rollout_request_of_a_step_and_of_an_evaluation():
    spec = RunSpec.model_validate({"group_size": 6, "seed": 3, "eval": {"k": 2, "temperature": 0.5},
                                   "navigating": {"guided_share": 0.5}})
    task = task_pb2.Task(task_id="t", env_id="bfcl")
    train = rollout_request(spec, run_id="r", job=job_id("r", "s", 4, 1), step=4, task=task, version=3,
                            evaluation=False, base_model=("m", "abc"))
    ev = rollout_request(spec, run_id="r", job=job_id("r", "eval", 4, 0), step=4, task=task, version=3, evaluation=True)
    assert train.job_id == "r.s4.t1" and ev.job_id == "r.eval4.t0"
    assert (train.group_size, train.guided_share, train.temperature, train.attribute) == (6, 0.5, 1.0, True)
    assert (ev.group_size, ev.guided_share, ev.temperature, ev.attribute) == (2, 0.0, 0.5, False)
    assert ev.sampling_seed == 3 and train.sampling_seed == 3 * 1_000_003 + 5
    assert (train.base_model, train.base_model_digest, train.policy_version) == ("m", "abc", 3)


async def test_groups_are_handed_over_as_they_arrive_and_found_in_the_index_when_earlier():
    arrivals, stop = GroupArrivals(), asyncio.Event()
    indexed = {"g0": ("event-g0", {"traceparent": "x"})}
    seen = []

    async def lookup(gid):
        if gid == "g1":  # g1 arrives while the index is being read: its waiter is already there
            arrivals.arrived("g1", "event-g1", {})
        return indexed.get(gid)

    async def report(n):
        seen.append(n)

    async def later():
        await asyncio.sleep(0.05)
        arrivals.arrived("g2", "event-g2", {})
    asyncio.get_running_loop().create_task(later())
    found = await wait_for_groups(arrivals, ["g0", "g1", "g2"], lookup, timeout_s=5, stop=stop, on_progress=report)
    assert {g: e for g, (e, _) in found.items()} == {"g0": "event-g0", "g1": "event-g1", "g2": "event-g2"}
    assert found["g0"][1] == {"traceparent": "x"} and seen[-1] == 3 and arrivals.waiting == 0


async def test_a_wait_ends_at_its_timeout_or_when_the_run_is_stopped_and_leaves_no_waiter():
    arrivals = GroupArrivals()

    async def nothing(gid):
        return None

    async def quiet(n):
        pass
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    found = await wait_for_groups(arrivals, ["a", "b"], nothing, timeout_s=0.2, stop=asyncio.Event(), on_progress=quiet)
    assert found == {} and 0.2 <= loop.time() - t0 < 2 and arrivals.waiting == 0
    stop = asyncio.Event()
    loop.call_later(0.05, stop.set)
    t0 = loop.time()
    found = await wait_for_groups(arrivals, ["a"], nothing, timeout_s=30, stop=stop, on_progress=quiet)
    assert found == {} and loop.time() - t0 < 2 and arrivals.waiting == 0
    arrivals.arrived("a", "late", {})  # nobody waits any more: nothing happens


def test_groups_older_than_the_lag_bound_are_split_off():
    from services.trainer.collection import group_version, original_group_id, restale_job_id, split_stale

    def at(gid, *versions, infra_version=None):
        trajs = [tpb.Trajectory(trajectory_id=f"{gid}.{i}", policy_version=v) for i, v in enumerate(versions)]
        if infra_version is not None:
            t = tpb.Trajectory(trajectory_id=f"{gid}.x", policy_version=infra_version)
            t.infra_failure.reason = "UNAVAILABLE"
            trajs.append(t)
        return events_pb2.RolloutAttributed(group=tpb.RolloutGroup(group_id=gid, trajectories=trajs))
    fresh, behind1, mixed, behind2 = at("a", 3, 3), at("b", 2, 2), at("c", 3, 1, infra_version=0), at("d", 1, 1)
    assert group_version(mixed) == 1  # the oldest valid attempt; an infra failure does not count
    keep, stale = split_stale([fresh, behind1, mixed, behind2], version=3, max_lag=1)
    assert [g.group.group_id for g in keep] == ["a", "b"] and [g.group.group_id for g in stale] == ["c", "d"]
    keep, stale = split_stale([fresh, behind1], version=3, max_lag=0)  # synchronous: only the current policy
    assert [g.group.group_id for g in keep] == ["a"] and restale_job_id("r.s3.t1", 3) == "r.s3.t1.v3"
    assert original_group_id("r.s3.t1.v3") == original_group_id("r.s3.t1") == "r.s3.t1"
    assert original_group_id("r.s3.t1.v3x") == "r.s3.t1.v3x"  # only the re-request suffix goes


def test_the_lag_bound_counts_steps_so_a_groups_imitation_step_does_not_make_it_stale():
    """A group requested one step ahead is generated while that step trains; with self-imitation
    between steps the policy then moves two versions (RL update, supervised step), and the group
    is still one step behind: kept, and its generating weights kept for the ratio."""
    from services.trainer.collection import split_stale
    from services.trainer.run_config import RunSpec

    def spec(bootstrapping: bool, between_steps: bool, lag: int = 1) -> RunSpec:
        return RunSpec.model_validate({"mechanisms": {"bootstrapping": bootstrapping},
                                       "bootstrapping": {"between_steps": between_steps},
                                       "rollout": {"max_policy_lag": lag}})
    one_step_behind = events_pb2.RolloutAttributed(group=tpb.RolloutGroup(
        group_id="g", trajectories=[tpb.Trajectory(trajectory_id="g.0", policy_version=4)]))
    imitating = spec(True, True)
    assert imitating.version_lag == 2
    assert split_stale([one_step_behind], version=6, max_lag=imitating.version_lag)[1] == []
    assert split_stale([one_step_behind], version=7, max_lag=imitating.version_lag)[0] == []  # two steps: stale
    assert spec(True, False).version_lag == spec(False, True).version_lag == 1  # one version a step
    assert spec(True, True, lag=0).version_lag == 0 and spec(True, True, lag=3).version_lag == 6


def test_the_imitation_step_takes_its_own_rate_or_else_the_warm_starts():
    from pydantic import ValidationError

    from services.trainer.run_config import BootstrappingSpec
    assert BootstrappingSpec().imitation_rate == BootstrappingSpec().learning_rate == 1e-3
    assert BootstrappingSpec(learning_rate=5e-4).imitation_rate == 5e-4
    assert BootstrappingSpec(imitation_learning_rate=2e-4).imitation_rate == 2e-4
    with pytest.raises(ValidationError, match="imitation_learning_rate"):
        BootstrappingSpec(imitation_learning_rate=0)


def test_a_checkpoint_round_trips_and_ignores_keys_it_does_not_know():
    import json

    from services.trainer.checkpoint import Checkpoint
    c = Checkpoint(step=3, version=3, consumed=["r.s0.t0", "r.s1.t0"], evaluated=[0], eval_task_ids=["h1"],
                   bootstrapped=True, bootstrap_task_ids=["syn-1"], warm_start_evaluated=True)
    assert Checkpoint.from_bytes(c.to_bytes()) == c
    newer = json.dumps({**json.loads(c.to_bytes()), "written_by_a_newer_trainer": 1}).encode()
    assert Checkpoint.from_bytes(newer) == c
    assert Checkpoint.from_bytes(b'{"step": 2}') == Checkpoint(step=2)


def test_train_tasks_are_the_curriculums_seeded_draw_and_eval_tasks_freeze():
    from services.trainer.tasks import choose_train_tasks, select_eval_tasks
    tasks = [task_pb2.Task(task_id=f"t{i}") for i in range(10)]
    stats = {"t0": task_pb2.TaskStats(task_id="t0", attempts=8, successes=8)}
    a = choose_train_tasks(tasks, stats, 4, seed=1, step=2)
    assert len(a) == 4 == len({t.task_id for t in a})
    assert [t.task_id for t in choose_train_tasks(tasks, stats, 4, seed=1, step=2)] == [t.task_id for t in a]
    # different steps draw differently (over a few steps at least once)
    assert any([t.task_id for t in choose_train_tasks(tasks, stats, 4, seed=1, step=s)] != [t.task_id for t in a]
               for s in range(3, 8))
    heldout = [task_pb2.Task(task_id=i) for i in ("h3", "h1", "h2")]
    test = [task_pb2.Task(task_id="seed-1")]
    first = select_eval_tasks(heldout, test, 2, frozen=[])
    assert [t.task_id for t in first] == ["h1", "h2", "seed-1"]
    grown = heldout + [task_pb2.Task(task_id="h0")]  # the pool grew; the frozen set does not change
    assert [t.task_id for t in select_eval_tasks(grown, test, 2, frozen=[t.task_id for t in first])] == \
        ["h1", "h2", "seed-1"]
