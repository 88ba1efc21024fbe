import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from evolver.v1 import attribution_pb2 as _attribution_pb2
from evolver.v1 import experience_pb2 as _experience_pb2
from evolver.v1 import llm_role_pb2 as _llm_role_pb2
from evolver.v1 import policy_pb2 as _policy_pb2
from evolver.v1 import task_pb2 as _task_pb2
from evolver.v1 import trajectory_pb2 as _trajectory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_PHASE_UNSPECIFIED: _ClassVar[RunPhase]
    RUN_PHASE_STARTING: _ClassVar[RunPhase]
    RUN_PHASE_QUESTIONING: _ClassVar[RunPhase]
    RUN_PHASE_EVAL: _ClassVar[RunPhase]
    RUN_PHASE_EVALUATED: _ClassVar[RunPhase]
    RUN_PHASE_ROLLOUT: _ClassVar[RunPhase]
    RUN_PHASE_UPDATE: _ClassVar[RunPhase]
    RUN_PHASE_TRAINED: _ClassVar[RunPhase]
    RUN_PHASE_FINISHED: _ClassVar[RunPhase]
    RUN_PHASE_FAILED: _ClassVar[RunPhase]
    RUN_PHASE_STOPPED: _ClassVar[RunPhase]
    RUN_PHASE_WARM_START: _ClassVar[RunPhase]
RUN_PHASE_UNSPECIFIED: RunPhase
RUN_PHASE_STARTING: RunPhase
RUN_PHASE_QUESTIONING: RunPhase
RUN_PHASE_EVAL: RunPhase
RUN_PHASE_EVALUATED: RunPhase
RUN_PHASE_ROLLOUT: RunPhase
RUN_PHASE_UPDATE: RunPhase
RUN_PHASE_TRAINED: RunPhase
RUN_PHASE_FINISHED: RunPhase
RUN_PHASE_FAILED: RunPhase
RUN_PHASE_STOPPED: RunPhase
RUN_PHASE_WARM_START: RunPhase

class ExploreRequested(_message.Message):
    __slots__ = ("request_id", "env_id", "seed_task_id", "initial_state_json", "toolsets", "walks", "max_steps_per_walk", "seed", "max_calls_per_task", "task_writer", "explorer", "feasibility")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    TOOLSETS_FIELD_NUMBER: _ClassVar[int]
    WALKS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_PER_WALK_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_CALLS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_WRITER_FIELD_NUMBER: _ClassVar[int]
    EXPLORER_FIELD_NUMBER: _ClassVar[int]
    FEASIBILITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    env_id: str
    seed_task_id: str
    initial_state_json: str
    toolsets: _containers.RepeatedScalarFieldContainer[str]
    walks: int
    max_steps_per_walk: int
    seed: int
    max_calls_per_task: int
    task_writer: _task_pb2.TaskWriterKind
    explorer: _task_pb2.ExplorerKind
    feasibility: _task_pb2.FeasibilityKind
    def __init__(self, request_id: _Optional[str] = ..., env_id: _Optional[str] = ..., seed_task_id: _Optional[str] = ..., initial_state_json: _Optional[str] = ..., toolsets: _Optional[_Iterable[str]] = ..., walks: _Optional[int] = ..., max_steps_per_walk: _Optional[int] = ..., seed: _Optional[int] = ..., max_calls_per_task: _Optional[int] = ..., task_writer: _Optional[_Union[_task_pb2.TaskWriterKind, str]] = ..., explorer: _Optional[_Union[_task_pb2.ExplorerKind, str]] = ..., feasibility: _Optional[_Union[_task_pb2.FeasibilityKind, str]] = ...) -> None: ...

class Walk(_message.Message):
    __slots__ = ("walk_id", "steps", "initial_state_json", "prompt_version")
    WALK_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    walk_id: str
    steps: _containers.RepeatedCompositeFieldContainer[_trajectory_pb2.Step]
    initial_state_json: str
    prompt_version: str
    def __init__(self, walk_id: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[_trajectory_pb2.Step, _Mapping]]] = ..., initial_state_json: _Optional[str] = ..., prompt_version: _Optional[str] = ...) -> None: ...

class ExploreCompleted(_message.Message):
    __slots__ = ("request_id", "env_id", "seed_task_id", "walks", "max_calls_per_task", "task_writer", "feasibility", "role_usage")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WALKS_FIELD_NUMBER: _ClassVar[int]
    MAX_CALLS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_WRITER_FIELD_NUMBER: _ClassVar[int]
    FEASIBILITY_FIELD_NUMBER: _ClassVar[int]
    ROLE_USAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    env_id: str
    seed_task_id: str
    walks: _containers.RepeatedCompositeFieldContainer[Walk]
    max_calls_per_task: int
    task_writer: _task_pb2.TaskWriterKind
    feasibility: _task_pb2.FeasibilityKind
    role_usage: _containers.RepeatedCompositeFieldContainer[_llm_role_pb2.RoleUsage]
    def __init__(self, request_id: _Optional[str] = ..., env_id: _Optional[str] = ..., seed_task_id: _Optional[str] = ..., walks: _Optional[_Iterable[_Union[Walk, _Mapping]]] = ..., max_calls_per_task: _Optional[int] = ..., task_writer: _Optional[_Union[_task_pb2.TaskWriterKind, str]] = ..., feasibility: _Optional[_Union[_task_pb2.FeasibilityKind, str]] = ..., role_usage: _Optional[_Iterable[_Union[_llm_role_pb2.RoleUsage, _Mapping]]] = ...) -> None: ...

class RolloutRequested(_message.Message):
    __slots__ = ("job_id", "run_id", "train_step", "task", "group_size", "policy_version", "guided_share", "temperature", "evaluation", "max_steps", "max_new_tokens", "experience_top_k", "keep_experience", "max_tools_shown", "attribute", "first_turn_prefix", "allow_text_around_calls", "sampling_seed", "base_model", "base_model_digest", "step_labeler", "step_label_skip", "reward_judge", "experience_extractor", "rewrite_experiences", "experience_key", "context_template", "window_turns", "max_context_tokens", "max_observation_tokens")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TRAIN_STEP_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    GUIDED_SHARE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCE_TOP_K_FIELD_NUMBER: _ClassVar[int]
    KEEP_EXPERIENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOOLS_SHOWN_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    FIRST_TURN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ALLOW_TEXT_AROUND_CALLS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_SEED_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STEP_LABELER_FIELD_NUMBER: _ClassVar[int]
    STEP_LABEL_SKIP_FIELD_NUMBER: _ClassVar[int]
    REWARD_JUDGE_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCE_EXTRACTOR_FIELD_NUMBER: _ClassVar[int]
    REWRITE_EXPERIENCES_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCE_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TURNS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OBSERVATION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    run_id: str
    train_step: int
    task: _task_pb2.Task
    group_size: int
    policy_version: int
    guided_share: float
    temperature: float
    evaluation: bool
    max_steps: int
    max_new_tokens: int
    experience_top_k: int
    keep_experience: bool
    max_tools_shown: int
    attribute: bool
    first_turn_prefix: str
    allow_text_around_calls: bool
    sampling_seed: int
    base_model: str
    base_model_digest: str
    step_labeler: _attribution_pb2.StepLabeler
    step_label_skip: _attribution_pb2.StepLabelSkip
    reward_judge: _trajectory_pb2.RewardJudge
    experience_extractor: _experience_pb2.ExperienceExtractorKind
    rewrite_experiences: bool
    experience_key: _experience_pb2.ExperienceKey
    context_template: _trajectory_pb2.ContextTemplate
    window_turns: int
    max_context_tokens: int
    max_observation_tokens: int
    def __init__(self, job_id: _Optional[str] = ..., run_id: _Optional[str] = ..., train_step: _Optional[int] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., group_size: _Optional[int] = ..., policy_version: _Optional[int] = ..., guided_share: _Optional[float] = ..., temperature: _Optional[float] = ..., evaluation: _Optional[bool] = ..., max_steps: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., experience_top_k: _Optional[int] = ..., keep_experience: _Optional[bool] = ..., max_tools_shown: _Optional[int] = ..., attribute: _Optional[bool] = ..., first_turn_prefix: _Optional[str] = ..., allow_text_around_calls: _Optional[bool] = ..., sampling_seed: _Optional[int] = ..., base_model: _Optional[str] = ..., base_model_digest: _Optional[str] = ..., step_labeler: _Optional[_Union[_attribution_pb2.StepLabeler, str]] = ..., step_label_skip: _Optional[_Union[_attribution_pb2.StepLabelSkip, str]] = ..., reward_judge: _Optional[_Union[_trajectory_pb2.RewardJudge, str]] = ..., experience_extractor: _Optional[_Union[_experience_pb2.ExperienceExtractorKind, str]] = ..., rewrite_experiences: _Optional[bool] = ..., experience_key: _Optional[_Union[_experience_pb2.ExperienceKey, str]] = ..., context_template: _Optional[_Union[_trajectory_pb2.ContextTemplate, str]] = ..., window_turns: _Optional[int] = ..., max_context_tokens: _Optional[int] = ..., max_observation_tokens: _Optional[int] = ...) -> None: ...

class RolloutCompleted(_message.Message):
    __slots__ = ("group", "evaluation", "task", "attribute", "demonstration", "step_labeler", "step_label_skip", "role_usage", "experience_extractor", "experience_key")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    DEMONSTRATION_FIELD_NUMBER: _ClassVar[int]
    STEP_LABELER_FIELD_NUMBER: _ClassVar[int]
    STEP_LABEL_SKIP_FIELD_NUMBER: _ClassVar[int]
    ROLE_USAGE_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCE_EXTRACTOR_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCE_KEY_FIELD_NUMBER: _ClassVar[int]
    group: _trajectory_pb2.RolloutGroup
    evaluation: bool
    task: _task_pb2.Task
    attribute: bool
    demonstration: bool
    step_labeler: _attribution_pb2.StepLabeler
    step_label_skip: _attribution_pb2.StepLabelSkip
    role_usage: _containers.RepeatedCompositeFieldContainer[_llm_role_pb2.RoleUsage]
    experience_extractor: _experience_pb2.ExperienceExtractorKind
    experience_key: _experience_pb2.ExperienceKey
    def __init__(self, group: _Optional[_Union[_trajectory_pb2.RolloutGroup, _Mapping]] = ..., evaluation: _Optional[bool] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., attribute: _Optional[bool] = ..., demonstration: _Optional[bool] = ..., step_labeler: _Optional[_Union[_attribution_pb2.StepLabeler, str]] = ..., step_label_skip: _Optional[_Union[_attribution_pb2.StepLabelSkip, str]] = ..., role_usage: _Optional[_Iterable[_Union[_llm_role_pb2.RoleUsage, _Mapping]]] = ..., experience_extractor: _Optional[_Union[_experience_pb2.ExperienceExtractorKind, str]] = ..., experience_key: _Optional[_Union[_experience_pb2.ExperienceKey, str]] = ...) -> None: ...

class RolloutAttributed(_message.Message):
    __slots__ = ("group", "attributions", "evaluation", "task", "demonstration", "role_usage")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DEMONSTRATION_FIELD_NUMBER: _ClassVar[int]
    ROLE_USAGE_FIELD_NUMBER: _ClassVar[int]
    group: _trajectory_pb2.RolloutGroup
    attributions: _containers.RepeatedCompositeFieldContainer[_attribution_pb2.StepAttribution]
    evaluation: bool
    task: _task_pb2.Task
    demonstration: bool
    role_usage: _containers.RepeatedCompositeFieldContainer[_llm_role_pb2.RoleUsage]
    def __init__(self, group: _Optional[_Union[_trajectory_pb2.RolloutGroup, _Mapping]] = ..., attributions: _Optional[_Iterable[_Union[_attribution_pb2.StepAttribution, _Mapping]]] = ..., evaluation: _Optional[bool] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., demonstration: _Optional[bool] = ..., role_usage: _Optional[_Iterable[_Union[_llm_role_pb2.RoleUsage, _Mapping]]] = ...) -> None: ...

class TasksAccepted(_message.Message):
    __slots__ = ("env_id", "tasks", "explore_request_id", "candidates", "rejection_reasons", "role_usage")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    EXPLORE_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REJECTION_REASONS_FIELD_NUMBER: _ClassVar[int]
    ROLE_USAGE_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    explore_request_id: str
    candidates: int
    rejection_reasons: _containers.RepeatedScalarFieldContainer[str]
    role_usage: _containers.RepeatedCompositeFieldContainer[_llm_role_pb2.RoleUsage]
    def __init__(self, env_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ..., explore_request_id: _Optional[str] = ..., candidates: _Optional[int] = ..., rejection_reasons: _Optional[_Iterable[str]] = ..., role_usage: _Optional[_Iterable[_Union[_llm_role_pb2.RoleUsage, _Mapping]]] = ...) -> None: ...

class ExperienceStored(_message.Message):
    __slots__ = ("source_group_id", "experiences", "role_usage")
    SOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCES_FIELD_NUMBER: _ClassVar[int]
    ROLE_USAGE_FIELD_NUMBER: _ClassVar[int]
    source_group_id: str
    experiences: _containers.RepeatedCompositeFieldContainer[_experience_pb2.Experience]
    role_usage: _containers.RepeatedCompositeFieldContainer[_llm_role_pb2.RoleUsage]
    def __init__(self, source_group_id: _Optional[str] = ..., experiences: _Optional[_Iterable[_Union[_experience_pb2.Experience, _Mapping]]] = ..., role_usage: _Optional[_Iterable[_Union[_llm_role_pb2.RoleUsage, _Mapping]]] = ...) -> None: ...

class PolicyUpdated(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _policy_pb2.PolicyVersion
    def __init__(self, policy: _Optional[_Union[_policy_pb2.PolicyVersion, _Mapping]] = ...) -> None: ...

class RunProgress(_message.Message):
    __slots__ = ("run_id", "train_step", "phase", "metrics", "at")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TRAIN_STEP_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    train_step: int
    phase: RunPhase
    metrics: _containers.ScalarMap[str, float]
    at: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., train_step: _Optional[int] = ..., phase: _Optional[_Union[RunPhase, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DiagPing(_message.Message):
    __slots__ = ("ping_id", "sent_at")
    PING_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    ping_id: str
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, ping_id: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DiagPong(_message.Message):
    __slots__ = ("ping_id", "service", "instance", "received_at")
    PING_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    ping_id: str
    service: str
    instance: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, ping_id: _Optional[str] = ..., service: _Optional[str] = ..., instance: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
