"""The environment backend interface. Built-in environments implement it in-process; the gRPC
server (evolver.envs.server) exposes any implementation over the Environment protocol, and
RemoteEnvironment (evolver.envs.client) speaks that protocol back. Plain data, no transport."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object
    toolset: str = ""


@dataclass(frozen=True)
class SeedTask:
    seed_task_id: str
    split: str
    user_turns: tuple[str, ...]
    initial_state: dict[str, Any]
    toolsets: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]
    call_id: str = ""


@dataclass(frozen=True)
class CallResult:
    call_id: str
    content: str
    is_error: bool


@dataclass
class StepOutcome:
    results: list[CallResult]
    next_user_message: str = ""
    done: bool = False


@dataclass(frozen=True)
class Score:
    score: float
    success: bool
    details: dict[str, Any] = field(default_factory=dict)


class Episode(Protocol):
    """One isolated instance of an environment, from creation to release."""

    user_message: str

    def tool_list(self) -> list[Tool]: ...

    def step(self, calls: Sequence[Call], assistant_text: str = "") -> StepOutcome: ...

    def state(self) -> dict[str, Any]: ...

    def evaluate(self) -> Score: ...

    def close(self) -> None: ...


class Environment(Protocol):
    env_id: str
    state_visible: bool

    def tools(self, toolsets: Sequence[str] = ()) -> list[Tool]: ...

    def seed_tasks(self, split: str = "") -> list[SeedTask]: ...

    def create(self, *, seed_task_id: str | None = None, initial_state: dict[str, Any] | None = None,
               toolsets: Sequence[str] = (), query_override: str = "") -> Episode: ...


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def state_hash(state: dict[str, Any]) -> str:
    """Stable hash of a canonical state: equal states hash equal, across processes."""
    return hashlib.sha256(canonical_json(state).encode()).hexdigest()[:32]
