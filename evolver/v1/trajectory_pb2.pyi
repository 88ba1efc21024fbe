from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObservationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBSERVATION_KIND_UNSPECIFIED: _ClassVar[ObservationKind]
    OBSERVATION_KIND_RESULT: _ClassVar[ObservationKind]
    OBSERVATION_KIND_TOOL_ERROR: _ClassVar[ObservationKind]
    OBSERVATION_KIND_PARSE_ERROR: _ClassVar[ObservationKind]

class ContextTemplate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTEXT_TEMPLATE_UNSPECIFIED: _ClassVar[ContextTemplate]
    CONTEXT_TEMPLATE_LINEAR: _ClassVar[ContextTemplate]
    CONTEXT_TEMPLATE_STRIP_REASONING: _ClassVar[ContextTemplate]
    CONTEXT_TEMPLATE_SLIDING_WINDOW: _ClassVar[ContextTemplate]

class RewardJudge(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_JUDGE_UNSPECIFIED: _ClassVar[RewardJudge]
    REWARD_JUDGE_STATE_MATCH: _ClassVar[RewardJudge]
    REWARD_JUDGE_LLM: _ClassVar[RewardJudge]
    REWARD_JUDGE_HYBRID: _ClassVar[RewardJudge]
OBSERVATION_KIND_UNSPECIFIED: ObservationKind
OBSERVATION_KIND_RESULT: ObservationKind
OBSERVATION_KIND_TOOL_ERROR: ObservationKind
OBSERVATION_KIND_PARSE_ERROR: ObservationKind
CONTEXT_TEMPLATE_UNSPECIFIED: ContextTemplate
CONTEXT_TEMPLATE_LINEAR: ContextTemplate
CONTEXT_TEMPLATE_STRIP_REASONING: ContextTemplate
CONTEXT_TEMPLATE_SLIDING_WINDOW: ContextTemplate
REWARD_JUDGE_UNSPECIFIED: RewardJudge
REWARD_JUDGE_STATE_MATCH: RewardJudge
REWARD_JUDGE_LLM: RewardJudge
REWARD_JUDGE_HYBRID: RewardJudge

class ToolCall(_message.Message):
    __slots__ = ("call_id", "name", "arguments_json")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    arguments_json: str
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("call_id", "kind", "content")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    kind: ObservationKind
    content: str
    def __init__(self, call_id: _Optional[str] = ..., kind: _Optional[_Union[ObservationKind, str]] = ..., content: _Optional[str] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("index", "assistant_text", "tool_calls", "observations", "state_hash_after")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ASSISTANT_TEXT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_HASH_AFTER_FIELD_NUMBER: _ClassVar[int]
    index: int
    assistant_text: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    observations: _containers.RepeatedCompositeFieldContainer[Observation]
    state_hash_after: str
    def __init__(self, index: _Optional[int] = ..., assistant_text: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., observations: _Optional[_Iterable[_Union[Observation, _Mapping]]] = ..., state_hash_after: _Optional[str] = ...) -> None: ...

class TokenRecord(_message.Message):
    __slots__ = ("token_ids", "loss_mask", "experience_mask", "step_ids", "behaviour_logprobs", "logprobs_exact")
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LOSS_MASK_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCE_MASK_FIELD_NUMBER: _ClassVar[int]
    STEP_IDS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_EXACT_FIELD_NUMBER: _ClassVar[int]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    loss_mask: _containers.RepeatedScalarFieldContainer[int]
    experience_mask: _containers.RepeatedScalarFieldContainer[int]
    step_ids: _containers.RepeatedScalarFieldContainer[int]
    behaviour_logprobs: _containers.RepeatedScalarFieldContainer[float]
    logprobs_exact: bool
    def __init__(self, token_ids: _Optional[_Iterable[int]] = ..., loss_mask: _Optional[_Iterable[int]] = ..., experience_mask: _Optional[_Iterable[int]] = ..., step_ids: _Optional[_Iterable[int]] = ..., behaviour_logprobs: _Optional[_Iterable[float]] = ..., logprobs_exact: _Optional[bool] = ...) -> None: ...

class Reward(_message.Message):
    __slots__ = ("score", "success", "details_json")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    score: float
    success: bool
    details_json: str
    def __init__(self, score: _Optional[float] = ..., success: _Optional[bool] = ..., details_json: _Optional[str] = ...) -> None: ...

class InfraFailure(_message.Message):
    __slots__ = ("reason", "component")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    component: str
    def __init__(self, reason: _Optional[str] = ..., component: _Optional[str] = ...) -> None: ...

class Trajectory(_message.Message):
    __slots__ = ("trajectory_id", "task_id", "group_id", "steps", "tokens", "reward", "policy_version", "infra_failure", "experience_ids", "final_answer", "context_exhausted", "turn_records")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    INFRA_FAILURE_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    FINAL_ANSWER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    TURN_RECORDS_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    task_id: str
    group_id: str
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    tokens: TokenRecord
    reward: Reward
    policy_version: int
    infra_failure: InfraFailure
    experience_ids: _containers.RepeatedScalarFieldContainer[str]
    final_answer: str
    context_exhausted: bool
    turn_records: _containers.RepeatedCompositeFieldContainer[TokenRecord]
    def __init__(self, trajectory_id: _Optional[str] = ..., task_id: _Optional[str] = ..., group_id: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., tokens: _Optional[_Union[TokenRecord, _Mapping]] = ..., reward: _Optional[_Union[Reward, _Mapping]] = ..., policy_version: _Optional[int] = ..., infra_failure: _Optional[_Union[InfraFailure, _Mapping]] = ..., experience_ids: _Optional[_Iterable[str]] = ..., final_answer: _Optional[str] = ..., context_exhausted: _Optional[bool] = ..., turn_records: _Optional[_Iterable[_Union[TokenRecord, _Mapping]]] = ...) -> None: ...

class RolloutGroup(_message.Message):
    __slots__ = ("group_id", "run_id", "train_step", "task_id", "trajectories")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TRAIN_STEP_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORIES_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    run_id: str
    train_step: int
    task_id: str
    trajectories: _containers.RepeatedCompositeFieldContainer[Trajectory]
    def __init__(self, group_id: _Optional[str] = ..., run_id: _Optional[str] = ..., train_step: _Optional[int] = ..., task_id: _Optional[str] = ..., trajectories: _Optional[_Iterable[_Union[Trajectory, _Mapping]]] = ...) -> None: ...
