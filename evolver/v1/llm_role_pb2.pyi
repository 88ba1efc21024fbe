from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RoleUsage(_message.Message):
    __slots__ = ("role", "calls", "prompt_tokens", "completion_tokens", "latency_s", "parse_failures", "fallbacks", "call_failures", "skipped")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    PARSE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    CALL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    role: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    parse_failures: int
    fallbacks: int
    call_failures: int
    skipped: int
    def __init__(self, role: _Optional[str] = ..., calls: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., latency_s: _Optional[float] = ..., parse_failures: _Optional[int] = ..., fallbacks: _Optional[int] = ..., call_failures: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...
