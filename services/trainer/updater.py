"""The policy update: TRL's GRPOTrainer loss, fed our own rollouts.

`AdcaGrpoTrainer` subclasses TRL's GRPOTrainer and keeps its loss (clipped token ratios against
the behaviour log-probs, KL to the reference with the k3 estimator, token-mean aggregation via
loss_type="bnpo") while:
  - taking per-token advantages (B, T) from ADCA-GRPO instead of one scalar per sequence;
  - taking the rollouts' behaviour log-probs as old_per_token_logps when the backend returned
    exact ones and both sides compute in float32 (they then agree to ~1e-5 nats); in bfloat16
    they differ by ~0.05 nats on average, up to 0.23 (bench/logprob_agreement.py), so the
    trainer recomputes them in its own numerics, as AgentEvolver's actor always does (spec §4.6),
    with the LoRA weights of the version that generated each sample (kept for the last
    `keep_versions` versions), so a lagged group's ratio is still its importance weight;
  - using a per-sequence upper clip: off_cliprange_high for experience-guided trajectories,
    epsilon_high for the rest (AgentEvolver §4.6).
Generation is not TRL's: the explorers produce the rollouts, so the trainer never calls
GRPOTrainer.train(); `PolicyUpdater.update` runs one optimisation step on a batch.

Multi-turn sequences map onto TRL's prompt/completion split: the prompt is everything before the
policy's first token; the completion is the rest, with observation tokens masked out through
TRL's tool_mask."""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from services.trainer.advantages import Sample


def _trl():
    from trl import GRPOConfig, GRPOTrainer
    return GRPOConfig, GRPOTrainer


def make_trainer_class():
    _, GRPOTrainer = _trl()

    class AdcaGrpoTrainer(GRPOTrainer):
        def _compute_loss(self, model, inputs):
            saved = self.epsilon_low, self.epsilon_high
            if "epsilon_high" in inputs:
                self.epsilon_high = inputs["epsilon_high"]
                self.epsilon_low = torch.full_like(self.epsilon_high, saved[0])  # clamp needs both as tensors
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self.epsilon_low, self.epsilon_high = saved

    return AdcaGrpoTrainer


def split_point(loss_mask: Sequence[int]) -> int:
    for i, m in enumerate(loss_mask):
        if m:
            return i
    return len(loss_mask)


def build_inputs(samples: Sequence[Sample], pad_id: int, *, epsilon_high: float,
                 off_cliprange_high: float) -> dict[str, torch.Tensor]:
    """TRL GRPO inputs: prompts left-padded, completions right-padded, (B, T) advantages and
    behaviour log-probs aligned with completion tokens."""
    cuts = [split_point(s.loss_mask) for s in samples]
    p_len = max(cuts)
    c_len = max(len(s.token_ids) - c for s, c in zip(samples, cuts))
    b = len(samples)
    prompt_ids = torch.full((b, p_len), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((b, p_len), dtype=torch.long)
    completion_ids = torch.full((b, c_len), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((b, c_len), dtype=torch.long)
    tool_mask = torch.zeros((b, c_len), dtype=torch.long)
    advantages = torch.zeros((b, c_len))
    old = torch.zeros((b, c_len))
    for i, (s, cut) in enumerate(zip(samples, cuts)):
        p = s.token_ids[:cut]
        prompt_ids[i, p_len - len(p):] = torch.tensor(p, dtype=torch.long)
        prompt_mask[i, p_len - len(p):] = 1
        c = s.token_ids[cut:]
        n = len(c)
        completion_ids[i, :n] = torch.tensor(c, dtype=torch.long)
        completion_mask[i, :n] = 1
        tool_mask[i, :n] = torch.tensor(s.loss_mask[cut:], dtype=torch.long)
        advantages[i, :n] = torch.tensor(s.advantages[cut:])
        old[i, :n] = torch.tensor(s.behaviour_logprobs[cut:])
    eps_high = torch.tensor([[off_cliprange_high if s.guided else epsilon_high] for s in samples])
    return dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                completion_mask=completion_mask, tool_mask=tool_mask, advantages=advantages,
                old_per_token_logps=old, epsilon_high=eps_high,
                num_items_in_batch=tool_mask.sum())


class PolicyUpdater:
    """A LoRA policy on the base model, its optimizer, and one GRPO step at a time."""

    def __init__(self, model_dir: Path | str, *, learning_rate: float, lora_r: int, lora_alpha: int, beta: float,
                 epsilon: float, epsilon_high: float, off_cliprange_high: float, temperature: float,
                 max_grad_norm: float = 1.0, seed: int = 0, work_dir: Path | str | None = None,
                 gradient_checkpointing: bool = False, bf16: bool | None = None, clip_ratio_c: float | None = 3.0,
                 device: str | None = None, compute_dtype=None, recompute_old: bool | None = None,
                 keep_versions: int = 2):
        """gradient_checkpointing: trades compute for activation memory: off on a CPU (a 135M
        LoRA policy does not need it, bench/update.py), on for a 7B policy on a GPU.
        bf16: None = measured (decode.fast_dtype: bfloat16 on a GPU or an AMX CPU); True/False
        only for the benchmark's baseline. The frozen base weights are stored in the compute
        dtype (bfloat16: half the memory and no cast per forward); the LoRA weights stay float32.
        clip_ratio_c: AgentEvolver's dual clip for negative advantages (None: off).
        device: None = cuda when present, else cpu.
        compute_dtype: None = measured (decode.fast_dtype); torch.float32 only for the
        benchmark's float32 baseline on a machine that measures bfloat16.
        recompute_old: the importance ratio's denominator from a no-grad forward of this model
        rather than the rollouts' behaviour log-probs. None = when computing in bfloat16.
        keep_versions: LoRA weights kept per recent version for that recomputation (the
        asynchronous pipeline's max_policy_lag + 1); an older sample keeps its behaviour log-probs."""
        from datasets import Dataset
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from evolver.models.prepare import model_digest

        torch.manual_seed(seed)
        GRPOConfig, _ = _trl()
        from evolver.models.decode import fast_dtype
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.compute_dtype = compute_dtype if compute_dtype is not None else fast_dtype(self.device.type)
        self.recompute_old = self.compute_dtype != torch.float32 if recompute_old is None else recompute_old
        self.base_model = Path(model_dir).name
        self.base_model_digest = model_digest(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        # The frozen base weights in the compute dtype (float32 ones would be cast on every
        # forward); the LoRA weights and their optimizer state stay float32 (PEFT's adapter autocast).
        base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=self.compute_dtype)
        self.model = get_peft_model(base, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                                     task_type="CAUSAL_LM")).to(self.device)
        self.epsilon_high, self.off_cliprange_high, self.beta = epsilon_high, off_cliprange_high, beta
        self._work = Path(work_dir or tempfile.mkdtemp(prefix="evolver-trainer-"))
        args = GRPOConfig(output_dir=str(self._work / "trl"), per_device_train_batch_size=2, num_generations=2,
                          beta=beta, loss_type="bnpo", learning_rate=learning_rate, temperature=temperature,
                          epsilon=epsilon, epsilon_high=epsilon_high, max_grad_norm=max_grad_norm,
                          # TRL's two-sided clip: the ratio is capped at delta before the usual clipped
                          # min. For a negative advantage that is PPO's dual clip (the loss never
                          # exceeds -A*c); for a positive one the cap never binds (delta > 1+eps_high),
                          # so it is exactly AgentEvolver's dual clip (spec 4.6), shown in
                          # tests/unit/test_training.py by hand-computed losses.
                          delta=clip_ratio_c,
                          report_to=[], use_cpu=self.device.type != "cuda", save_strategy="no",
                          logging_steps=1, seed=seed, gradient_checkpointing=gradient_checkpointing,
                          # TRL defaults bf16 to True. On a CPU without AMX (AVX2) a bf16 matmul runs
                          # ~40x slower than float32: that made one update take 11-18 minutes here.
                          # Measured, like the rollouts' dtype (evolver.models.decode.fast_dtype).
                          bf16=self.compute_dtype == torch.bfloat16 if bf16 is None else bf16)
        if clip_ratio_c is not None and clip_ratio_c <= 1 + max(epsilon_high, off_cliprange_high):
            raise ValueError(f"clip_ratio_c ({clip_ratio_c}) must exceed 1 + the largest upper clip "
                             f"({1 + max(epsilon_high, off_cliprange_high)}): below it, it would clip positive advantages")
        trainer_cls = make_trainer_class()
        # TRL wants a dataset and reward functions to construct; we never call train() (the
        # explorers generate), so both are placeholders that are never used.
        self.trainer = trainer_cls(model=self.model, reward_funcs=[lambda **kw: [0.0] * len(kw["prompts"])],
                                   args=args, train_dataset=Dataset.from_list([{"prompt": "unused"}] * 2),
                                   processing_class=self.tokenizer)
        self.trainer.create_optimizer_and_scheduler(num_training_steps=10**6)
        self.trainer.current_gradient_accumulation_steps = 1
        self.version = 0
        self.keep_versions = keep_versions
        self._weights_at: dict[int, dict[str, torch.Tensor]] = {}  # version -> LoRA weights
        self._remember_weights()

    def _ref_logps(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The reference policy is the base model: the same network with the adapter disabled."""
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.no_grad(), self.model.disable_adapter():
            logps, _, _ = self.trainer._get_per_token_logps_and_entropies(
                self.model, ids, mask, inputs["completion_ids"].size(1))
        return logps

    def _recompute_old(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, _, _ = self.trainer._get_per_token_logps_and_entropies(
                self.model, ids, mask, inputs["completion_ids"].size(1))
        return logps

    def recompute_logprobs(self, s: Sample) -> list[float]:
        """The current policy's log-prob (sampling distribution) of each of the sample's tokens
        from its first policy token on: aligned with behaviour_logprobs[cut:] and loss_mask[cut:]
        (cut = the first policy token). What a rollout's behaviour log-probs are checked against."""
        inputs = build_inputs([s], self.pad_id, epsilon_high=self.epsilon_high, off_cliprange_high=self.off_cliprange_high)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return self._recompute_old(inputs)[0].float().cpu().tolist()

    def update(self, samples: Sequence[Sample], micro_batch: int = 2, *, supervised: bool = False,
               prompt_grad: bool = True, learning_rate: float | None = None, mini_batches: int = 1) -> dict[str, float]:
        """One training step over the samples: `mini_batches` optimizer steps (AgentEvolver: 4),
        each over its share of the samples, accumulated over micro-batches of `micro_batch`
        (weighted by their token counts, so each mini-batch's loss is its token mean). Behaviour
        and reference log-probs are fixed before the first optimizer step, so later mini-batches
        are importance-weighted against the policy that generated them. The version counts
        training steps, so it advances by one even when no sample carried a signal.

        supervised: a fine-tuning step on demonstrations (advantage 1 on every policy token).
        At ratio 1 with no KL term the GRPO loss's gradient is the token-mean negative
        log-likelihood's, so that is what runs: one forward and one backward pass instead of
        three forwards and one, and the reported loss is the NLL per token.
        prompt_grad=False (supervised only) runs the prompt (everything before the policy's first
        token: the system prompt with its tool schemas, ~1k tokens) without gradient and
        backpropagates through the rest: the LoRA weights then learn from the policy's positions
        only, at ~1/3 of the cost on a CPU (backward is 2x a forward, and the prompt is most of
        the sequence).
        learning_rate: for this step only (None: the optimizer's)."""
        self.model.train()
        groups = self.trainer.optimizer.param_groups
        saved = [g["lr"] for g in groups]
        if learning_rate is not None:  # this step only (the warm start fine-tunes faster than RL)
            for g in groups:
                g["lr"] = learning_rate
        try:
            return self._update(samples, micro_batch, supervised, prompt_grad, mini_batches)
        finally:
            for g, lr in zip(groups, saved):
                g["lr"] = lr

    def _nll(self, s: Sample, prompt_grad: bool) -> torch.Tensor:
        """Summed negative log-likelihood of the sample's policy tokens."""
        from evolver.models.decode import autocast
        ids = torch.tensor([s.token_ids], dtype=torch.long, device=self.device)
        cut = split_point(s.loss_mask)  # the policy's first token
        start = 0 if prompt_grad or cut < 2 else cut - 1
        with autocast(self.device.type, self.compute_dtype):
            if start == 0:
                logits = self.model(input_ids=ids).logits[0, :-1]
            else:
                with torch.no_grad():
                    past = self.model(input_ids=ids[:, :start], use_cache=True).cache
                logits = self.model(input_ids=ids[:, start:], cache=past, use_cache=True,
                                    position_ids=torch.arange(start, ids.shape[1], device=self.device)[None]).logits[0, :-1]
        targets = ids[0, start + 1:]
        mask = torch.tensor(s.loss_mask[start + 1:], dtype=torch.float32, device=self.device)
        # Of the sampling distribution, as the GRPO loss's log-probs are (TRL divides by the
        # rollout temperature too).
        logp = torch.log_softmax(logits.float() / self.trainer.temperature, dim=-1).gather(-1, targets[:, None])[:, 0]
        return -(logp * mask).sum()

    def _prepared(self, chunk: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """A micro-batch's loss inputs on the device, behaviour and reference log-probs filled in
        (at the weights of the moment: call before the step's first optimizer step)."""
        inputs = build_inputs(chunk, self.pad_id, epsilon_high=self.epsilon_high,
                              off_cliprange_high=self.off_cliprange_high)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if self.recompute_old:
            inputs["old_per_token_logps"] = self._old_at_versions(chunk, inputs)
        elif not all(s.logprobs_exact for s in chunk):
            inputs["old_per_token_logps"] = self._recompute_old(inputs)
        if self.beta:
            inputs["ref_per_token_logps"] = self._ref_logps(inputs)
        return inputs

    def _trainable(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.model.named_parameters() if v.requires_grad}

    def _remember_weights(self) -> None:
        """This version's LoRA weights (a few MB), for recomputing its samples' old log-probs."""
        self._weights_at[self.version] = {k: v.detach().clone() for k, v in self._trainable().items()}
        for v in [v for v in self._weights_at if v <= self.version - self.keep_versions]:
            del self._weights_at[v]

    def _old_at_versions(self, chunk: Sequence[Sample], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each row's old log-probs in this trainer's numerics under the weights that generated
        it: the current ones, or a kept earlier version's swapped in for one no-grad forward. A
        row from a version no longer kept keeps its behaviour log-probs when they are exact."""
        current = self.version
        old = inputs["old_per_token_logps"].clone()
        by_version: dict[int, list[int]] = {}
        for i, s in enumerate(chunk):
            v = current if s.policy_version is None else s.policy_version
            if v not in self._weights_at and s.logprobs_exact:
                continue
            by_version.setdefault(v if v in self._weights_at else current, []).append(i)
        for v, rows in by_version.items():
            with self._lora_at(v):
                old[rows] = self._recompute_old(inputs)[rows].to(old.dtype)
        return old

    @contextlib.contextmanager
    def _lora_at(self, version: int):
        """The LoRA weights of a kept version, swapped in for the block (none for the current one)."""
        if version == self.version:
            yield
            return
        params = self._trainable()
        now = {k: p.detach().clone() for k, p in params.items()}
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(self._weights_at[version][k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(now[k])

    def _update(self, samples: Sequence[Sample], micro_batch: int, supervised: bool,
                prompt_grad: bool = True, mini_batches: int = 1) -> dict[str, float]:
        trainer = self.trainer
        n_all = len(samples)
        # A sample whose every advantage is 0 has no policy-gradient term, only the KL penalty
        # (itself 0 while the policy equals the reference): left out, it saves a forward and a
        # backward pass. Reported as zero_advantage_samples.
        samples = [s for s in samples if any(a != 0.0 for a, m in zip(s.advantages, s.loss_mask) if m)]
        n_mini = max(1, min(mini_batches, len(samples)))
        # Contiguous shares: the trainer orders samples by group, so a mini-batch holds whole
        # groups where it can (AgentEvolver shuffles; a fixed split keeps resume exact).
        bounds = [round(i * len(samples) / n_mini) for i in range(n_mini + 1)]
        shares = [samples[bounds[i]:bounds[i + 1]] for i in range(n_mini)]
        prepared = None if supervised else [[self._prepared(share[i:i + micro_batch])
                                             for i in range(0, len(share), micro_batch)] for share in shares]
        loss_sum, norms = 0.0, []
        trainer._metrics["train"].clear()
        for k, share in enumerate(shares):
            share_tokens = sum(sum(s.loss_mask) for s in share) or 1
            if supervised:  # one sample at a time: no padding
                for s in share:
                    loss = self._nll(s, prompt_grad) / share_tokens
                    loss.backward()
                    loss_sum += float(loss.detach()) / n_mini
            else:
                for inputs in prepared[k]:
                    weight = float(inputs["tool_mask"].sum()) / share_tokens
                    loss = trainer.compute_loss(self.model, inputs) * weight
                    trainer.accelerator.backward(loss)
                    loss_sum += float(loss.detach()) / n_mini
            norms.append(float(torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], trainer.args.max_grad_norm)))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
        self.version += 1
        self._remember_weights()
        m = {k: float(sum(v) / len(v)) for k, v in trainer._metrics["train"].items() if v}
        total_tokens = sum(sum(s.loss_mask) for s in samples)
        out = {"loss": loss_sum, "grad_norm": sum(norms) / len(norms) if norms else 0.0, "samples": float(n_all),
               "trained_samples": float(len(samples)), "zero_advantage_samples": float(n_all - len(samples)),
               "tokens": float(total_tokens), "optimizer_steps": float(len(norms))}
        for key in ("kl", "clip_ratio/region_mean", "entropy"):
            if key in m and math.isfinite(m[key]):
                out[key.replace("/", "_")] = m[key]
        return out

    # --- artifacts -----------------------------------------------------------------------------

    def adapter_blob(self) -> bytes:
        from evolver.models.hf import pack_adapter
        with tempfile.TemporaryDirectory(prefix="evolver-adapter-") as d:
            self.model.save_pretrained(d)
            return pack_adapter(Path(d))

    def checkpoint_blob(self) -> bytes:
        """Adapter weights, optimizer state and version: enough to resume exactly."""
        buf = io.BytesIO()
        trainable = {k: v.detach().cpu() for k, v in self._trainable().items()}
        torch.save({"version": self.version, "params": trainable,
                    "optimizer": self.trainer.optimizer.state_dict(), "weights_at": self._weights_at}, buf)
        return buf.getvalue()

    def restore(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), weights_only=True)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for k, v in state["params"].items():
                params[k].copy_(v)
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
        self._weights_at = dict(state.get("weights_at", {}))  # absent in older checkpoints
        self._remember_weights()
