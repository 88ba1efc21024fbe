"""The configuration of one training run (`evolver run --config run.yaml`), validated with a
message that names the bad key. The YAML travels inside RunConfig.config_yaml, so the trainer
sees exactly what the user wrote and the run is reproducible from its record."""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evolver import limits
from evolver.algorithms.adca import AdcaConfig
from evolver.config import problems
from evolver.v1 import run_pb2


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Mechanisms(_Section):
    questioning: bool = True  # synthetic tasks from exploration (off: the environment's seed tasks)
    navigating: bool = True  # experience-guided rollouts
    attributing: bool = True  # ADCA-GRPO step credit (off: plain GRPO)
    # Self-bootstrapping: before RL, fine-tune on the replayed reference solutions of synthetic
    # train tasks (a warm start for a base model too weak to find rewards by sampling).
    bootstrapping: bool = False


class BootstrappingSpec(_Section):
    max_tasks: int = Field(16, ge=1, le=4096)  # demonstrations: synthetic train tasks, by id
    epochs: int = Field(2, ge=1, le=50)
    batch: int = Field(4, ge=1, le=256)  # demonstrations per optimizer step
    # Between RL steps: one more supervised step on the step's own successful trajectories of
    # synthetic train tasks (the policy imitating its verified successes; never held-out or
    # test tasks, never the environment's own seed tasks).
    between_steps: bool = False
    # Backpropagate through the prompt too (the tool-laden system prompt, most of each
    # sequence). Off: the prompt runs without gradient, each step at ~1/3 of the cost on a CPU.
    prompt_grad: bool = False
    # Supervised steps' own learning rate: at the RL rate (2e-4) 24 steps left held-out success
    # unchanged; at 1e-3 it rose 0.06 -> 0.16 (docs/BENCHMARKS.md, warm start).
    learning_rate: float = Field(1e-3, gt=0, le=1.0)
    # The between-steps imitation step's own rate (None: learning_rate). The warm start's 1e-3
    # is 5x the RL rate, on a handful of the step's own successes.
    imitation_learning_rate: float | None = Field(None, gt=0, le=1.0)
    # Start from another run's warm start instead of fine-tuning again (the run id of a run on
    # this stack, or the `file-<sha>` name `evolver run --warm-start FILE` gives): its weights and
    # optimizer state, on the same tasks, which must be train tasks of this run.
    warm_start_from: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_-]*$")

    @property
    def imitation_rate(self) -> float:
        return self.imitation_learning_rate or self.learning_rate


class QuestioningSpec(_Section):
    explorations: int = Field(4, ge=1, le=limits.EXPLORATIONS_MAX)
    walks_per_exploration: int = Field(2, ge=1, le=limits.WALKS_MAX)
    max_steps_per_walk: int = Field(6, ge=1, le=limits.STEPS_PER_WALK_MAX)
    max_calls_per_task: int = Field(4, ge=1, le=16)  # longest reference solution
    min_train_tasks: int = Field(2, ge=1)  # wait for at least this many accepted train tasks
    # The training mixture (AgentEvolver spec §3.6, UnifiedMixtureStrategy): with use_seed_tasks
    # the environment's own train tasks are trained on too, plus int(len(seed tasks) x
    # synthetic_ratio) synthetic ones (all of them if fewer). Off (the default): synthetic tasks
    # only, so no human-written task is trained on.
    use_seed_tasks: bool = False
    synthetic_ratio: float = Field(1.0, ge=0)
    wait_s: float = Field(600, gt=0)
    # Who writes the queries: the LLM-free template writer (verifiable), the task_writer LLM role
    # (several tasks per walk, each naming the walk steps that solve it; a walk whose reply is
    # unusable falls back to the template writer), or both (hybrid). Every task is replayed.
    task_writer: Literal["verifiable", "llm", "hybrid"] = "verifiable"
    # Who chooses each action of an exploration walk: the schema planner, the explorer LLM role
    # (a step whose reply is unusable is the planner's, counted), or alternate walks (mixed).
    explorer: Literal["schema", "llm", "mixed"] = "schema"
    # How a candidate is checked feasible: its reference replayed (verifiable), AgentEvolver's
    # LLM filter (the explorer role replays it with the solution as a tip, the judge role gives
    # the verdict, the reference becomes the replay's successful calls; for environments whose
    # state cannot be compared), or both (hybrid).
    feasibility: Literal["verifiable", "llm", "hybrid"] = "verifiable"


class NavigatingSpec(_Section):
    guided_share: float = Field(0.5, ge=0, le=1)  # AgentEvolver full recipe: 0.5
    top_k: int = Field(3, ge=1, le=50)
    keep_experience: bool = False  # False = discard the block for training (AgentEvolver default)
    # Who distils training groups into experiences: the LLM-free rules (verifiable), the
    # experience_extractor LLM role (ReMe: success, failure and comparative extraction, then
    # validation; an unusable reply falls back to the rules, counted), or both (hybrid).
    extractor: Literal["verifiable", "llm", "hybrid"] = "verifiable"
    # Rewrite the retrieved experiences into one block for the task with the same role (ReMe's
    # rewrite op; AgentEvolver's launch had it on). A failed rewrite injects them as they are.
    rewrite: bool = False
    # What experiences are embedded by (their retrieval key; a query is always the task's):
    # when_to_use with content (default), when_to_use alone (AgentEvolver/ReMe), or the source
    # task's query.
    embedding_key: Literal["when_and_content", "when_to_use", "task_query"] = "when_and_content"


class AttributingSpec(_Section):
    # Who labels steps: state progress (verifiable), the step_attributor LLM role (one call per
    # trajectory, falling back to state progress when its reply is unusable), or hybrid (state
    # progress where the task has a reference end state, the LLM elsewhere).
    labeler: Literal["verifiable", "llm", "hybrid"] = "verifiable"
    # When the LLM labeller skips its call (the steps get the outcome's sign): never, when the
    # group's attempts all scored the same, or for failed attempts (spec §5.3 skip_type).
    skip: Literal["none", "small_advantage", "negative"] = "none"
    # Step labels shape the advantage for the first prm_steps training steps only, after which
    # the run trains on plain GRPO and asks for no labels at all (AgentEvolver still paid for
    # them, B18). 0 = every step.
    prm_steps: int = Field(0, ge=0)
    scheme: Literal["decouple", "allocation"] = "decouple"
    alpha: float = Field(0.1, ge=0)
    alpha_min: float = Field(0.0, ge=0)
    alpha_cosine_decay: bool = False
    orm_distribution: Literal["last_step", "all_steps", "only_prm"] = "last_step"
    length_normalization: bool = False

    def adca(self) -> AdcaConfig:
        return AdcaConfig(scheme=self.scheme, alpha=self.alpha, alpha_min=self.alpha_min,
                          alpha_cosine_decay=self.alpha_cosine_decay, orm_distribution=self.orm_distribution,
                          length_normalization=self.length_normalization)


class RolloutSpec(_Section):
    temperature: float = Field(1.0, gt=0)
    # How training attempts at synthetic tasks are scored: state match against the replayed
    # reference (verifiable), the judge LLM role with the reference solution (llm; an unusable
    # reply keeps the state-match reward, counted), or their product (hybrid). Evaluation uses
    # the state match (a measurement stays grounded whatever trains the policy), except for an
    # opaque environment's tasks, which only the judge can score.
    reward_judge: Literal["verifiable", "llm", "hybrid"] = "verifiable"
    # The context manager (spec §6.3): what the policy sees each turn. linear = the whole
    # history (one training sequence per attempt); strip_reasoning = earlier turns without
    # <think> blocks; sliding_window = the task and the last window_turns turns. The last two
    # train one exact sequence per turn. max_context_tokens: a turn's context plus its completion
    # (0 = only the server's limit); the episode ends cleanly when the next turn cannot fit.
    # max_observation_tokens: longer tool results are clipped (0 = never).
    context_template: Literal["linear", "strip_reasoning", "sliding_window"] = "linear"
    window_turns: int = Field(2, ge=1, le=1024)
    max_context_tokens: int = Field(0, ge=0)
    max_observation_tokens: int = Field(0, ge=0)
    max_steps: int = Field(4, ge=1, le=64)
    max_new_tokens: int = Field(96, ge=1, le=4096)
    max_tools_shown: int = Field(6, ge=0)  # 0 = every tool of the task's toolsets
    # Opens the first assistant turn as scaffolding (never trained on). SmolLM2-135M almost never
    # starts a tool call on its own (0 of 48 samples measured); with '<tool_call>\n{"name": "'
    # it names the right tool sometimes, which is what GRPO needs to learn from.
    first_turn_prefix: str = ""
    allow_text_around_calls: bool = False  # strict by default: a turn that calls and talks is malformed
    timeout_s: float = Field(1800, gt=0)  # per training step, for all its groups
    # Asynchronous pipeline: the groups of the next max_policy_lag steps are generated while a
    # step trains, so they come from a policy up to that many steps old (the behaviour
    # log-probs give the importance ratio; an older group is dropped and asked for again). Counted
    # in steps: RunSpec.version_lag is the bound in policy versions.
    # 0 = synchronous: every group from the policy being trained.
    max_policy_lag: int = Field(1, ge=0, le=8)


class TrainingSpec(_Section):
    learning_rate: float = Field(2e-4, gt=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    beta: float = Field(0.001, ge=0)  # KL to the reference (AgentEvolver kl_loss_coef)
    # The KL term's reference: the base model (AgentEvolver, which has no warm start), or the
    # policy as the warm start left it, so that RL is held near what bootstrapping taught rather
    # than pulled back towards a base model that never calls a tool. Without a warm start
    # (bootstrapping off) both are the base model.
    kl_reference: Literal["base", "warm_start"] = "base"
    epsilon: float = Field(0.2, gt=0)
    epsilon_high: float = Field(0.28, gt=0)
    off_cliprange_high: float = Field(0.6, gt=0)  # upper clip for experience-guided trajectories
    max_grad_norm: float = Field(1.0, gt=0)
    # PPO dual clip for negative advantages (AgentEvolver clip_ratio_c 3.0); null = off.
    clip_ratio_c: float | None = Field(3.0, gt=1)
    # Optimizer steps per training step, each over its share of the batch (AgentEvolver: 4).
    mini_batches: int = Field(1, ge=1, le=64)
    # Samples per forward/backward pass; a mini-batch accumulates gradients over its micro-batches.
    micro_batch: int = Field(2, ge=1, le=256)
    # Recompute activations in backward: for a 7B policy on a GPU; a 135M policy on a CPU is faster without.
    gradient_checkpointing: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when present


class EvalSpec(_Section):
    synthetic_tasks: int = Field(4, ge=0)  # held-out synthetic tasks
    seed_tasks: int = Field(2, ge=0)  # the environment's test split (BFCL multi_turn_base test)
    k: int = Field(2, ge=1, le=limits.GROUP_SIZE_MAX)
    temperature: float = Field(0.7, ge=0)
    # Off: no evaluation of the base model or the warm start, only during and after RL. For a run
    # that starts from another run's warm start (bootstrapping.warm_start_from) on the same
    # tasks, whose base and warm-start points that run measured (about 20 min at 32 x 4 on a CPU).
    before_training: bool = True


class RunSpec(_Section):
    env_id: str = "bfcl"
    model: str = ""  # a prepared model folder; empty = SmolLM2-135M-Instruct (`evolver models prepare`)
    steps: int = Field(4, ge=1)
    tasks_per_step: int = Field(2, ge=1, le=1024)
    group_size: int = Field(4, ge=2, le=limits.GROUP_SIZE_MAX)  # the explorer runs at most this many per group
    eval_every: int = Field(2, ge=0)  # 0 = only before and after training
    seed: int = 0
    # Wall-clock minutes from the run's start (0: none). RL steps that would not fit before the
    # final evaluation are not run; the run still evaluates and says how many steps it did
    # (services/trainer/time_budget.py). For a default run that must fit on any 2-core CPU.
    time_budget_minutes: float = Field(0.0, ge=0)
    mechanisms: Mechanisms = Mechanisms()
    questioning: QuestioningSpec = QuestioningSpec()
    bootstrapping: BootstrappingSpec = BootstrappingSpec()
    navigating: NavigatingSpec = NavigatingSpec()
    attributing: AttributingSpec = AttributingSpec()
    rollout: RolloutSpec = RolloutSpec()
    training: TrainingSpec = TrainingSpec()
    eval: EvalSpec = EvalSpec()
    # Processes per service when `evolver run` starts the embedded stack itself (e.g.
    # {explorer: 2}); a running stack keeps its own (`evolver up --replicas explorer=2`).
    replicas: dict[str, int] = Field(default_factory=dict)

    @property
    def version_lag(self) -> int:
        """rollout.max_policy_lag in policy versions. The lag counts training steps, and a step
        advances the policy by one version, or by two when self-bootstrapping imitates the step's
        successes after its RL update. Counted in versions, a lag of 1 sent every group generated
        during a step with successes back to be generated again (8 of 8 groups a step, measured
        on the 2026-12-01 learning run)."""
        per_step = 1 + int(self.mechanisms.bootstrapping and self.bootstrapping.between_steps)
        return self.rollout.max_policy_lag * per_step


class RunConfigError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def parse_run_spec(text: str) -> RunSpec:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise RunConfigError("config_yaml", f"not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RunConfigError("config_yaml", "top level must be a mapping")
    try:
        return RunSpec.model_validate(data)
    except ValidationError as e:
        raise RunConfigError(*problems(e)[0]) from None


def to_run_config(spec: RunSpec) -> run_pb2.RunConfig:
    m = spec.mechanisms
    return run_pb2.RunConfig(env_id=spec.env_id, model=spec.model, group_size=spec.group_size,
                             tasks_per_step=spec.tasks_per_step, steps=spec.steps, eval_every=spec.eval_every,
                             mechanisms=run_pb2.Mechanisms(questioning=m.questioning, navigating=m.navigating,
                                                           attributing=m.attributing),
                             seed=spec.seed, config_yaml=yaml.safe_dump(spec.model_dump(), sort_keys=False))


def from_run_config(cfg: run_pb2.RunConfig) -> RunSpec:
    """The spec from its YAML, with the proto's typed fields taking precedence when set."""
    spec = parse_run_spec(cfg.config_yaml) if cfg.config_yaml else RunSpec()
    data = spec.model_dump()
    for key in ("env_id", "model", "group_size", "tasks_per_step", "steps", "eval_every", "seed"):
        value = getattr(cfg, key)
        if value:
            data[key] = value
    if cfg.HasField("mechanisms") and not cfg.config_yaml:
        data["mechanisms"] = {"questioning": cfg.mechanisms.questioning, "navigating": cfg.mechanisms.navigating,
                              "attributing": cfg.mechanisms.attributing}
    try:
        return RunSpec.model_validate(data)
    except ValidationError as e:
        raise RunConfigError(*problems(e)[0]) from None
