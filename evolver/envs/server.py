"""Serves any Environment over the gRPC Environment protocol.

Instances have ids and idle expiry. Each instance lives in its own worker process
(evolver.envs.sandbox): a call that overruns call_timeout_s kills that process and fails with
DEADLINE_EXCEEDED (the instance is gone, its state unknown); a crash in environment code fails
that call with INTERNAL and the environment's message. Either way the server keeps serving.
What the agent sends and what comes back are capped (evolver.envs.caps).
ListTools and ListSeedTasks run no agent input and stay in this process, under the same limit.
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

from evolver.envs import convert
from evolver.envs.base import CallResult, Environment, StepOutcome
from evolver.envs.caps import EnvironmentCaps, clip_text, parse_arguments
from evolver.envs.sandbox import InstanceProcess, ProcessPool
from evolver.errors import (DeadlineExceeded, EnvironmentFailure, EvolverError, FailedPrecondition, InvalidArgument,
                            NotFound, Unavailable)
from evolver.v1 import environment_pb2 as pb
from evolver.v1 import environment_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MAX_PAGE = 1000


@dataclass
class _Instance:
    process: InstanceProcess
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EnvironmentServicer(pb_grpc.EnvironmentServiceServicer):
    def __init__(self, env: Environment, *, call_timeout_s: float = 10.0, idle_expiry_s: float = 600.0,
                 max_instances: int = 256, workers: int = 4, caps: EnvironmentCaps | None = None,
                 warm_processes: int = 4):
        self.env = env
        self.caps = caps or EnvironmentCaps(call_timeout_s=call_timeout_s)
        self.call_timeout_s = self.caps.call_timeout_s
        self.idle_expiry_s = idle_expiry_s
        self.max_instances = max_instances
        self.instances: dict[str, _Instance] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"env-{env.env_id}")
        self.processes = ProcessPool(env, self.caps, warm=warm_processes)
        self._reaper: asyncio.Task | None = None

    # --- plumbing ------------------------------------------------------------------------------

    async def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        """In-process calls that take no agent input (tool and seed listings)."""
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
            raise EnvironmentFailure(f"environment {self.env.env_id}: {what} crashed: {type(e).__name__}: "
                                     f"{clip_text(str(e), 300)}") from None

    def _get(self, instance_id: str) -> _Instance:
        if not instance_id:
            raise InvalidArgument("instance_id", "must be non-empty")
        inst = self.instances.get(instance_id)
        if inst is None:
            raise NotFound(f"no instance {instance_id[:64]!r} (released, expired, stopped, or never created)")
        inst.last_used = time.monotonic()
        return inst

    async def _call(self, instance_id: str, what: str, op: str, args: Any = None) -> Any:
        inst = self._get(instance_id)
        async with inst.lock:  # one call at a time per instance
            if self.instances.get(instance_id) is not inst:
                raise NotFound(f"no instance {instance_id[:64]!r} (released while this call waited)")
            try:
                return await inst.process.call(op, args, f"environment {self.env.env_id}: {what}", self.call_timeout_s)
            except (DeadlineExceeded, EnvironmentFailure):
                if not inst.process.alive:  # its worker was stopped or died: the instance is gone
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
        expired = [i for i, inst in self.instances.items()
                   if now - inst.last_used > self.idle_expiry_s and not inst.lock.locked()]
        for instance_id in expired:
            self.instances.pop(instance_id).process.kill()
        return len(expired)

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for inst in self.instances.values():
            inst.process.kill()
        self.instances.clear()
        self.processes.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- RPCs ----------------------------------------------------------------------------------

    async def ListTools(self, request: pb.ListToolsRequest, context) -> pb.ListToolsResponse:
        tools = await self._run("ListTools", lambda: self.env.tools(list(request.toolsets)))
        return pb.ListToolsResponse(tools=[convert.tool_to_pb(t) for t in tools], state_visible=self.env.state_visible)

    async def ListSeedTasks(self, request: pb.ListSeedTasksRequest, context) -> pb.ListSeedTasksResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
        try:
            offset = int(request.page_token or 0)
        except ValueError:
            offset = -1
        if offset < 0:
            raise InvalidArgument("page_token", "not a token this server issued")
        tasks = await self._run("ListSeedTasks", lambda: self.env.seed_tasks(request.split))
        size = request.page_size or 100
        page = tasks[offset:offset + size]
        nxt = str(offset + size) if offset + size < len(tasks) else ""
        return pb.ListSeedTasksResponse(tasks=[convert.seed_to_pb(s) for s in page], next_page_token=nxt)

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
            except RecursionError:
                raise InvalidArgument("initial_state_json", "nested too deeply") from None
            except ValueError as e:
                raise InvalidArgument("initial_state_json", f"not usable JSON: {str(e)[:80]}") from None
        process = await self.processes.take()
        instance_id = uuid.uuid4().hex
        inst = _Instance(process, time.monotonic())
        self.instances[instance_id] = inst
        args = dict(seed_task_id=request.seed_task_id or None, initial_state=initial_state,
                    toolsets=list(request.toolsets), query_override=request.query_override)
        try:
            created = await self._call(instance_id, "Create", "create", args)
        except BaseException:
            if self.instances.pop(instance_id, None) is not None:
                self.processes.give_back(process)
            raise
        return pb.CreateResponse(instance_id=instance_id, user_message=created.user_message,
                                 tools=[convert.tool_to_pb(t) for t in created.tools])

    async def Step(self, request: pb.StepRequest, context) -> pb.StepResponse:
        cap = self.caps.max_calls_per_step
        parsed = [parse_arguments(c.call_id, c.name, c.arguments_json, self.caps) if i < cap else
                  CallResult(c.call_id, f"Error: not run: at most {cap} calls are run per step", True)
                  for i, c in enumerate(request.tool_calls)]
        calls = [c for c in parsed if not isinstance(c, CallResult)]
        text = clip_text(request.assistant_text, self.caps.max_observation_chars)
        outcome = (await self._call(request.instance_id, "Step", "step",
                                    ([(c.name, c.arguments, c.call_id) for c in calls], text))
                   if (calls or not parsed) else None)
        if outcome is not None:
            results_, next_message, done = outcome
            outcome = StepOutcome([CallResult(*r) for r in results_], next_message, done)
        results = iter(outcome.results if outcome else [])
        # Malformed calls answer in place; the others in the order they ran.
        observations = [convert.result_to_pb(p if isinstance(p, CallResult) else next(results)) for p in parsed]
        if outcome is None:
            return pb.StepResponse(observations=observations)
        return pb.StepResponse(observations=observations, next_user_message=outcome.next_user_message, done=outcome.done)

    async def Evaluate(self, request: pb.EvaluateRequest, context) -> pb.EvaluateResponse:
        score = await self._call(request.instance_id, "Evaluate", "evaluate")
        return pb.EvaluateResponse(score=score.score, success=score.success,
                                   details_json=json.dumps(score.details, allow_nan=False))

    async def GetState(self, request: pb.GetStateRequest, context) -> pb.GetStateResponse:
        if not self.env.state_visible:
            raise FailedPrecondition(f"environment {self.env.env_id} does not expose its state")
        text, digest = await self._call(request.instance_id, "GetState", "state")
        return pb.GetStateResponse(state_json=text, state_hash=digest)

    async def Release(self, request: pb.ReleaseRequest, context) -> pb.ReleaseResponse:
        inst = self._get(request.instance_id)
        async with inst.lock:  # an in-flight Step finishes first
            if self.instances.get(request.instance_id) is not inst:
                return pb.ReleaseResponse()  # released or stopped meanwhile
            self.instances.pop(request.instance_id, None)
            try:
                await inst.process.call("close", None, f"environment {self.env.env_id}: Release", self.call_timeout_s)
            except (DeadlineExceeded, EnvironmentFailure):
                return pb.ReleaseResponse()  # its worker is gone with it
            self.processes.give_back(inst.process)
        return pb.ReleaseResponse()
