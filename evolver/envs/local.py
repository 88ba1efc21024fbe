"""An environment backend used in the same process, through the same async client surface as
`RemoteEnvironment` (`EnvironmentClient`/`EpisodeClient`), with no transport and no sandbox.

For tests of the agent runtime and for tools that drive a built-in environment directly. It
runs environment code in the caller's thread, so it has none of the server's isolation (time
limits, caps, a process per instance): use the gRPC server for anything untrusted."""

from __future__ import annotations

import json
from typing import Any, Sequence

from evolver.envs.base import Call, Environment, Episode, Score, SeedTask, StepOutcome, Tool
from evolver.envs.caps import EnvironmentCaps, canonical_state
from evolver.errors import FailedPrecondition, NotFound


class InProcessEpisode:
    def __init__(self, env: Environment, episode: Episode):
        self._env, self._episode = env, episode
        self.user_message = episode.user_message
        self.tools = episode.tool_list()
        self._released = False

    def _live(self) -> Episode:
        if self._released:
            raise NotFound("the instance was released")
        return self._episode

    async def step(self, calls: Sequence[Call], assistant_text: str = "") -> StepOutcome:
        return self._live().step(list(calls), assistant_text)

    async def state(self) -> tuple[dict[str, Any], str]:
        if not self._env.state_visible:
            raise FailedPrecondition(f"environment {self._env.env_id} does not expose its state")
        # The same JSON-safe form and hash the server returns.
        text, digest = canonical_state(self._live().state(), EnvironmentCaps())
        return json.loads(text), digest

    async def evaluate(self) -> Score:
        return self._live().evaluate()

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._episode.close()


class InProcessEnvironment:
    def __init__(self, env: Environment):
        self.env = env

    async def tools(self, toolsets: Sequence[str] = ()) -> tuple[list[Tool], bool]:
        return self.env.tools(list(toolsets)), self.env.state_visible

    async def seed_tasks(self, split: str = "") -> list[SeedTask]:
        return self.env.seed_tasks(split)

    async def create(self, *, seed_task_id: str | None = None, initial_state: dict[str, Any] | None = None,
                     toolsets: Sequence[str] = (), query_override: str = "") -> InProcessEpisode:
        return InProcessEpisode(self.env, self.env.create(seed_task_id=seed_task_id, initial_state=initial_state,
                                                          toolsets=list(toolsets), query_override=query_override))
