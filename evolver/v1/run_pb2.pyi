import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_PENDING: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_SUCCEEDED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_STOPPED: _ClassVar[RunState]
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_PENDING: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_STOPPED: RunState

class Mechanisms(_message.Message):
    __slots__ = ("questioning", "navigating", "attributing")
    QUESTIONING_FIELD_NUMBER: _ClassVar[int]
    NAVIGATING_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTING_FIELD_NUMBER: _ClassVar[int]
    questioning: bool
    navigating: bool
    attributing: bool
    def __init__(self, questioning: _Optional[bool] = ..., navigating: _Optional[bool] = ..., attributing: _Optional[bool] = ...) -> None: ...

class RunConfig(_message.Message):
    __slots__ = ("env_id", "model", "group_size", "tasks_per_step", "steps", "eval_every", "mechanisms", "seed", "config_yaml")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    TASKS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    EVAL_EVERY_FIELD_NUMBER: _ClassVar[int]
    MECHANISMS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_YAML_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    model: str
    group_size: int
    tasks_per_step: int
    steps: int
    eval_every: int
    mechanisms: Mechanisms
    seed: int
    config_yaml: str
    def __init__(self, env_id: _Optional[str] = ..., model: _Optional[str] = ..., group_size: _Optional[int] = ..., tasks_per_step: _Optional[int] = ..., steps: _Optional[int] = ..., eval_every: _Optional[int] = ..., mechanisms: _Optional[_Union[Mechanisms, _Mapping]] = ..., seed: _Optional[int] = ..., config_yaml: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "config", "state", "train_step", "policy_version", "created_at", "updated_at", "message", "stop_requested")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_STEP_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    config: RunConfig
    state: RunState
    train_step: int
    policy_version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    message: str
    stop_requested: bool
    def __init__(self, run_id: _Optional[str] = ..., config: _Optional[_Union[RunConfig, _Mapping]] = ..., state: _Optional[_Union[RunState, str]] = ..., train_step: _Optional[int] = ..., policy_version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., stop_requested: _Optional[bool] = ...) -> None: ...
