"""Environment instances in worker processes, so a runaway call costs its instance, never the server.

A thread cannot be stopped: a tool call that never returns (or holds the interpreter lock for
half a minute on a huge integer) used to keep its worker thread, and enough of them starved the
server. Here every live instance owns one worker process (forked from a lean fork server that
has the environment's module loaded). A call that overruns its limit kills that process: the
instance is gone (DEADLINE_EXCEEDED), every other instance and the server go on. Released
instances hand their process back to a small warm pool, so Create costs an IPC round trip, not
a fork, in steady state.

What crosses the pipe is already bounded and JSON-safe (evolver.envs.caps): observations are
clipped, state documents sanitised, so nothing the agent did can make the server's own
serialisation fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any

from evolver.envs.base import Call, Environment, Score, Tool
from evolver.envs.caps import EnvironmentCaps, canonical_state, clip_text, safe_details
from evolver.errors import (DeadlineExceeded, EnvironmentFailure, EvolverError, FailedPrecondition, FieldViolation,
                            InvalidArgument, NotFound, Unavailable)

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[EvolverError]] = {c.__name__: c for c in (FailedPrecondition, NotFound, Unavailable)}


@dataclass
class Created:
    user_message: str
    tools: list[Tool]


def _child_main(conn, env: Environment, caps: EnvironmentCaps) -> None:
    """The worker process: one instance at a time, driven by (op, args) messages."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops its workers itself
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    # Deep but legitimate states (300 nested directories) recurse in the environment's own
    # snapshot code; a worker's main thread has the stack for it. A crash here costs only this
    # instance.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    if caps.instance_memory_mb:
        import resource
        limit = caps.instance_memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    episode = None
    conn.send(("ready",))  # start-up (imports, unpickling the environment) is not a call's time
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if op == "create":
                if episode is not None:
                    episode.close()
                episode = env.create(**args)
                reply: Any = Created(clip_text(episode.user_message, caps.max_observation_chars), episode.tool_list())
            elif op == "step":  # plain tuples both ways: pickling dataclasses costs more than the step
                calls, text = args
                out = episode.step([Call(n, a, i) for n, a, i in calls], text)
                reply = ([(r.call_id, clip_text(str(r.content), caps.max_observation_chars), r.is_error)
                          for r in out.results],
                         clip_text(out.next_user_message or "", caps.max_observation_chars), out.done)
            elif op == "state":
                reply = canonical_state(episode.state(), caps)
            elif op == "evaluate":
                reply = _evaluate(episode, caps)
            elif op == "close":
                if episode is not None:
                    episode.close()
                episode, reply = None, None
            else:
                raise ValueError(f"unknown op {op!r}")
            conn.send(("ok", reply))
        except InvalidArgument as e:
            conn.send(("invalid", [(v.field, v.description) for v in e.violations]))
        except EvolverError as e:
            conn.send(("error", type(e).__name__, clip_text(str(e), 2000)))
        except BaseException as e:  # environment code crashed (MemoryError included)
            conn.send(("crash", type(e).__name__, clip_text(str(e), 2000)))


def _evaluate(episode, caps: EnvironmentCaps) -> Score:
    """An evaluation that fails on what the agent did (a state its checker cannot read) is a
    failed attempt, scored 0 with the reason, not an infrastructure failure."""
    try:
        s = episode.evaluate()
    except EvolverError:
        raise
    except Exception as e:
        return Score(0.0, False, {"evaluation_error": clip_text(f"{type(e).__name__}: {e}", 500)})
    return Score(float(s.score), bool(s.success), safe_details(s.details, caps))


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the server process dies, so none is orphaned."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_MAIN_SWAP = threading.Lock()
STARTUP_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _no_main_reimport(env: Environment):
    """multiprocessing makes every new worker re-import the server's __main__ module (for
    `python -m evolver.envs.serve`: grpc, protobuf, telemetry; ~100 ms a worker). Nothing a
    worker runs needs it unless the environment class itself lives in __main__, so while the
    worker's start-up data is taken, __main__ is a bare module."""
    if type(env).__module__ == "__main__":
        yield
        return
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


class InstanceProcess:
    """The server's handle on one worker process."""

    def __init__(self, ctx, env: Environment, caps: EnvironmentCaps):
        self._killed = False
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(child, env, caps), daemon=True)
        with _no_main_reimport(env):
            self.process.start()
        child.close()
        self.conn = parent
        self.caps = caps
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future | None = None
        try:
            ready = parent.poll(STARTUP_TIMEOUT_S) and parent.recv() == ("ready",)
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise EnvironmentFailure(f"an instance worker for environment {env.env_id} did not start within "
                                     f"{STARTUP_TIMEOUT_S:.0f}s (exit code {self.process.exitcode})")

    def _readable(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif waiter is None:  # nobody asked: the worker closed its end (it died); stop watching
            self._stop_reading()

    def _stop_reading(self) -> None:
        if self._loop is not None:
            try:
                self._loop.remove_reader(self.conn.fileno())
            except (OSError, ValueError):
                pass
            self._loop = None

    @property
    def alive(self) -> bool:
        # Killed counts as gone at once: under load the SIGKILLed process can still look alive
        # for a moment after kill() returned (found by the runaway test under a loaded CPU).
        return not self._killed and self.process.is_alive()

    async def call(self, op: str, args: Any, what: str, timeout_s: float) -> Any:
        if self._killed:
            raise EnvironmentFailure(f"{what}: the instance's worker was stopped; the instance is gone")
        loop = asyncio.get_running_loop()
        if self._loop is None:  # one reader for the process's life: no epoll changes per call
            self._loop = loop
            loop.add_reader(self.conn.fileno(), self._readable)
        ready = loop.create_future()
        self._waiter = ready
        try:
            self.conn.send((op, args))
        except (OSError, ValueError) as e:
            self.kill()
            raise EnvironmentFailure(f"{what}: the instance's worker is gone ({type(e).__name__})") from None
        timer = loop.call_later(timeout_s, _expire, ready)
        try:
            await ready
        except asyncio.TimeoutError:
            self.kill()
            raise DeadlineExceeded(f"{what} did not finish within {timeout_s:.1f}s; the instance was "
                                   "stopped") from None
        except BaseException:
            self.kill()  # cancelled mid-call: the worker's state is unknown
            raise
        finally:
            timer.cancel()
            self._waiter = None
        try:
            reply = self.conn.recv()
        except (EOFError, OSError):
            code = self.process.exitcode
            self.kill()
            raise EnvironmentFailure(f"{what}: the instance's worker died (exit code {code}); "
                                     "the instance is gone") from None
        kind = reply[0]
        if kind == "ok":
            return reply[1]
        if kind == "invalid":
            raise InvalidArgument(violations=[FieldViolation(f, d) for f, d in reply[1]])
        if kind == "error":
            raise _ERRORS.get(reply[1], EnvironmentFailure)(reply[2])
        raise EnvironmentFailure(f"{what} crashed: {reply[1]}: {reply[2]}")

    def kill(self) -> None:
        self._killed = True
        self._stop_reading()
        if self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.join(timeout=0.05)  # reaped here or by multiprocessing later; never block the loop
        try:
            self.conn.close()
        except OSError:
            pass


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


class ProcessPool:
    """Worker processes for instances: one per live instance, a few warm ones kept for reuse."""

    def __init__(self, env: Environment, caps: EnvironmentCaps, *, warm: int = 4):
        try:  # each worker gets its own copy of the environment object: say so at start, clearly
            pickle.dumps(env)
        except Exception as e:
            raise ValueError(f"environment {getattr(env, 'env_id', env)!r} cannot be copied to its instance "
                             f"workers ({type(e).__name__}: {e}); keep connections and other live resources out "
                             "of the Environment object and open them in create()") from None
        self.env, self.caps, self.warm = env, caps, warm
        self._ctx = multiprocessing.get_context("forkserver")
        # The fork server imports the environment's module (and what it names in an optional
        # `preload` attribute: data to load once) so each worker is a cheap fork.
        self._ctx.set_forkserver_preload([type(env).__module__, "evolver.envs.sandbox",
                                          *getattr(env, "preload", ())])
        self._idle: list[InstanceProcess] = []
        self._refill: asyncio.Task | None = None
        self.started = 0

    async def take(self) -> InstanceProcess:
        """A worker for a new instance: a warm one when there is one (then the pool is refilled
        in the background, so Create rarely waits for a fork)."""
        proc = None
        while self._idle and proc is None:
            candidate = self._idle.pop()
            proc = candidate if candidate.alive else None
        if proc is None:
            proc = await self._start()
        if self._refill is None or self._refill.done():
            self._refill = asyncio.get_running_loop().create_task(self._fill())
        return proc

    async def _start(self) -> InstanceProcess:
        self.started += 1
        return await asyncio.to_thread(InstanceProcess, self._ctx, self.env, self.caps)

    async def _fill(self) -> None:
        try:
            while len(self._idle) < self.warm:
                self._idle.append(await self._start())
        except Exception as e:  # the next take() starts one itself
            log.warning("environment %s: warming a worker failed: %s", self.env.env_id, e)

    def give_back(self, proc: InstanceProcess) -> None:
        if proc.alive and len(self._idle) < self.warm:
            self._idle.append(proc)
        else:
            proc.kill()

    def close(self) -> None:
        if self._refill is not None:
            self._refill.cancel()
        for proc in self._idle:
            proc.kill()
        self._idle.clear()
