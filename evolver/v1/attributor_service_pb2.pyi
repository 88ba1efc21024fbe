from evolver.v1 import attribution_pb2 as _attribution_pb2
from evolver.v1 import task_pb2 as _task_pb2
from evolver.v1 import trajectory_pb2 as _trajectory_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttributeRequest(_message.Message):
    __slots__ = ("task", "trajectory")
    TASK_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    trajectory: _trajectory_pb2.Trajectory
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., trajectory: _Optional[_Union[_trajectory_pb2.Trajectory, _Mapping]] = ...) -> None: ...

class AttributeResponse(_message.Message):
    __slots__ = ("attribution",)
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    attribution: _attribution_pb2.StepAttribution
    def __init__(self, attribution: _Optional[_Union[_attribution_pb2.StepAttribution, _Mapping]] = ...) -> None: ...
