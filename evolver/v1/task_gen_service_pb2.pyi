from evolver.v1 import environment_pb2 as _environment_pb2
from evolver.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterEnvironmentRequest(_message.Message):
    __slots__ = ("env_id", "address", "display_name", "profile")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    address: str
    display_name: str
    profile: _environment_pb2.EnvironmentProfile
    def __init__(self, env_id: _Optional[str] = ..., address: _Optional[str] = ..., display_name: _Optional[str] = ..., profile: _Optional[_Union[_environment_pb2.EnvironmentProfile, _Mapping]] = ...) -> None: ...

class RegisterEnvironmentResponse(_message.Message):
    __slots__ = ("environment",)
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    environment: _environment_pb2.EnvironmentSpec
    def __init__(self, environment: _Optional[_Union[_environment_pb2.EnvironmentSpec, _Mapping]] = ...) -> None: ...

class UnregisterEnvironmentRequest(_message.Message):
    __slots__ = ("env_id",)
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    def __init__(self, env_id: _Optional[str] = ...) -> None: ...

class UnregisterEnvironmentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEnvironmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEnvironmentsResponse(_message.Message):
    __slots__ = ("environments",)
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    environments: _containers.RepeatedCompositeFieldContainer[_environment_pb2.EnvironmentSpec]
    def __init__(self, environments: _Optional[_Iterable[_Union[_environment_pb2.EnvironmentSpec, _Mapping]]] = ...) -> None: ...

class GenerateTasksRequest(_message.Message):
    __slots__ = ("env_id", "explorations", "walks_per_exploration", "max_steps_per_walk", "seed", "max_calls_per_task", "requester_id", "task_writer", "explorer", "feasibility")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    EXPLORATIONS_FIELD_NUMBER: _ClassVar[int]
    WALKS_PER_EXPLORATION_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_PER_WALK_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_CALLS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_WRITER_FIELD_NUMBER: _ClassVar[int]
    EXPLORER_FIELD_NUMBER: _ClassVar[int]
    FEASIBILITY_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    explorations: int
    walks_per_exploration: int
    max_steps_per_walk: int
    seed: int
    max_calls_per_task: int
    requester_id: str
    task_writer: _task_pb2.TaskWriterKind
    explorer: _task_pb2.ExplorerKind
    feasibility: _task_pb2.FeasibilityKind
    def __init__(self, env_id: _Optional[str] = ..., explorations: _Optional[int] = ..., walks_per_exploration: _Optional[int] = ..., max_steps_per_walk: _Optional[int] = ..., seed: _Optional[int] = ..., max_calls_per_task: _Optional[int] = ..., requester_id: _Optional[str] = ..., task_writer: _Optional[_Union[_task_pb2.TaskWriterKind, str]] = ..., explorer: _Optional[_Union[_task_pb2.ExplorerKind, str]] = ..., feasibility: _Optional[_Union[_task_pb2.FeasibilityKind, str]] = ...) -> None: ...

class GenerateTasksResponse(_message.Message):
    __slots__ = ("explore_request_ids",)
    EXPLORE_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    explore_request_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, explore_request_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("env_id", "source", "split", "page_size", "page_token")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    source: _task_pb2.TaskSource
    split: str
    page_size: int
    page_token: str
    def __init__(self, env_id: _Optional[str] = ..., source: _Optional[_Union[_task_pb2.TaskSource, str]] = ..., split: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "stats", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    stats: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskStats]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ..., stats: _Optional[_Iterable[_Union[_task_pb2.TaskStats, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task", "stats")
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    stats: _task_pb2.TaskStats
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., stats: _Optional[_Union[_task_pb2.TaskStats, _Mapping]] = ...) -> None: ...
