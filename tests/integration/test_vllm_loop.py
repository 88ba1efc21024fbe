"""The loop with `policy.backend: openai` on the vLLM emulator (vLLM has no CPU build): the
embedded stack's explorer generates every rollout through the emulator, loading each policy
version's adapter into it. Two training steps; then the emulator's own record says which adapter
generated each turn."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import torch
import yaml

from evolver.bus import Bus
from evolver.config import load_settings
from evolver.models.openai_compat import adapter_name
from evolver.stack import Stack
from evolver.v1 import events_pb2, task_pb2
from services.trainer.advantages import Sample
from services.trainer.updater import PolicyUpdater, split_point
from tests.integration._helpers import SERVED, dead_letters, embedded_stack, start_emulator
from tests.integration.test_loop import _events, cli

pytestmark = pytest.mark.integration
RUN = "vllm-e2e"
CONFIG = {
    "steps": 2, "tasks_per_step": 2, "group_size": 2, "eval_every": 0, "seed": 5,
    "mechanisms": {"questioning": False, "navigating": False, "attributing": True},
    # synchronous: step 2's groups come from version 1, the policy that step trains
    "rollout": {"max_steps": 2, "max_new_tokens": 12, "max_tools_shown": 3, "timeout_s": 240, "max_policy_lag": 0},
    "training": {"learning_rate": 0.01, "lora_r": 4, "lora_alpha": 8},
    "eval": {"synthetic_tasks": 0, "seed_tasks": 1, "k": 2},
}


@pytest.fixture(scope="module")
def vllm_stack(tmp_path_factory, tiny_model_dir):
    # float32 in the server and the trainer: the behaviour log-probs must match the trainer's to
    # 2e-3 (float32's agreement; bfloat16, an AMX CPU's measured default, differs by ~8e-3).
    url, emulator = start_emulator(tiny_model_dir, max_model_len=8192, dtype="float32")
    root = tmp_path_factory.mktemp("vllm-loop")
    try:
        yield from ((url, d) for d in embedded_stack(
            root / "stack", tiny_model_dir, cli, EVOLVER_POLICY__BACKEND="openai", EVOLVER_POLICY__ENDPOINT=url,
            EVOLVER_POLICY__MODEL=SERVED, EVOLVER_POLICY__ADAPTER_DIR=str(root / "adapters"),
            EVOLVER_POLICY__COMPUTE_DTYPE="float32"))
    finally:
        emulator.terminate()
        emulator.wait(15)


def test_two_steps_on_vllm_every_turn_generated_by_the_version_its_job_named(vllm_stack, tmp_path, tiny_model_dir):
    url, stack_dir = vllm_stack
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    r = cli(stack_dir, "run", "--config", str(cfg), "--run-id", RUN, "--out", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    run = json.loads((tmp_path / "runs" / RUN / "run.json").read_text())
    assert run["state"] == "SUCCEEDED" and run["policy_version"] == 2

    ev = asyncio.run(_events(stack_dir, RUN))
    training = sorted((c for c in ev.completed if not c.evaluation), key=lambda c: c.group.group_id)
    evaluation = [c for c in ev.completed if c.evaluation]
    assert [c.group.train_step for c in training] == [0, 0, 1, 1]
    trajs = {step: [t for c in training if c.group.train_step == step for t in c.group.trajectories] for step in (0, 1)}
    assert all(not t.infra_failure.reason for ts in trajs.values() for t in ts)
    assert {t.policy_version for t in trajs[0]} == {0} and {t.policy_version for t in trajs[1]} == {1}
    assert all(t.tokens.logprobs_exact for ts in trajs.values() for t in ts)

    # The emulator's record: every turn of step 2 came from version 1's adapter, and version 1
    # served nothing else (one ledger entry per assistant turn).
    ledger = httpx.get(url.removesuffix("/v1") + "/emulator/ledger").json()["requests"]
    by_model: dict[str, int] = {}
    for entry in ledger:
        by_model[entry["model"]] = by_model.get(entry["model"], 0) + 1
    turns = {step: sum(len(t.steps) for t in trajs[step]) for step in (0, 1)}
    assert turns[1] > 0 and by_model.get(adapter_name(RUN, 1)) == turns[1]
    final_eval = [t for c in evaluation if c.group.train_step == 2 for t in c.group.trajectories]
    assert by_model.get(adapter_name(RUN, 2)) == sum(len(t.steps) for t in final_eval)
    base_eval = [t for c in evaluation if c.group.train_step == 0 for t in c.group.trajectories]
    assert by_model.get(SERVED) == turns[0] + sum(len(t.steps) for t in base_eval)

    # The emulator's behaviour log-probs are the trainer's recomputation at version 0.
    upd = PolicyUpdater(tiny_model_dir, learning_rate=1e-3, lora_r=4, lora_alpha=8, beta=0.0, epsilon=0.2,
                        epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0, compute_dtype=torch.float32)
    worst = 0.0
    for t in trajs[0]:
        tok = t.tokens
        s = Sample(t.trajectory_id, "g", list(tok.token_ids), list(tok.loss_mask), [1.0] * len(tok.token_ids),
                   list(tok.behaviour_logprobs), True, False, 0.0)
        cut = split_point(s.loss_mask)
        recomputed = upd.recompute_logprobs(s)
        worst = max([worst] + [abs(r - b) for r, b, m in zip(recomputed, s.behaviour_logprobs[cut:], s.loss_mask[cut:])
                               if m])
    assert worst < 2e-3, f"behaviour log-probs differ from the trainer's by up to {worst}"


async def _publish_foreign_job(stack_dir) -> list:
    state = Stack(stack_dir).read_state()
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": state.nats_url}), name="test")
    try:
        await bus.publish("rollout.requested", events_pb2.RolloutRequested(
            job_id="foreign-model-job", run_id="foreign", group_size=1, max_steps=1, max_new_tokens=4,
            task=task_pb2.Task(task_id="multi_turn_base_1", env_id="bfcl"), base_model="llama-7b",
            base_model_digest="f" * 64), key="foreign-model-job")
        for _ in range(60):
            dead = [d for d in await dead_letters(bus, "rollout.requested")
                    if "foreign-model-job" in d.headers.get("Nats-Msg-Id", "") or b"foreign-model-job" in d.data]
            if dead:
                return dead
            await asyncio.sleep(0.5)
        return []
    finally:
        await bus.close()


def test_an_explorer_with_another_base_model_refuses_the_job_clearly(vllm_stack):
    _, stack_dir = vllm_stack
    dead = asyncio.run(_publish_foreign_job(stack_dir))
    assert dead, "the job was not dead-lettered"
    reason = dead[0].headers["Dlq-Reason"]
    assert "base_model" in reason and "llama-7b" in reason and "ffffffffffff" in reason
