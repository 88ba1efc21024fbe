"""Serves any Environment over the gRPC Environment protocol.

Instances have ids and idle expiry. Every environment call runs in a worker thread under a
time limit: a call that hangs fails with DEADLINE_EXCEEDED and its instance is dropped (its
state is unknown); a crash in environment code fails that call with INTERNAL and the
environment's message. The server itself keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from evolver.envs import _convert
from evolver.envs.base import CallResult, Environment, Episode, state_hash
from evolver.errors import (DeadlineExceeded, EnvironmentFailure, EvolverError, FailedPrecondition, InvalidArgument,
                            NotFound, Unavailable)
from evolver.v1 import environment_pb2 as pb
from evolver.v1 import environment_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MAX_PAGE = 1000


@dataclass
class _Instance:
    episode: Episode
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EnvironmentServicer(pb_grpc.EnvironmentServiceServicer):
    def __init__(self, env: Environment, *, call_timeout_s: float = 10.0, idle_expiry_s: float = 600.0,
                 max_instances: int = 1024, workers: int = 8):
        self.env = env
        self.call_timeout_s = call_timeout_s
        self.idle_expiry_s = idle_expiry_s
        self.max_instances = max_instances
        self.instances: dict[str, _Instance] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"env-{env.env_id}")
        self._reaper: asyncio.Task | None = None

    # --- plumbing ------------------------------------------------------------------------------

    async def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), self.call_timeout_s)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"environment {self.env.env_id}: {what} did not finish within "
                                   f"{self.call_timeout_s:.1f}s") from None
        except EvolverError:
            raise
        except Exception as e:
            log.exception("environment %s: %s crashed", self.env.env_id, what)
            raise EnvironmentFailure(f"environment {self.env.env_id}: {what} crashed: {type(e).__name__}: {e}") from None

    def _get(self, instance_id: str) -> _Instance:
        if not instance_id:
            raise InvalidArgument("instance_id", "must be non-empty")
        inst = self.instances.get(instance_id)
        if inst is None:
            raise NotFound(f"no instance {instance_id!r} (released, expired, or never created)")
        inst.last_used = time.monotonic()
        return inst

    async def _call(self, instance_id: str, what: str, fn: Callable[[Episode], Any]) -> Any:
        inst = self._get(instance_id)
        async with inst.lock:  # one call at a time per instance
            try:
                return await self._run(what, lambda: fn(inst.episode))
            except DeadlineExceeded:
                # The hung call may still mutate the instance: its state can't be trusted.
                self.instances.pop(instance_id, None)
                raise

    def start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(30.0, self.idle_expiry_s / 4)))
            self.reap_idle()

    def reap_idle(self) -> int:
        now = time.monotonic()
        expired = [i for i, inst in self.instances.items() if now - inst.last_used > self.idle_expiry_s]
        for instance_id in expired:
            inst = self.instances.pop(instance_id)
            try:
                inst.episode.close()
            except Exception:
                log.warning("closing expired instance %s failed", instance_id)
        return len(expired)

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for inst in self.instances.values():
            try:
                inst.episode.close()
            except Exception:
                pass
        self.instances.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- RPCs ----------------------------------------------------------------------------------

    async def ListTools(self, request: pb.ListToolsRequest, context) -> pb.ListToolsResponse:
        tools = await self._run("ListTools", lambda: self.env.tools(list(request.toolsets)))
        return pb.ListToolsResponse(tools=[_convert.tool_to_pb(t) for t in tools], state_visible=self.env.state_visible)

    async def ListSeedTasks(self, request: pb.ListSeedTasksRequest, context) -> pb.ListSeedTasksResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
        try:
            offset = int(request.page_token or 0)
        except ValueError:
            raise InvalidArgument("page_token", "not a token this server issued") from None
        tasks = await self._run("ListSeedTasks", lambda: self.env.seed_tasks(request.split))
        size = request.page_size or 100
        page = tasks[offset:offset + size]
        nxt = str(offset + size) if offset + size < len(tasks) else ""
        return pb.ListSeedTasksResponse(tasks=[_convert.seed_to_pb(s) for s in page], next_page_token=nxt)

    async def Create(self, request: pb.CreateRequest, context) -> pb.CreateResponse:
        if len(self.instances) >= self.max_instances:
            self.reap_idle()
            if len(self.instances) >= self.max_instances:
                raise Unavailable(f"environment {self.env.env_id} is at its limit of {self.max_instances} instances")
        source = request.WhichOneof("source")
        if source is None:
            raise InvalidArgument("source", "set seed_task_id or initial_state_json")
        initial_state = None
        if source == "initial_state_json":
            try:
                initial_state = json.loads(request.initial_state_json)
            except json.JSONDecodeError as e:
                raise InvalidArgument("initial_state_json", f"not valid JSON: {e.msg}") from None
        episode = await self._run("Create", lambda: self.env.create(
            seed_task_id=request.seed_task_id or None, initial_state=initial_state,
            toolsets=list(request.toolsets), query_override=request.query_override))
        instance_id = uuid.uuid4().hex
        self.instances[instance_id] = _Instance(episode, time.monotonic())
        tools = await self._run("ListTools", episode.tool_list)
        return pb.CreateResponse(instance_id=instance_id, user_message=episode.user_message,
                                 tools=[_convert.tool_to_pb(t) for t in tools])

    async def Step(self, request: pb.StepRequest, context) -> pb.StepResponse:
        parsed = [_convert.call_from_pb(c) for c in request.tool_calls]
        calls = [c for c in parsed if not isinstance(c, CallResult)]
        outcome = await self._call(request.instance_id, "Step",
                                   lambda ep: ep.step(calls, request.assistant_text) if (calls or not parsed) else None)
        results = iter(outcome.results if outcome else [])
        # Malformed calls answer in place; the others in the order they ran.
        observations = [_convert.result_to_pb(p if isinstance(p, CallResult) else next(results)) for p in parsed]
        if outcome is None:
            return pb.StepResponse(observations=observations)
        return pb.StepResponse(observations=observations, next_user_message=outcome.next_user_message, done=outcome.done)

    async def Evaluate(self, request: pb.EvaluateRequest, context) -> pb.EvaluateResponse:
        score = await self._call(request.instance_id, "Evaluate", lambda ep: ep.evaluate())
        return pb.EvaluateResponse(score=score.score, success=score.success, details_json=json.dumps(score.details, default=str))

    async def GetState(self, request: pb.GetStateRequest, context) -> pb.GetStateResponse:
        if not self.env.state_visible:
            raise FailedPrecondition(f"environment {self.env.env_id} does not expose its state")
        state = await self._call(request.instance_id, "GetState", lambda ep: ep.state())
        return pb.GetStateResponse(state_json=json.dumps(state, sort_keys=True, default=str), state_hash=state_hash(state))

    async def Release(self, request: pb.ReleaseRequest, context) -> pb.ReleaseResponse:
        inst = self._get(request.instance_id)
        self.instances.pop(request.instance_id, None)
        await self._run("Release", inst.episode.close)
        return pb.ReleaseResponse()
