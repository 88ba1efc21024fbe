"""An evaluation that can see a change: an attempt's sampling depends on (seed, task, attempt)
alone, so the same policy scores the same twice; before -> after changes come with a paired
bootstrap interval."""

from __future__ import annotations

import pytest
import torch

from evolver.agent.rollout import RolloutOptions, attempt_seed, run_group, shown_tools
from evolver.algorithms.stats import eval_deltas, evaluation_points, paired_delta, pooled_delta
from evolver.models.backend import GenerationRequest, SamplingParams
from evolver.models.batching import BatchingBackend
from evolver.config import ConfigError, load_settings
from evolver.models.decode import dtype_setting, fast_dtype
from evolver.models.hf import HFBackend
from tests.bfcl_tasks import mkdir_task


def test_a_requests_tokens_do_not_depend_on_its_batch(tiny_model_dir, tokenizer):
    backend = HFBackend(tiny_model_dir, threads=2)
    prompts = [tokenizer(f"<|im_start|>user\n{q}<|im_end|>\n")["input_ids"] for q in ("list files", "make a folder now",
                                                                                     "what time is it")]
    reqs = [GenerationRequest(p, SamplingParams(max_new_tokens=12, temperature=1.0, seed=100 + i))
            for i, p in enumerate(prompts)]
    together = backend.generate_sync(reqs)
    alone = [backend.generate_sync([r])[0] for r in reqs]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert len({tuple(c.token_ids) for c in together}) == 3  # different seeds, different samples
    other_seed = backend.generate_sync([GenerationRequest(prompts[0], SamplingParams(max_new_tokens=12, temperature=1.0,
                                                                                     seed=7))])[0]
    assert other_seed.token_ids != together[0].token_ids


async def test_the_same_policy_evaluated_twice_scores_the_same(bfcl, tiny_model_dir):
    task = await mkdir_task(bfcl)
    opts = RolloutOptions(group_size=4, guided_share=0.0, temperature=1.0, max_steps=2, max_new_tokens=10, seed=3)
    runs = []
    for concurrent in (True, False):  # batched together, then one at a time
        backend = BatchingBackend(HFBackend(tiny_model_dir, threads=2))
        group = await run_group(backend, bfcl, task, opts, group_id="g", concurrent=concurrent)
        runs.append([(list(t.tokens.token_ids), t.reward.score) for t in group])
        await backend.aclose()
    assert runs[0] == runs[1]
    assert attempt_seed(3, task.task_id, 0) != attempt_seed(3, task.task_id, 1) != attempt_seed(4, task.task_id, 1)
    assert attempt_seed(3, task.task_id, 2) == attempt_seed(3, task.task_id, 2)


async def test_the_reference_tools_are_never_shown_alone(bfcl):
    task = await mkdir_task(bfcl)
    ep = await bfcl.create(seed_task_id="multi_turn_base_0")
    shown = {t.name for t in shown_tools(ep.tools, task, 1, seed=0)}
    assert "mkdir" in shown and len(shown) == 3  # the reference tool and two distractors
    await ep.release()


def test_paired_bootstrap_intervals():
    same = {f"t{i}": i / 10 for i in range(10)}
    d = paired_delta(same, same)
    assert (d.delta, d.low, d.high, d.excludes_zero) == (0, 0, 0, False)
    up = {t: v + 0.25 for t, v in same.items()}
    assert paired_delta(same, up).low > 0.2 and paired_delta(same, up).excludes_zero
    noisy_after = {f"t{i}": (0.0 if i % 2 else 0.2) for i in range(10)}
    noisy = paired_delta({f"t{i}": 0.1 for i in range(10)}, noisy_after)
    assert noisy.low < 0 < noisy.high and not noisy.excludes_zero
    assert paired_delta({"a": 1.0}, {"b": 0.0}) is None
    assert pooled_delta([(same, up), (same, same)]).tasks == 20
    first = {"task_avg:synthetic/t1": 0.0, "task_avg:synthetic/t2": 0.5, "task_avg:seed/s1": 0.0, "eval_x": 1.0}
    last = {"task_avg:synthetic/t1": 0.5, "task_avg:synthetic/t2": 0.5, "task_avg:seed/s1": 0.0}
    deltas = eval_deltas(first, last)
    assert set(deltas) == {"synthetic", "seed"} and deltas["synthetic"].delta == 0.25 and deltas["seed"].tasks == 1


def test_a_runs_changes_start_from_its_base_evaluation_only():
    base = {"stage": 0.0, "task_avg:synthetic/t1": 0.0, "task_avg:synthetic/t2": 0.0}
    warm = {"stage": 1.0, "task_avg:synthetic/t1": 0.5, "task_avg:synthetic/t2": 0.0}
    mid = {"stage": 2.0, "task_avg:synthetic/t1": 0.5, "task_avg:synthetic/t2": 0.25}
    end = {"stage": 2.0, "task_avg:synthetic/t1": 1.0, "task_avg:synthetic/t2": 0.5}
    points = {(a, b): d["synthetic"].delta for a, b, d in evaluation_points([base, warm, mid, end])}
    assert points == {("base", "warm start"): 0.25, ("warm start", "end"): 0.5, ("base", "end"): 0.75}
    # eval.before_training off: a mid-RL evaluation is not a base, so the run reports no change
    assert evaluation_points([mid, end]) == [] and evaluation_points([end]) == []


def test_the_compute_dtype_is_measured():
    assert fast_dtype(min_gain=1e9) == torch.float32  # bf16 never wins by a billion times
    assert fast_dtype(min_gain=0.0) == torch.bfloat16  # any rate beats zero
    # settings.policy.compute_dtype: "auto" leaves it to the measurement, the others force it
    assert dtype_setting("auto") is None and dtype_setting("float32") == torch.float32
    assert load_settings(environ={"EVOLVER_POLICY__COMPUTE_DTYPE": "bfloat16"}).policy.compute_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="policy.compute_dtype"):
        load_settings(environ={"EVOLVER_POLICY__COMPUTE_DTYPE": "float8"})
