from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StepLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_LABEL_UNSPECIFIED: _ClassVar[StepLabel]
    STEP_LABEL_GOOD: _ClassVar[StepLabel]
    STEP_LABEL_BAD: _ClassVar[StepLabel]

class AttributionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTRIBUTION_METHOD_UNSPECIFIED: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_STATE_PROGRESS: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_LLM_JUDGE: _ClassVar[AttributionMethod]

class StepLabeler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_LABELER_UNSPECIFIED: _ClassVar[StepLabeler]
    STEP_LABELER_STATE_PROGRESS: _ClassVar[StepLabeler]
    STEP_LABELER_LLM: _ClassVar[StepLabeler]
    STEP_LABELER_HYBRID: _ClassVar[StepLabeler]

class StepLabelSkip(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_LABEL_SKIP_UNSPECIFIED: _ClassVar[StepLabelSkip]
    STEP_LABEL_SKIP_SMALL_ADVANTAGE: _ClassVar[StepLabelSkip]
    STEP_LABEL_SKIP_NEGATIVE: _ClassVar[StepLabelSkip]
STEP_LABEL_UNSPECIFIED: StepLabel
STEP_LABEL_GOOD: StepLabel
STEP_LABEL_BAD: StepLabel
ATTRIBUTION_METHOD_UNSPECIFIED: AttributionMethod
ATTRIBUTION_METHOD_STATE_PROGRESS: AttributionMethod
ATTRIBUTION_METHOD_LLM_JUDGE: AttributionMethod
STEP_LABELER_UNSPECIFIED: StepLabeler
STEP_LABELER_STATE_PROGRESS: StepLabeler
STEP_LABELER_LLM: StepLabeler
STEP_LABELER_HYBRID: StepLabeler
STEP_LABEL_SKIP_UNSPECIFIED: StepLabelSkip
STEP_LABEL_SKIP_SMALL_ADVANTAGE: StepLabelSkip
STEP_LABEL_SKIP_NEGATIVE: StepLabelSkip

class StepAttribution(_message.Message):
    __slots__ = ("trajectory_id", "method", "labels", "reasons", "prompt_version", "state_progress_labels")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_PROGRESS_LABELS_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    method: AttributionMethod
    labels: _containers.RepeatedScalarFieldContainer[StepLabel]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    prompt_version: str
    state_progress_labels: _containers.RepeatedScalarFieldContainer[StepLabel]
    def __init__(self, trajectory_id: _Optional[str] = ..., method: _Optional[_Union[AttributionMethod, str]] = ..., labels: _Optional[_Iterable[_Union[StepLabel, str]]] = ..., reasons: _Optional[_Iterable[str]] = ..., prompt_version: _Optional[str] = ..., state_progress_labels: _Optional[_Iterable[_Union[StepLabel, str]]] = ...) -> None: ...
