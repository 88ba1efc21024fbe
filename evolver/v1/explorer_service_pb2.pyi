from evolver.v1 import events_pb2 as _events_pb2
from evolver.v1 import task_pb2 as _task_pb2
from evolver.v1 import trajectory_pb2 as _trajectory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExploreRequest(_message.Message):
    __slots__ = ("env_id", "seed_task_id", "walks", "max_steps_per_walk", "seed")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WALKS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_PER_WALK_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    seed_task_id: str
    walks: int
    max_steps_per_walk: int
    seed: int
    def __init__(self, env_id: _Optional[str] = ..., seed_task_id: _Optional[str] = ..., walks: _Optional[int] = ..., max_steps_per_walk: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ExploreResponse(_message.Message):
    __slots__ = ("walks",)
    WALKS_FIELD_NUMBER: _ClassVar[int]
    walks: _containers.RepeatedCompositeFieldContainer[_events_pb2.Walk]
    def __init__(self, walks: _Optional[_Iterable[_Union[_events_pb2.Walk, _Mapping]]] = ...) -> None: ...

class RolloutRequest(_message.Message):
    __slots__ = ("task", "group_size", "temperature", "guided_share")
    TASK_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    GUIDED_SHARE_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    group_size: int
    temperature: float
    guided_share: float
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., group_size: _Optional[int] = ..., temperature: _Optional[float] = ..., guided_share: _Optional[float] = ...) -> None: ...

class RolloutResponse(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: _trajectory_pb2.RolloutGroup
    def __init__(self, group: _Optional[_Union[_trajectory_pb2.RolloutGroup, _Mapping]] = ...) -> None: ...
