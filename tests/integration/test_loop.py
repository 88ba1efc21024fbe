"""The self-evolving loop end to end: nats-server and the five services as separate processes
(the embedded stack), a tiny random transformer as the policy, BFCL as the environment."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from evolver.bus import Bus, topology
from evolver.config import load_settings
from evolver.rpc import channel, stub
from services.trainer.warm_start_record import unpack
from services.trainer.run_config import RunSpec, to_run_config
from evolver.cli.run_events import read_run_events
from evolver.stack import Stack
from evolver.v1 import events_pb2, run_pb2, task_pb2
from evolver.v1 import trainer_service_pb2 as tr_pb
from evolver.v1 import trainer_service_pb2_grpc as tr_grpc
from evolver.v1 import trajectory_pb2 as tpb
from tests.integration._helpers import embedded_stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

SMALL = {
    "steps": 2, "tasks_per_step": 2, "group_size": 2, "eval_every": 0, "seed": 3,
    "questioning": {"explorations": 2, "walks_per_exploration": 2, "max_steps_per_walk": 8, "min_train_tasks": 2,
                    "wait_s": 240},
    "navigating": {"guided_share": 0.5, "top_k": 2},
    "rollout": {"max_steps": 2, "max_new_tokens": 12, "max_tools_shown": 3, "timeout_s": 240},
    "training": {"learning_rate": 0.001, "lora_r": 4, "lora_alpha": 8},
    "eval": {"synthetic_tasks": 1, "seed_tasks": 1, "k": 2},
}


def cli(state_dir: Path, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolver.cli", "--state-dir", str(state_dir), *args], cwd=ROOT,
                          env={**os.environ, **(env or {}), "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory, tiny_model_dir):
    yield from embedded_stack(tmp_path_factory.mktemp("loop") / "stack", tiny_model_dir, cli)


@contextlib.asynccontextmanager
async def _stack_bus(stack_dir: Path):
    """A bus connection to the stack's nats-server, closed after the block."""
    state = Stack(stack_dir).read_state()
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": state.nats_url}), name="test")
    try:
        yield bus
    finally:
        await bus.close()


async def _events(stack_dir: Path, run_id: str):
    async with _stack_bus(stack_dir) as bus:
        return await read_run_events(bus, run_id)


async def _env_address(stack_dir: Path, env_id: str) -> str:
    from evolver.envs.registry import environment_spec
    async with _stack_bus(stack_dir) as bus:
        return (await environment_spec(await bus.kv(topology.ENVIRONMENTS_BUCKET), env_id)).address


async def _checkpoint(stack_dir: Path, run_id: str) -> dict:
    """The trainer's checkpoint record of a run on the stack."""
    async with _stack_bus(stack_dir) as bus:
        return json.loads(await (await bus.kv(topology.RUN_CHECKPOINTS_BUCKET)).get(run_id))


async def _checkpoint_weights(stack_dir: Path, run_id: str) -> dict:
    """The trainer's checkpointed weights of a run (PolicyUpdater.checkpoint_blob)."""
    async with _stack_bus(stack_dir) as bus:
        blob = await bus.get_blob(topology.CHECKPOINTS_BUCKET, run_id)
    return torch.load(io.BytesIO(blob), weights_only=True)


async def _seed_memory(stack_dir: Path) -> None:
    """One successful training group so memory has an experience to retrieve: the tiny random
    policy never succeeds by itself, and self-navigating needs something to navigate by."""
    async with _stack_bus(stack_dir) as bus:
        task = task_pb2.Task(task_id="syn-memory-seed", env_id="bfcl", source=task_pb2.TASK_SOURCE_SYNTHETIC,
                             query="Create a directory named reports, then list the files.")
        traj = tpb.Trajectory(trajectory_id="seed.r0", task_id=task.task_id, reward=tpb.Reward(score=1, success=True))
        traj.steps.append(tpb.Step(index=0, tool_calls=[tpb.ToolCall(call_id="c0", name="mkdir",
                                                                     arguments_json='{"dir_name": "reports"}')],
                                   observations=[tpb.Observation(call_id="c0", kind=tpb.OBSERVATION_KIND_RESULT,
                                                                 content="null")]))
        group = tpb.RolloutGroup(group_id="memory-seed.s0.t0", run_id="memory-seed", task_id=task.task_id,
                                 trajectories=[traj])
        await bus.publish("rollout.completed", events_pb2.RolloutCompleted(group=group, task=task),
                          key=group.group_id)


def _write(tmp_path: Path, name: str, **changes) -> Path:
    cfg = json.loads(json.dumps(SMALL))
    for k, v in changes.items():
        cfg[k] = v
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_end_to_end_run_trains_two_steps_and_writes_a_report(stack_dir, tmp_path):
    asyncio.run(_seed_memory(stack_dir))
    r = cli(stack_dir, "run", "--config", str(_write(tmp_path, "run.yaml")), "--run-id", "e2e", "--out",
            str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    run_dir = tmp_path / "runs" / "e2e"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["state"] == "SUCCEEDED" and run["train_step"] == 2 and run["policy_version"] == 2
    progress = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [p for p in progress if p["phase"] == "trained"]
    assert [p["metrics"]["policy_version"] for p in trained] == [1, 2]
    assert all(p["metrics"]["samples"] > 0 for p in trained)
    assert len([p for p in progress if p["phase"] == "evaluated"]) == 2  # before and after
    report = (run_dir / "report.md").read_text()
    assert "Held-out evaluation" in report and (run_dir / "reward.png").stat().st_size > 1000
    assert (run_dir / "pipeline.png").exists()

    ev = asyncio.run(_events(stack_dir, "e2e"))
    training = [c for c in ev.completed if not c.evaluation and not c.demonstration]
    assert sorted(c.group.group_id for c in training) == ["e2e.s0.t0", "e2e.s0.t1", "e2e.s1.t0", "e2e.s1.t1"]
    # questioning on: trained on synthetic tasks only; policy versions advance and are used
    assert all(c.task.task_id.startswith("syn-") and c.task.split == "train" for c in training)
    # asynchronous by default (max_policy_lag 1): step 1's groups were generated by version 0
    # while step 0 trained; the final evaluation ran the last version
    assert [c.group.trajectories[0].policy_version for c in sorted(training, key=lambda c: c.group.group_id)] == [0, 0, 0, 0]
    assert {t.policy_version for c in ev.completed if c.evaluation and c.group.train_step == 2
            for t in c.group.trajectories} == {2}
    assert [p.policy.version for p in ev.policies] == [1, 2]
    assert all(p["metrics"]["stale_groups"] == 0 for p in trained)
    for c in training:
        for t in c.group.trajectories:
            tok = t.tokens
            assert len(tok.token_ids) == len(tok.loss_mask) == len(tok.step_ids) == len(tok.behaviour_logprobs)
            assert sum(tok.loss_mask) > 0 and tok.logprobs_exact
    # navigating on: half of each group was guided, with experiences from memory
    assert any(t.experience_ids for c in training for t in c.group.trajectories)
    assert all(sum(1 for t in c.group.trajectories if t.experience_ids) <= 1 for c in training)
    # attributing on: every valid trajectory got state-progress labels, one per step
    for a in [a for a in ev.attributed if not a.evaluation and not a.demonstration]:
        by_id = {x.trajectory_id: x for x in a.attributions}
        for t in a.group.trajectories:
            if not t.infra_failure.reason:
                assert len(by_id[t.trajectory_id].labels) == len(t.steps)
    summary = json.loads((run_dir / "events_summary.json").read_text())
    assert summary["training_groups"] == 4 and summary["policy_versions_published"] == 2
    _check_one_trace_per_rollout(stack_dir)


@pytest.mark.parametrize("switch", ["questioning", "navigating", "attributing"])
def test_each_mechanism_switch_changes_what_flows(stack_dir, tmp_path, switch):
    mechanisms = {"questioning": True, "navigating": True, "attributing": True, switch: False}
    run_id = f"off-{switch}"
    r = cli(stack_dir, "run", "--config", str(_write(tmp_path, "run.yaml", steps=1, mechanisms=mechanisms,
                                                     eval={"synthetic_tasks": 0, "seed_tasks": 0, "k": 1})),
            "--run-id", run_id, "--out", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    ev = asyncio.run(_events(stack_dir, run_id))
    training = [c for c in ev.completed if not c.evaluation and not c.demonstration]
    assert len(training) == 2
    trajs = [t for c in training for t in c.group.trajectories]
    attributed = [a for a in ev.attributed if not a.evaluation and not a.demonstration]
    if switch == "questioning":  # the environment's own seed tasks, never synthetic ones
        assert all(c.task.source == task_pb2.TASK_SOURCE_SEED and not c.task.task_id.startswith("syn-")
                   for c in training)
    else:
        assert all(c.task.source == task_pb2.TASK_SOURCE_SYNTHETIC for c in training)
    if switch == "navigating":  # nothing injected
        assert not any(t.experience_ids for t in trajs)
    else:
        assert any(t.experience_ids for t in trajs)
    if switch == "attributing":  # no labels: plain GRPO advantages
        assert attributed and all(not a.attributions for a in attributed)
    elif switch == "navigating":
        assert attributed and all(a.attributions for a in attributed)


@pytest.mark.timeout(600)
def test_the_llm_roles_run_on_the_local_model_and_lose_nothing(stack_dir, tmp_path):
    """questioning.task_writer, rollout.reward_judge and attributing.labeler llm, their roles on the local endpoint (the
    stack's model, here the tiny random transformer: its replies rarely parse, which exercises
    the fallbacks). Output quality is not the point: tasks are still written, every trajectory
    is labelled, each call is counted."""
    # BFCL's server again under its own id: an empty task pool, so this run's questioning writes one
    address = asyncio.run(_env_address(stack_dir, "bfcl"))
    assert cli(stack_dir, "env", "add", address, "--id", "bfcl-llm").returncode == 0
    # Short walks and one-call tasks: every LLM call on the local model costs its full token cap.
    # One train task is enough here (one group of 2 rollouts): these walks make 1 or 2 tasks, and
    # since answer facts must be values, an echo of the request's own words is rejected as trivial.
    questioning = {**SMALL["questioning"], "task_writer": "llm", "explorer": "llm", "feasibility": "llm",
                   "explorations": 1, "max_steps_per_walk": 3, "max_calls_per_task": 1, "min_train_tasks": 1,
                   "wait_s": 600}
    r = cli(stack_dir, "run", "--config", str(_write(tmp_path, "llm.yaml", steps=1, tasks_per_step=1, questioning=questioning,
                                                     env_id="bfcl-llm",
                                                     attributing={"labeler": "llm"},
                                                     rollout={**SMALL["rollout"], "reward_judge": "llm"},
                                                     navigating={**SMALL["navigating"], "extractor": "llm",
                                                                 "rewrite": True},
                                                     eval={"synthetic_tasks": 0, "seed_tasks": 0, "k": 1})),
            "--run-id", "llm-labels", "--out", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    progress = [json.loads(x) for x in (tmp_path / "runs" / "llm-labels" / "metrics.jsonl").read_text().splitlines()]
    asked = [p["metrics"] for p in progress if p["phase"] == "questioning" and "llm/task_writer/calls" in p["metrics"]]
    # one call per walk (1 exploration x 2 walks); an unusable reply: that walk's template tasks
    assert asked and asked[-1]["llm/task_writer/calls"] == 2
    # the LLM explorer: one call per walk step (2 walks of 3 steps), a planner step per unusable
    # reply; then one solver call or more per candidate (counted under the explorer role too)
    assert asked[-1]["llm/explorer/calls"] >= 6
    assert asked[-1]["llm/explorer/fallbacks"] >= asked[-1]["llm/explorer/call_failures"]
    assert asked[-1]["llm/judge/calls"] >= 1  # the feasibility verdicts (the solver's calls count as explorer)
    assert asked[-1]["llm/task_writer/fallbacks"] == (asked[-1]["llm/task_writer/parse_failures"]
                                                      + asked[-1]["llm/task_writer/call_failures"])
    ev = asyncio.run(_events(stack_dir, "llm-labels"))
    attributed = [a for a in ev.attributed if not a.evaluation and not a.demonstration]
    assert len(attributed) == 1  # tasks_per_step 1
    calls = labelled = fallbacks = 0
    judged = 0
    for a in attributed:
        by_role = {u.role: u for u in a.role_usage}  # the explorer's judge, the attributor's labeller
        judge, usage = by_role["judge"], by_role["step_attributor"]
        valid = [t for t in a.group.trajectories if not t.infra_failure.reason]
        assert judge.role == "judge" and judge.calls == len(valid)
        assert judge.fallbacks == judge.parse_failures + judge.call_failures
        judged += judge.calls
        assert usage.role == "step_attributor" and usage.calls == len(valid) and usage.prompt_tokens > 0
        assert usage.parse_failures + usage.call_failures == usage.fallbacks
        by_id = {x.trajectory_id: x for x in a.attributions}
        for t in valid:  # nothing lost: LLM labels or the counted fallback, one per step
            x = by_id[t.trajectory_id]
            assert len(x.labels) == len(t.steps)
            llm = x.method == 2  # ATTRIBUTION_METHOD_LLM_JUDGE
            assert (x.prompt_version == "step_attributor/v2") == llm
            labelled += llm
        calls, fallbacks = calls + usage.calls, fallbacks + usage.fallbacks
    assert labelled + fallbacks == calls
    run_dir = tmp_path / "runs" / "llm-labels"
    (trained,) = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()
                  if json.loads(x)["phase"] == "trained"]
    assert trained["metrics"]["llm/step_attributor/calls"] == calls
    assert trained["metrics"]["llm/step_attributor/fallbacks"] == fallbacks
    assert trained["metrics"]["llm/judge/calls"] == judged
    assert "## LLM roles" in (run_dir / "report.md").read_text()
    summary = json.loads((run_dir / "events_summary.json").read_text())  # memory's extractor, per group
    assert summary["llm/experience_extractor/calls"] >= len(attributed)
    from evolver.cli.observe import load_spans
    spans_path, deadline = Path(Stack(stack_dir).read_state().spans_path), time.monotonic() + 20

    def llm_spans() -> list[dict]:  # a span per call, with its role (exported in batches)
        return [s for s in load_spans(spans_path) if s["name"] == "llm step_attributor"
                and s["service"] == "attributor" and s["attributes"].get("evolver.llm.role") == "step_attributor"]
    while len(llm_spans()) < calls and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(llm_spans()) >= calls


def test_self_bootstrapping_warm_starts_on_train_tasks_only_and_is_evaluated_at_three_points(stack_dir, tmp_path):
    mechanisms = {"questioning": True, "navigating": True, "attributing": True, "bootstrapping": True}
    config = _write(tmp_path, "boot.yaml", steps=1, mechanisms=mechanisms,
                    bootstrapping={"max_tasks": 3, "epochs": 1, "batch": 2, "between_steps": True,
                                   "imitation_learning_rate": 3e-4},
                    training={**SMALL["training"], "kl_reference": "warm_start"},
                    eval={"synthetic_tasks": 2, "seed_tasks": 1, "k": 1})
    r = cli(stack_dir, "run", "--config", str(config), "--run-id", "boot", "--out", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "synthetic_avg_at_k (before -> after)" in r.stdout
    run_dir = tmp_path / "runs" / "boot"
    progress = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    warm = [p for p in progress if p["phase"] == "warm_start"]
    assert warm and warm[-1]["metrics"]["demonstrations"] > 0 and warm[-1]["metrics"]["updates"] == 2
    assert [p["metrics"]["stage"] for p in progress if p["phase"] == "evaluated"] == [0, 1, 2]  # base, warm, RL
    trained = [p["metrics"] for p in progress if p["phase"] == "trained"]
    imitated = trained[-1]["imitated_successes"]  # between steps: a supervised step when the step had successes
    assert imitated <= trained[-1]["success_rate"] * trained[-1]["trajectories"] + 1e-9
    assert trained[-1]["learning_rate"] == pytest.approx(SMALL["training"].get("learning_rate", 2e-4))  # the RL step's
    if imitated:  # the imitation step at its own rate, not the warm start's 1e-3
        assert trained[-1]["imitation_learning_rate"] == pytest.approx(3e-4)
    # 2 warm-start updates + 1 RL step (+ 1 imitation step when there was a success to imitate)
    assert json.loads((run_dir / "run.json").read_text())["policy_version"] == 3 + (imitated > 0)
    ckpt = asyncio.run(_checkpoint(stack_dir, "boot"))
    ev = asyncio.run(_events(stack_dir, "boot"))
    train_ids = {t.task_id for a in ev.accepted for t in a.tasks if t.split == "train"}
    demos = ckpt["bootstrap_task_ids"]
    assert demos and set(demos) <= train_ids  # synthetic train tasks only
    assert not set(demos) & set(ckpt["eval_task_ids"])  # never a held-out or test task
    warm = [c for c in ev.completed if c.evaluation and ".warm0." in c.group.group_id]
    assert warm and all(t.policy_version == 2 for c in warm for t in c.group.trajectories)  # the warm-started policy
    published = [c for c in ev.completed if c.demonstration]
    assert sorted(c.task.task_id for c in published) == sorted(demos)  # memory starts with them
    assert "warm start" in (run_dir / "report.md").read_text() and (run_dir / "change.png").exists()
    weights = asyncio.run(_checkpoint_weights(stack_dir, "boot"))  # the KL reference: the warm-started policy
    assert weights["reference"] is not None and weights["reference"].keys() == weights["params"].keys()
    warm_weights = weights["weights_at"][2]  # version 2: after the two warm-start updates
    assert all(torch.equal(weights["reference"][k], warm_weights[k]) for k in warm_weights)

    # A later run starts RL from the warm start the run folder kept, without fine-tuning again,
    # and (eval.before_training off) without evaluating the base model and warm start again.
    kept = unpack((run_dir / "warm_start.bin").read_bytes())
    assert kept.source_run == "boot" and kept.task_ids == demos and kept.updates == 2
    config = _write(tmp_path, "boot-again.yaml", steps=1, mechanisms=mechanisms,
                    bootstrapping={"max_tasks": 3, "epochs": 1, "batch": 2, "between_steps": True,
                                   "imitation_learning_rate": 3e-4},
                    training={**SMALL["training"], "kl_reference": "warm_start"},
                    eval={"synthetic_tasks": 2, "seed_tasks": 1, "k": 1, "before_training": False})
    r = cli(stack_dir, "run", "--config", str(config), "--run-id", "boot-again", "--out", str(tmp_path / "runs"),
            "--warm-start", str(run_dir / "warm_start.bin"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "synthetic_avg_at_k (after)" in r.stdout and "before -> after" not in r.stdout
    again = [json.loads(x) for x in (tmp_path / "runs" / "boot-again" / "metrics.jsonl").read_text().splitlines()]
    assert [p["metrics"]["stage"] for p in again if p["phase"] == "evaluated"] == [2]  # after RL only
    reused = [p["metrics"] for p in again if p["phase"] == "warm_start"][-1]
    assert reused["reused"] == 1 and reused["updates"] == 2 and reused["policy_version"] == 2
    assert asyncio.run(_checkpoint(stack_dir, "boot-again"))["bootstrap_task_ids"] == demos
    restored = asyncio.run(_checkpoint_weights(stack_dir, "boot-again"))
    assert all(torch.equal(restored["weights_at"][2][k], warm_weights[k]) for k in warm_weights)  # exactly the source's
    assert all(torch.equal(restored["reference"][k], warm_weights[k]) for k in warm_weights)  # anchored there too


def test_a_time_budget_ends_the_run_early_evaluated_and_says_so(stack_dir, tmp_path):
    """A budget already spent by the base evaluation: the first step runs (always), the next
    steps' rollouts are never asked for, the run evaluates after step 1 and succeeds saying 1 of 3."""
    config = _write(tmp_path, "budget.yaml", steps=3, time_budget_minutes=0.001,
                    eval={"synthetic_tasks": 1, "seed_tasks": 0, "k": 1})
    r = cli(stack_dir, "run", "--config", str(config), "--run-id", "budget", "--out", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "1 of 3 RL steps fitted" in r.stdout
    run_dir = tmp_path / "runs" / "budget"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["state"] == "SUCCEEDED" and run["train_step"] == 1
    assert run["message"] == "done: 1 of 3 RL steps fitted the time budget of 0.001 min"
    progress = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [p["train_step"] for p in progress if p["phase"] == "evaluated"] == [0, 1]  # before, and after step 1
    assert [p["metrics"]["steps_planned"] for p in progress if p["phase"] == "trained"] == [1]
    finished = [p["metrics"] for p in progress if p["phase"] == "finished"][-1]
    assert (finished["steps_done"], finished["steps_configured"]) == (1, 3)
    ev = asyncio.run(_events(stack_dir, "budget"))
    training = {c.group.group_id for c in ev.completed if not c.evaluation and not c.demonstration}
    assert training == {"budget.s0.t0", "budget.s0.t1"}  # step 1's rollouts were never asked for
    ckpt = asyncio.run(_checkpoint(stack_dir, "budget"))
    assert ckpt["planned_steps"] == 1 and len(ckpt["eval_s"]) == 2 and ckpt["started_unix"] > 0


@pytest.mark.parametrize("lag", [0, 1])
def test_sigkilled_services_lose_no_group_and_none_is_trained_twice(stack_dir, lag):
    """Synchronous (lag 0) and asynchronous (lag 1: the next step's groups in flight while a
    step trains, so a kill always finds some)."""
    spec = RunSpec.model_validate({**SMALL, "steps": 3, "group_size": 3,
                                   "rollout": {**SMALL["rollout"], "max_new_tokens": 48, "max_policy_lag": lag},
                                   "eval": {"synthetic_tasks": 0, "seed_tasks": 0, "k": 1}})
    stack = Stack(stack_dir)
    run_id = f"crash-lag{lag}"

    async def trainer_call(method, request):
        async with channel(stack.read_state().address_of("trainer")) as ch:
            return await getattr(stub(tr_grpc.TrainerServiceStub, ch, 30.0), method)(request)

    asyncio.run(trainer_call("StartRun", tr_pb.StartRunRequest(run_id=run_id, config=to_run_config(spec))))

    def run_now() -> run_pb2.Run:
        return asyncio.run(trainer_call("GetRun", tr_pb.GetRunRequest(run_id=run_id))).run

    def wait_for(pred, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = run_now()
            if pred(run):
                return run
            time.sleep(0.3)
        raise AssertionError(f"timed out; run is {run_now()}")

    wait_for(lambda r: r.train_step >= 1)
    killed = cli(stack_dir, "restart", "explorer", "--kill")  # mid-run: step 1's groups are in flight
    assert killed.returncode == 0, killed.stdout + killed.stderr
    wait_for(lambda r: r.train_step >= 2)
    killed = cli(stack_dir, "restart", "trainer", "--kill")  # the trainer resumes from its checkpoint
    assert killed.returncode == 0, killed.stdout + killed.stderr
    run = wait_for(lambda r: r.state in (run_pb2.RUN_STATE_SUCCEEDED, run_pb2.RUN_STATE_FAILED))
    assert run.state == run_pb2.RUN_STATE_SUCCEEDED, run.message
    assert run.train_step == 3 and run.policy_version == 3

    ckpt = asyncio.run(_checkpoint(stack_dir, run_id))
    expected = [f"{run_id}.s{s}.t{i}" for s in range(3) for i in range(2)]
    assert sorted(ckpt["consumed"]) == expected  # every group trained on, each exactly once
    ev = asyncio.run(_events(stack_dir, run_id))
    completed = {c.group.group_id for c in ev.completed}
    assert set(expected) <= completed  # no group lost
    assert [p.policy.version for p in ev.policies] == [1, 2, 3]
    for c in ev.completed:  # every group within the staleness bound of the step that trained it
        assert all(c.group.train_step - lag <= t.policy_version <= c.group.train_step
                   for t in c.group.trajectories if not t.infra_failure.reason)


def _check_one_trace_per_rollout(stack_dir: Path) -> None:
    """One trace per rollout, from the trainer's request through explorer, environment, memory
    and attributor to the training step that consumed it; `evolver trace` prints it."""
    from evolver.cli.observe import find_traces, load_spans
    spans_path = Path(Stack(stack_dir).read_state().spans_path)
    rollout = "e2e.s1.t0"
    deadline = time.monotonic() + 20  # spans are exported in batches
    while True:
        spans = load_spans(spans_path)
        traces = find_traces(spans, rollout)
        names = {s["name"] for s in spans if s["trace_id"] in traces}
        if f"train on {rollout}" in names or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(traces) == 1, traces
    trace = [s for s in spans if s["trace_id"] == traces[0]]
    by_id = {s["span_id"]: s for s in trace}
    roots = [s for s in trace if s["parent_span_id"] is None]
    assert [r["name"] for r in roots] == [f"rollout {rollout}"] and roots[0]["service"] == "trainer"
    assert all(s["parent_span_id"] in by_id for s in trace if s["parent_span_id"])  # one connected tree
    services = {s["service"] for s in trace}
    assert {"trainer", "explorer", "env-bfcl", "memory", "attributor"} <= services
    consumed = [s for s in trace if s["name"].startswith("process ")]
    assert {s["attributes"]["messaging.destination.name"] for s in consumed} >= {
        "rollout.requested", "rollout.completed", "rollout.attributed"}
    assert all(s["attributes"]["messaging.system"] == "nats" and s["attributes"]["messaging.message.id"]
               for s in consumed)
    assert any(s["name"].startswith("trajectory ") for s in trace)
    train = [s for s in trace if s["name"] == f"train on {rollout}"]
    assert len(train) == 1 and train[0]["attributes"]["evolver.train_step"] == 1

    out = cli(stack_dir, "trace", rollout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"rollout {rollout}" in out.stdout and f"train on {rollout}" in out.stdout
