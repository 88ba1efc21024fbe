import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from evolver.v1 import trajectory_pb2 as _trajectory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_SOURCE_UNSPECIFIED: _ClassVar[TaskSource]
    TASK_SOURCE_SEED: _ClassVar[TaskSource]
    TASK_SOURCE_SYNTHETIC: _ClassVar[TaskSource]

class ExplorerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPLORER_KIND_UNSPECIFIED: _ClassVar[ExplorerKind]
    EXPLORER_KIND_SCHEMA: _ClassVar[ExplorerKind]
    EXPLORER_KIND_LLM: _ClassVar[ExplorerKind]
    EXPLORER_KIND_MIXED: _ClassVar[ExplorerKind]

class FeasibilityKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEASIBILITY_KIND_UNSPECIFIED: _ClassVar[FeasibilityKind]
    FEASIBILITY_KIND_REPLAY: _ClassVar[FeasibilityKind]
    FEASIBILITY_KIND_LLM: _ClassVar[FeasibilityKind]
    FEASIBILITY_KIND_HYBRID: _ClassVar[FeasibilityKind]

class TaskWriterKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_WRITER_KIND_UNSPECIFIED: _ClassVar[TaskWriterKind]
    TASK_WRITER_KIND_TEMPLATE: _ClassVar[TaskWriterKind]
    TASK_WRITER_KIND_LLM: _ClassVar[TaskWriterKind]
    TASK_WRITER_KIND_HYBRID: _ClassVar[TaskWriterKind]
TASK_SOURCE_UNSPECIFIED: TaskSource
TASK_SOURCE_SEED: TaskSource
TASK_SOURCE_SYNTHETIC: TaskSource
EXPLORER_KIND_UNSPECIFIED: ExplorerKind
EXPLORER_KIND_SCHEMA: ExplorerKind
EXPLORER_KIND_LLM: ExplorerKind
EXPLORER_KIND_MIXED: ExplorerKind
FEASIBILITY_KIND_UNSPECIFIED: FeasibilityKind
FEASIBILITY_KIND_REPLAY: FeasibilityKind
FEASIBILITY_KIND_LLM: FeasibilityKind
FEASIBILITY_KIND_HYBRID: FeasibilityKind
TASK_WRITER_KIND_UNSPECIFIED: TaskWriterKind
TASK_WRITER_KIND_TEMPLATE: TaskWriterKind
TASK_WRITER_KIND_LLM: TaskWriterKind
TASK_WRITER_KIND_HYBRID: TaskWriterKind

class TaskProvenance(_message.Message):
    __slots__ = ("env_id", "seed_task_id", "walk_id", "generator_version", "created_at", "prompt_version", "confidence")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WALK_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    seed_task_id: str
    walk_id: str
    generator_version: str
    created_at: _timestamp_pb2.Timestamp
    prompt_version: str
    confidence: float
    def __init__(self, env_id: _Optional[str] = ..., seed_task_id: _Optional[str] = ..., walk_id: _Optional[str] = ..., generator_version: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., prompt_version: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "env_id", "source", "split", "query", "followup_turns", "initial_state_json", "toolsets", "reference_solution", "reference_end_state_json", "expected_answer_facts", "provenance")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    FOLLOWUP_TURNS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    TOOLSETS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SOLUTION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_END_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ANSWER_FACTS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    env_id: str
    source: TaskSource
    split: str
    query: str
    followup_turns: _containers.RepeatedScalarFieldContainer[str]
    initial_state_json: str
    toolsets: _containers.RepeatedScalarFieldContainer[str]
    reference_solution: _containers.RepeatedCompositeFieldContainer[_trajectory_pb2.ToolCall]
    reference_end_state_json: str
    expected_answer_facts: _containers.RepeatedScalarFieldContainer[str]
    provenance: TaskProvenance
    def __init__(self, task_id: _Optional[str] = ..., env_id: _Optional[str] = ..., source: _Optional[_Union[TaskSource, str]] = ..., split: _Optional[str] = ..., query: _Optional[str] = ..., followup_turns: _Optional[_Iterable[str]] = ..., initial_state_json: _Optional[str] = ..., toolsets: _Optional[_Iterable[str]] = ..., reference_solution: _Optional[_Iterable[_Union[_trajectory_pb2.ToolCall, _Mapping]]] = ..., reference_end_state_json: _Optional[str] = ..., expected_answer_facts: _Optional[_Iterable[str]] = ..., provenance: _Optional[_Union[TaskProvenance, _Mapping]] = ...) -> None: ...

class TaskStats(_message.Message):
    __slots__ = ("task_id", "attempts", "successes")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempts: int
    successes: int
    def __init__(self, task_id: _Optional[str] = ..., attempts: _Optional[int] = ..., successes: _Optional[int] = ...) -> None: ...
