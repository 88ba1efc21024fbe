from evolver.v1 import trajectory_pb2 as _trajectory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnvironmentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENVIRONMENT_KIND_UNSPECIFIED: _ClassVar[EnvironmentKind]
    ENVIRONMENT_KIND_BUILTIN: _ClassVar[EnvironmentKind]
    ENVIRONMENT_KIND_USER: _ClassVar[EnvironmentKind]
ENVIRONMENT_KIND_UNSPECIFIED: EnvironmentKind
ENVIRONMENT_KIND_BUILTIN: EnvironmentKind
ENVIRONMENT_KIND_USER: EnvironmentKind

class ToolSchema(_message.Message):
    __slots__ = ("name", "description", "parameters_json_schema", "toolset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TOOLSET_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json_schema: str
    toolset: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json_schema: _Optional[str] = ..., toolset: _Optional[str] = ...) -> None: ...

class EnvironmentProfile(_message.Message):
    __slots__ = ("name", "background", "entities", "task_preference", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    TASK_PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    background: str
    entities: _containers.RepeatedCompositeFieldContainer[ProfileEntity]
    task_preference: TaskPreference
    source: str
    def __init__(self, name: _Optional[str] = ..., background: _Optional[str] = ..., entities: _Optional[_Iterable[_Union[ProfileEntity, _Mapping]]] = ..., task_preference: _Optional[_Union[TaskPreference, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class ProfileEntity(_message.Message):
    __slots__ = ("name", "description", "attributes", "operations")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    attributes: _containers.ScalarMap[str, str]
    operations: _containers.RepeatedCompositeFieldContainer[ProfileOperation]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., operations: _Optional[_Iterable[_Union[ProfileOperation, _Mapping]]] = ...) -> None: ...

class ProfileOperation(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class TaskPreference(_message.Message):
    __slots__ = ("num_entities", "num_operations", "relation_difficulty")
    NUM_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    NUM_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    RELATION_DIFFICULTY_FIELD_NUMBER: _ClassVar[int]
    num_entities: int
    num_operations: int
    relation_difficulty: int
    def __init__(self, num_entities: _Optional[int] = ..., num_operations: _Optional[int] = ..., relation_difficulty: _Optional[int] = ...) -> None: ...

class EnvironmentSpec(_message.Message):
    __slots__ = ("env_id", "display_name", "kind", "address", "tools", "state_visible", "description", "profile")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    STATE_VISIBLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    display_name: str
    kind: EnvironmentKind
    address: str
    tools: _containers.RepeatedCompositeFieldContainer[ToolSchema]
    state_visible: bool
    description: str
    profile: EnvironmentProfile
    def __init__(self, env_id: _Optional[str] = ..., display_name: _Optional[str] = ..., kind: _Optional[_Union[EnvironmentKind, str]] = ..., address: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[ToolSchema, _Mapping]]] = ..., state_visible: _Optional[bool] = ..., description: _Optional[str] = ..., profile: _Optional[_Union[EnvironmentProfile, _Mapping]] = ...) -> None: ...

class SeedTask(_message.Message):
    __slots__ = ("seed_task_id", "split", "user_turns", "initial_state_json", "involved_classes")
    SEED_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    USER_TURNS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    INVOLVED_CLASSES_FIELD_NUMBER: _ClassVar[int]
    seed_task_id: str
    split: str
    user_turns: _containers.RepeatedScalarFieldContainer[str]
    initial_state_json: str
    involved_classes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, seed_task_id: _Optional[str] = ..., split: _Optional[str] = ..., user_turns: _Optional[_Iterable[str]] = ..., initial_state_json: _Optional[str] = ..., involved_classes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ("toolsets",)
    TOOLSETS_FIELD_NUMBER: _ClassVar[int]
    toolsets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, toolsets: _Optional[_Iterable[str]] = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools", "state_visible")
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    STATE_VISIBLE_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[ToolSchema]
    state_visible: bool
    def __init__(self, tools: _Optional[_Iterable[_Union[ToolSchema, _Mapping]]] = ..., state_visible: _Optional[bool] = ...) -> None: ...

class ListSeedTasksRequest(_message.Message):
    __slots__ = ("split", "page_size", "page_token")
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    split: str
    page_size: int
    page_token: str
    def __init__(self, split: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSeedTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[SeedTask]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[SeedTask, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("seed_task_id", "initial_state_json", "toolsets", "query_override")
    SEED_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    TOOLSETS_FIELD_NUMBER: _ClassVar[int]
    QUERY_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    seed_task_id: str
    initial_state_json: str
    toolsets: _containers.RepeatedScalarFieldContainer[str]
    query_override: str
    def __init__(self, seed_task_id: _Optional[str] = ..., initial_state_json: _Optional[str] = ..., toolsets: _Optional[_Iterable[str]] = ..., query_override: _Optional[str] = ...) -> None: ...

class CreateResponse(_message.Message):
    __slots__ = ("instance_id", "user_message", "tools")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    user_message: str
    tools: _containers.RepeatedCompositeFieldContainer[ToolSchema]
    def __init__(self, instance_id: _Optional[str] = ..., user_message: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[ToolSchema, _Mapping]]] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("instance_id", "tool_calls", "assistant_text")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    ASSISTANT_TEXT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[_trajectory_pb2.ToolCall]
    assistant_text: str
    def __init__(self, instance_id: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[_trajectory_pb2.ToolCall, _Mapping]]] = ..., assistant_text: _Optional[str] = ...) -> None: ...

class StepResponse(_message.Message):
    __slots__ = ("observations", "next_user_message", "done")
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_USER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[_trajectory_pb2.Observation]
    next_user_message: str
    done: bool
    def __init__(self, observations: _Optional[_Iterable[_Union[_trajectory_pb2.Observation, _Mapping]]] = ..., next_user_message: _Optional[str] = ..., done: _Optional[bool] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("score", "success", "details_json")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    score: float
    success: bool
    details_json: str
    def __init__(self, score: _Optional[float] = ..., success: _Optional[bool] = ..., details_json: _Optional[str] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("state_json", "state_hash")
    STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    state_json: str
    state_hash: str
    def __init__(self, state_json: _Optional[str] = ..., state_hash: _Optional[str] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
