from evolver.v1 import experience_pb2 as _experience_pb2
from evolver.v1 import llm_role_pb2 as _llm_role_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetrieveRequest(_message.Message):
    __slots__ = ("query", "k", "env_id", "rewrite")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    REWRITE_FIELD_NUMBER: _ClassVar[int]
    query: str
    k: int
    env_id: str
    rewrite: bool
    def __init__(self, query: _Optional[str] = ..., k: _Optional[int] = ..., env_id: _Optional[str] = ..., rewrite: _Optional[bool] = ...) -> None: ...

class RetrieveResponse(_message.Message):
    __slots__ = ("experiences", "rewritten_context", "role_usage")
    EXPERIENCES_FIELD_NUMBER: _ClassVar[int]
    REWRITTEN_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ROLE_USAGE_FIELD_NUMBER: _ClassVar[int]
    experiences: _containers.RepeatedCompositeFieldContainer[_experience_pb2.RetrievedExperience]
    rewritten_context: str
    role_usage: _containers.RepeatedCompositeFieldContainer[_llm_role_pb2.RoleUsage]
    def __init__(self, experiences: _Optional[_Iterable[_Union[_experience_pb2.RetrievedExperience, _Mapping]]] = ..., rewritten_context: _Optional[str] = ..., role_usage: _Optional[_Iterable[_Union[_llm_role_pb2.RoleUsage, _Mapping]]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("experiences", "success_experiences", "failure_experiences", "groups_processed")
    EXPERIENCES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_EXPERIENCES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_EXPERIENCES_FIELD_NUMBER: _ClassVar[int]
    GROUPS_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    experiences: int
    success_experiences: int
    failure_experiences: int
    groups_processed: int
    def __init__(self, experiences: _Optional[int] = ..., success_experiences: _Optional[int] = ..., failure_experiences: _Optional[int] = ..., groups_processed: _Optional[int] = ...) -> None: ...
