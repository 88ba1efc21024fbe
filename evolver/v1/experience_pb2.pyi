from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExperienceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERIENCE_KIND_UNSPECIFIED: _ClassVar[ExperienceKind]
    EXPERIENCE_KIND_SUCCESS: _ClassVar[ExperienceKind]
    EXPERIENCE_KIND_FAILURE: _ClassVar[ExperienceKind]
    EXPERIENCE_KIND_COMPARATIVE: _ClassVar[ExperienceKind]

class ExperienceKey(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERIENCE_KEY_UNSPECIFIED: _ClassVar[ExperienceKey]
    EXPERIENCE_KEY_WHEN_TO_USE: _ClassVar[ExperienceKey]
    EXPERIENCE_KEY_TASK_QUERY: _ClassVar[ExperienceKey]

class ExperienceExtractorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERIENCE_EXTRACTOR_KIND_UNSPECIFIED: _ClassVar[ExperienceExtractorKind]
    EXPERIENCE_EXTRACTOR_KIND_RULES: _ClassVar[ExperienceExtractorKind]
    EXPERIENCE_EXTRACTOR_KIND_LLM: _ClassVar[ExperienceExtractorKind]
    EXPERIENCE_EXTRACTOR_KIND_HYBRID: _ClassVar[ExperienceExtractorKind]
EXPERIENCE_KIND_UNSPECIFIED: ExperienceKind
EXPERIENCE_KIND_SUCCESS: ExperienceKind
EXPERIENCE_KIND_FAILURE: ExperienceKind
EXPERIENCE_KIND_COMPARATIVE: ExperienceKind
EXPERIENCE_KEY_UNSPECIFIED: ExperienceKey
EXPERIENCE_KEY_WHEN_TO_USE: ExperienceKey
EXPERIENCE_KEY_TASK_QUERY: ExperienceKey
EXPERIENCE_EXTRACTOR_KIND_UNSPECIFIED: ExperienceExtractorKind
EXPERIENCE_EXTRACTOR_KIND_RULES: ExperienceExtractorKind
EXPERIENCE_EXTRACTOR_KIND_LLM: ExperienceExtractorKind
EXPERIENCE_EXTRACTOR_KIND_HYBRID: ExperienceExtractorKind

class Experience(_message.Message):
    __slots__ = ("experience_id", "kind", "when_to_use", "content", "env_id", "source_task_id", "source_group_id", "score", "prompt_version")
    EXPERIENCE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WHEN_TO_USE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    experience_id: str
    kind: ExperienceKind
    when_to_use: str
    content: str
    env_id: str
    source_task_id: str
    source_group_id: str
    score: float
    prompt_version: str
    def __init__(self, experience_id: _Optional[str] = ..., kind: _Optional[_Union[ExperienceKind, str]] = ..., when_to_use: _Optional[str] = ..., content: _Optional[str] = ..., env_id: _Optional[str] = ..., source_task_id: _Optional[str] = ..., source_group_id: _Optional[str] = ..., score: _Optional[float] = ..., prompt_version: _Optional[str] = ...) -> None: ...

class RetrievedExperience(_message.Message):
    __slots__ = ("experience", "similarity")
    EXPERIENCE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    experience: Experience
    similarity: float
    def __init__(self, experience: _Optional[_Union[Experience, _Mapping]] = ..., similarity: _Optional[float] = ...) -> None: ...
