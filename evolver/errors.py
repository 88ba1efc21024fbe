"""Domain errors. Business logic raises these; one gRPC interceptor maps them to status codes and
the bus worker maps PoisonMessage to the dead-letter stream. Nothing here knows about transports."""

from __future__ import annotations

from dataclasses import dataclass


class EvolverError(Exception):
    """Base of every error the services raise on purpose."""


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(EvolverError):
    """A request field is malformed, independent of system state."""

    def __init__(self, field: str | None = None, description: str = "", *, violations: list[FieldViolation] | None = None):
        self.violations = list(violations or [])
        if field is not None:
            self.violations.insert(0, FieldViolation(field, description))
        if not self.violations:
            raise ValueError("InvalidArgument needs at least one field violation")
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


class NotFound(EvolverError):
    """The named thing (run, task, environment, instance) does not exist."""


class FailedPrecondition(EvolverError):
    """The request is valid but the system is not in a state to serve it."""


class Unavailable(EvolverError):
    """A dependency (NATS, Qdrant, an environment server) cannot be reached; retry with backoff."""


class DeadlineExceeded(EvolverError):
    """An operation (e.g. an environment call) ran past its time limit."""


class EnvironmentFailure(EvolverError):
    """Environment code itself crashed (not the agent's call: that is an observation)."""


class PoisonMessage(EvolverError):
    """A bus message that can never be processed; it goes to the dead-letter stream, unretried."""


class Validator:
    """Collects every field violation of a request before raising, so a client sees all at once."""

    def __init__(self) -> None:
        self._violations: list[FieldViolation] = []

    def check(self, ok: bool, field: str, description: str) -> None:
        if not ok:
            self._violations.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self._violations:
            raise InvalidArgument(violations=self._violations)
