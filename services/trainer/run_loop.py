"""One training run, step by step, resumable.

Per step: sample tasks from the curriculum, request one rollout group per task
(rollout.requested, deterministic job ids), wait for the attributed groups, compute per-token
advantages, update the LoRA policy, publish the adapter (Object Store + KV pointer +
policy.updated), checkpoint. Evaluation (held-out synthetic tasks and the environment's test
split, avg@k / best@k) runs before training, every eval_every steps and at the end.

Restart safety: job ids are f"{run}.s{step}.t{i}", so a resumed step re-requests the same groups
(the bus drops duplicates; finished groups are found in the rollout index). The checkpoint
records every group id already trained on; a group is never used twice."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from functools import partial

from opentelemetry import context as otel_context
from opentelemetry.trace import Link, SpanKind

from evolver import telemetry
from evolver.agent.demonstration import bootstrap_tasks, demonstration
from evolver.algorithms.adca import alpha_at
from evolver.algorithms.questioning import rejection_kind
from evolver.bus import is_bus_failure, topology, trace_parent
from evolver.envs.client import RemoteEnvironment
from evolver.envs.registry import environment_spec
from evolver.errors import FailedPrecondition, PoisonMessage
from evolver.models.policy_store import publish_policy
from evolver.models.roles import usage_metrics
from evolver.rpc import channel, is_transient, retry_transient, stub
from evolver.v1 import events_pb2, run_pb2, task_pb2
from evolver.v1 import task_gen_service_pb2 as tg_pb
from evolver.v1 import task_gen_service_pb2_grpc as tg_grpc
from evolver.v1 import trajectory_pb2 as tpb
from services.trainer.collection import GroupArrivals, restale_job_id, rollout_request, split_stale, wait_for_groups
from services.trainer.collection import job_id as job_of
from services.trainer.advantages import Sample, demonstration_sample, imitation_samples
from services.trainer.evaluation import eval_metrics, evaluation_due
from services.trainer.checkpoint import Checkpoint
from services.trainer.step_tally import tally
from services.trainer.time_budget import planned_steps
from services.trainer.kinds import EXPLORERS, FEASIBILITY, TASK_WRITERS
from services.trainer.tasks import choose_train_tasks, mixture, seed_task_pb, select_eval_tasks
from services.trainer.progress import phase_name
from services.trainer.run_config import RunSpec
from services.trainer.warm_start_record import WarmStartRecord, pack, reusable, warm_start_key
from services.trainer.warm_start_record import restore as restore_warm_start

log = logging.getLogger(__name__)
# How long a run rides out another service being unreachable (a restart, a NATS blip) before it
# fails with a message saying what was down.
DEPENDENCY_DEADLINE_S = 300.0


class RunStopped(Exception):
    """StopRun arrived: the loop unwinds from wherever it waits and records STOPPED."""


class RolloutsMissing(FailedPrecondition):
    """Groups did not come back within rollout.timeout_s: explorers down or dead-lettering."""


def transient_failure(e: BaseException) -> bool:
    """An outage worth riding out (NATS unreachable or timing out, a service unavailable), as
    opposed to a run that cannot succeed as configured."""
    return is_transient(e) or is_bus_failure(e) or isinstance(e, ConnectionError)


class RunLoop:
    def __init__(self, ctx, run: run_pb2.Run, spec: RunSpec, updater_factory, endpoint,
                 arrivals: GroupArrivals | None = None):
        """arrivals: woken by the trainer's rollout.attributed consumer (services/trainer/app.py)."""
        self.ctx, self.bus, self.run_pb, self.spec = ctx, ctx.bus, run, spec
        self.run_id = run.run_id
        self._updater_factory = updater_factory
        self._endpoint = endpoint
        self.arrivals = arrivals or GroupArrivals()
        self._requested: dict[int, list[str]] = {}  # training step -> its job ids (this process)
        self._stop = asyncio.Event()
        self._progress_seq = 0
        self._trace_parents: dict[str, dict[str, str]] = {}  # group id -> W3C headers of its trace
        self.base_model: tuple[str, str] = ("", "")  # (name, content digest), once the updater is built
        self._step_started: float | None = None  # monotonic, when this process's last train_step began

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @stop_requested.setter
    def stop_requested(self, value: bool) -> None:
        if value:  # wakes every wait of this loop
            self._stop.set()

    # --- records -------------------------------------------------------------------------------

    async def _kv(self, bucket: str):
        return await self.bus.kv(bucket)

    async def save_run(self, state: int | None = None, message: str | None = None) -> None:
        if state is not None:
            self.run_pb.state = state
        if message is not None:
            self.run_pb.message = message
        self.run_pb.updated_at.GetCurrentTime()
        await (await self._kv(topology.RUNS_BUCKET)).put(self.run_id, self.run_pb.SerializeToString())

    async def load_checkpoint(self) -> Checkpoint:
        raw = await (await self._kv(topology.RUN_CHECKPOINTS_BUCKET)).get(self.run_id)
        if raw is None:  # a run checkpointed before checkpoints had their own bucket
            raw = await (await self._kv(topology.RUNS_BUCKET)).get(f"ckpt.{self.run_id}")
        return Checkpoint.from_bytes(raw) if raw else Checkpoint()

    async def save_checkpoint(self, ckpt: Checkpoint, weights: bytes | None) -> None:
        if weights is not None:  # weights first: the pointer never names weights that are not there
            await self.bus.put_blob(topology.CHECKPOINTS_BUCKET, self.run_id, weights)
        await (await self._kv(topology.RUN_CHECKPOINTS_BUCKET)).put(self.run_id, ckpt.to_bytes())

    async def progress(self, phase: int, step: int, **metrics: float) -> None:
        self._progress_seq += 1
        ev = events_pb2.RunProgress(run_id=self.run_id, train_step=step, phase=phase,
                                    metrics={k: float(v) for k, v in metrics.items()})
        ev.at.GetCurrentTime()
        await self.bus.publish("run.progress", ev, key=f"{self.run_id}.{phase_name(phase)}.{step}.{time.time_ns()}")

    # --- tasks ---------------------------------------------------------------------------------

    async def _task_gen(self):
        ch = channel(await self._endpoint("task_gen"))
        return ch, stub(tg_grpc.TaskGenServiceStub, ch, 60.0)

    async def _retrying(self, what: str, call):
        """Another service's call, retried through transient failures; stops early on StopRun."""
        result = await retry_transient(call, what=what, deadline_s=DEPENDENCY_DEADLINE_S,
                                       should_stop=lambda: self.stop_requested)
        self.check_stop()
        return result

    def check_stop(self) -> None:
        if self.stop_requested:
            raise RunStopped()

    async def _pool(self, split: str) -> tuple[list[task_pb2.Task], dict[str, task_pb2.TaskStats]]:
        async def call():
            ch, tg = await self._task_gen()
            async with ch:
                return await tg.ListTasks(tg_pb.ListTasksRequest(env_id=self.spec.env_id, split=split,
                                                                 source=task_pb2.TASK_SOURCE_SYNTHETIC))
        r = await self._retrying(f"task_gen ListTasks ({split})", call)
        return list(r.tasks), {s.task_id: s for s in r.stats}

    async def _env_address(self) -> str:
        async def call():
            return await environment_spec(await self._kv(topology.ENVIRONMENTS_BUCKET), self.spec.env_id)
        return (await self._retrying("environment lookup", call)).address

    async def ensure_synthetic_tasks(self) -> None:
        q = self.spec.questioning
        tasks, _ = await self._pool("train")
        if len(tasks) >= q.min_train_tasks:
            return
        await self.progress(events_pb2.RUN_PHASE_QUESTIONING, 0, pool=len(tasks))
        finished: set[str] = set()
        rejected: dict[str, int] = {}
        answered = asyncio.Event()  # set by each tasks.accepted: the pool is read again only then

        async def on_accepted(event) -> None:
            if event.message is not None and event.message.explore_request_id not in finished:
                finished.add(event.message.explore_request_id)
                for r in event.message.rejection_reasons:
                    kind = f"rejected: {rejection_kind(r)}"
                    rejected[kind] = rejected.get(kind, 0) + 1
                for key, v in usage_metrics(event.message.role_usage).items():
                    rejected[key] = rejected.get(key, 0) + v  # the task writer's calls, tokens, failures
                answered.set()
        sub = await self.bus.subscribe("tasks.accepted", on_accepted)
        started = time.monotonic()
        try:
            async def generate():
                ch, tg = await self._task_gen()
                async with ch:
                    # requester_id = the run: a resumed run asks again idempotently, another run
                    # on the same environment and seed gets its own explorations.
                    return await tg.GenerateTasks(tg_pb.GenerateTasksRequest(
                        env_id=self.spec.env_id, explorations=q.explorations,
                        walks_per_exploration=q.walks_per_exploration, max_steps_per_walk=q.max_steps_per_walk,
                        seed=self.spec.seed, max_calls_per_task=q.max_calls_per_task, requester_id=self.run_id,
                        task_writer=TASK_WRITERS[q.task_writer], explorer=EXPLORERS[q.explorer],
                        feasibility=FEASIBILITY[q.feasibility]))
            r = await self._retrying("task_gen GenerateTasks", generate)
            # Wait for every exploration (not just enough tasks): the held-out share and the
            # curriculum then see the whole pool from the first step on.
            deadline = time.monotonic() + q.wait_s
            while True:
                self.check_stop()
                tasks, _ = await self._pool("train")
                heldout, _ = await self._pool("heldout")
                await self.progress(events_pb2.RUN_PHASE_QUESTIONING, 0, pool=len(tasks), heldout=len(heldout),
                                    explorations_done=len(finished & set(r.explore_request_ids)),
                                    explorations=len(r.explore_request_ids), **rejected)
                if set(r.explore_request_ids) <= finished or time.monotonic() >= deadline:
                    break
                # Until the next exploration is answered (explorations answered before this
                # subscription are in the pool already: a resumed run reads it above).
                answered.clear()
                waits = [asyncio.ensure_future(answered.wait()), asyncio.ensure_future(self._stop.wait())]
                try:
                    await asyncio.wait(waits, timeout=max(0.0, deadline - time.monotonic()),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
        finally:
            await sub.close()
        if len(tasks) >= q.min_train_tasks:
            return
        done = len(finished & set(r.explore_request_ids))
        raise FailedPrecondition(
            f"self-questioning produced {len(tasks)} train tasks in {time.monotonic() - started:.0f}s "
            f"({done} of {len(r.explore_request_ids)} explorations answered); needed {q.min_train_tasks}. "
            "Raise questioning.explorations or questioning.walks_per_exploration, lower "
            "questioning.min_train_tasks, or, if explorations went unanswered, check the explorer and "
            "the dead-letter stream (evolver events tail dead.>) and raise questioning.wait_s")

    async def seed_tasks(self, split: str) -> list[task_pb2.Task]:
        address = await self._env_address()

        async def call():
            async with RemoteEnvironment(address) as env:
                return [seed_task_pb(s, self.spec.env_id) for s in await env.seed_tasks(split)]
        return await self._retrying(f"environment {self.spec.env_id} ListSeedTasks", call)

    async def train_pool(self) -> tuple[list[task_pb2.Task], dict[str, task_pb2.TaskStats]]:
        """The tasks the curriculum samples from (see QuestioningSpec.use_seed_tasks)."""
        q = self.spec.questioning
        if not self.spec.mechanisms.questioning:
            return await self.seed_tasks("train"), {}
        synthetic, stats = await self._pool("train")
        if not q.use_seed_tasks:
            return synthetic, stats
        seeds = await self.seed_tasks("train")
        return mixture(seeds, synthetic, q.synthetic_ratio, seed=self.spec.seed), stats

    async def sample_train_tasks(self, step: int) -> list[task_pb2.Task]:
        tasks, stats = await self.train_pool()
        return choose_train_tasks(tasks, stats, self.spec.tasks_per_step, seed=self.spec.seed, step=step)

    async def eval_tasks(self, frozen: list[str]) -> list[task_pb2.Task]:
        """The first held-out synthetic tasks (by id) and test seed tasks; or, once frozen, exactly
        the tasks named (the pool may have grown since)."""
        e = self.spec.eval
        heldout = (await self._pool("heldout"))[0]
        test = (await self.seed_tasks("test"))[:e.seed_tasks] if e.seed_tasks else []
        return select_eval_tasks(heldout, test, e.synthetic_tasks, frozen)

    # --- rollouts ------------------------------------------------------------------------------

    async def request_groups(self, prefix: str, step: int, tasks: list[task_pb2.Task], version: int, *,
                             evaluation: bool) -> list[str]:
        ids = [job_of(self.run_id, prefix, step, i) for i in range(len(tasks))]
        for job, task in zip(ids, tasks):
            await self.request_one(job, step, task, version, evaluation)
        return ids

    async def request_one(self, job: str, step: int, task: task_pb2.Task, version: int, evaluation: bool) -> None:
        # One trace per rollout: this root span's context travels in the message headers
        # through explorer, environment, memory and attributor back to the training step.
        with telemetry.tracer().start_as_current_span(
                f"rollout {job}", context=otel_context.Context(), kind=SpanKind.PRODUCER,
                attributes={"evolver.rollout_id": job, "evolver.run_id": self.run_id, "evolver.train_step": step,
                            "evolver.task_id": task.task_id, "evolver.evaluation": evaluation}):
            await self._publish_request(job, step, task, version, evaluation)

    async def request_step(self, step: int, version: int) -> list[str]:
        """A training step's groups, requested once per process (a prefetched step is not asked
        again; after a restart it is, and the bus drops the duplicates or the index has them)."""
        if step not in self._requested:
            tasks = await self.sample_train_tasks(step)
            await self.progress(events_pb2.RUN_PHASE_ROLLOUT, step, tasks=len(tasks))
            self._requested[step] = await self.request_groups("s", step, tasks, version, evaluation=False)
        return self._requested[step]

    async def _publish_request(self, job_id: str, step: int, task: task_pb2.Task, version: int,
                               evaluation: bool) -> None:
        await self.bus.publish("rollout.requested", rollout_request(
            self.spec, run_id=self.run_id, job=job_id, step=step, task=task, version=version, evaluation=evaluation,
            base_model=self.base_model), key=job_id)

    async def collect(self, group_ids: list[str], phase: int, step: int) -> list[events_pb2.RolloutAttributed]:
        """The groups, as the trainer's consumer hands them over (GroupArrivals); the index is
        read once, for groups that arrived before this loop listened (a resumed step)."""
        index = await self._kv(topology.ROLLOUT_INDEX_BUCKET)

        async def indexed(gid: str):
            raw = await index.get(gid)
            if raw is None:
                return None
            entry = json.loads(raw)
            event = await self.bus.read_event(topology.EVENTS, int(entry["seq"]))
            if event.message is None:  # the index points at what the worker decoded once
                raise PoisonMessage(f"rollout.attributed #{event.seq} no longer decodes: {event.error}")
            return event.message, entry.get("trace", {})

        async def report(n: int) -> None:
            await self.progress(phase, step, groups_done=n, groups_total=len(group_ids))
        found = await wait_for_groups(self.arrivals, group_ids, indexed, timeout_s=self.spec.rollout.timeout_s,
                                      stop=self._stop, on_progress=report)
        self.check_stop()
        if len(found) < len(group_ids):
            raise RolloutsMissing(f"{len(group_ids) - len(found)} rollout groups missing after "
                                  f"{self.spec.rollout.timeout_s:.0f}s: " + ", ".join(g for g in group_ids if g not in found))
        for gid, (_, trace) in found.items():
            self._trace_parents[gid] = trace
        return [found[g][0] for g in group_ids]

    async def evaluate(self, step: int, version: int, ckpt: Checkpoint, prefix: str = "eval") -> dict[str, float]:
        """prefix makes the job ids: the evaluation after the warm start is at step 0 too, and
        reusing the base evaluation's ids would return its groups (the bus drops the duplicate
        requests and the index already holds those groups). Its duration goes to ckpt.eval_s
        (the time budget's estimate of the final evaluation)."""
        started = time.monotonic()
        metrics = await self._evaluate(step, version, ckpt, prefix)
        ckpt.eval_s.append(time.monotonic() - started)  # a completed evaluation only
        return metrics

    async def _evaluate(self, step: int, version: int, ckpt: Checkpoint, prefix: str) -> dict[str, float]:
        tasks = await self.eval_tasks(ckpt.eval_task_ids)
        ckpt.eval_task_ids = [t.task_id for t in tasks]
        if not tasks:
            return {}
        ids = await self.request_groups(prefix, step, tasks, version, evaluation=True)
        groups = await self.collect(ids, events_pb2.RUN_PHASE_EVAL, step)
        return eval_metrics(tasks, groups, self.spec.eval.k, self.spec.eval.temperature)

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """The run, resumed from its checkpoint after a transient failure (NATS or a service
        unreachable past the retries of a single call) exactly as after a trainer restart; it
        fails only for a reason a person must act on, or when the outage outlasts the deadline."""
        started, attempt = time.monotonic(), 0
        while True:
            try:
                await self._run_once()
                return
            except RunStopped:
                await self.save_run(run_pb2.RUN_STATE_STOPPED, "stopped by request")
                await self.progress(events_pb2.RUN_PHASE_STOPPED, self.run_pb.train_step, policy_version=self.run_pb.policy_version)
                return
            except asyncio.CancelledError:
                raise  # process shutdown: the run stays RUNNING and resumes when the trainer restarts
            except Exception as e:
                attempt += 1
                if transient_failure(e) and time.monotonic() - started < DEPENDENCY_DEADLINE_S and not self.stop_requested:
                    delay = min(30.0, 2.0 * 2 ** (attempt - 1))
                    log.warning("run %s: transient failure (%s: %s); resuming from its checkpoint in %.0fs",
                                self.run_id, type(e).__name__, str(e)[:200], delay)
                    await asyncio.sleep(delay)
                    continue
                log.exception("run %s failed", self.run_id)
                try:
                    await self.save_run(run_pb2.RUN_STATE_FAILED, f"{type(e).__name__}: {str(e)[:2000]}")
                    await self.progress(events_pb2.RUN_PHASE_FAILED, self.run_pb.train_step)
                except Exception:  # NATS itself is gone: the run stays RUNNING and resumes on restart
                    log.exception("run %s: could not record the failure", self.run_id)
                return

    async def _run_once(self) -> None:
        spec = self.spec
        await self.save_run(run_pb2.RUN_STATE_RUNNING)
        ckpt = await self.load_checkpoint()
        ckpt.started_unix = ckpt.started_unix or time.time()
        await self.progress(events_pb2.RUN_PHASE_STARTING, ckpt.step, resumed=float(ckpt.step > 0 or ckpt.version > 0))
        if spec.mechanisms.questioning:
            await self.ensure_synthetic_tasks()
        updater = await asyncio.to_thread(self._updater_factory, spec)
        # Every job names the base model the trainer holds: an explorer with other weights refuses.
        self.base_model = (getattr(updater, "base_model", ""), getattr(updater, "base_model_digest", ""))
        if ckpt.version > 0:
            weights = await self.bus.get_blob(topology.CHECKPOINTS_BUCKET, self.run_id)
            if weights is None:
                raise FailedPrecondition(f"checkpoint weights for run {self.run_id} are missing")
            await asyncio.to_thread(serialized, updater.restore, weights)
        while ckpt.step <= self.planned(ckpt):
            if evaluation_due(ckpt.step, self.planned(ckpt), spec.eval_every, ckpt.evaluated, spec.eval.before_training):
                metrics = await self.evaluate(ckpt.step, ckpt.version, ckpt)
                await self.progress(events_pb2.RUN_PHASE_EVALUATED, ckpt.step, policy_version=ckpt.version,
                                    stage=0.0 if ckpt.step == 0 else 2.0, **metrics)
                ckpt.evaluated.append(ckpt.step)
                await self.save_checkpoint(ckpt, None)
            if ckpt.step == self.planned(ckpt) or self.stop_requested:
                break
            if ckpt.step == 0 and spec.mechanisms.navigating and spec.mechanisms.questioning \
                    and not spec.mechanisms.bootstrapping and not ckpt.bootstrapped:
                await self.warm_start(ckpt, updater, fine_tune=False)  # the experience pool only
            if ckpt.step == 0 and spec.mechanisms.bootstrapping and not ckpt.warm_start_evaluated:
                if not ckpt.bootstrapped:
                    await self.warm_start(ckpt, updater)
                if spec.eval.before_training:
                    metrics = await self.evaluate(0, ckpt.version, ckpt, prefix="warm")
                    await self.progress(events_pb2.RUN_PHASE_EVALUATED, 0, policy_version=ckpt.version, stage=1.0,
                                        **metrics)
                ckpt.warm_start_evaluated = True  # done with: a resumed run neither fine-tunes nor evaluates it again
                await self.save_checkpoint(ckpt, None)
            await self.train_step(ckpt, updater)
        planned = self.planned(ckpt)
        final = run_pb2.RUN_STATE_STOPPED if self.stop_requested and ckpt.step < planned else run_pb2.RUN_STATE_SUCCEEDED
        done = "done" if planned == spec.steps else \
            f"done: {planned} of {spec.steps} RL steps fitted the time budget of {spec.time_budget_minutes:g} min"
        await self.save_run(final, "stopped by request" if final == run_pb2.RUN_STATE_STOPPED else done)
        await self.progress(events_pb2.RUN_PHASE_STOPPED if final == run_pb2.RUN_STATE_STOPPED else events_pb2.RUN_PHASE_FINISHED, ckpt.step,
                            policy_version=ckpt.version, steps_done=ckpt.step, steps_configured=spec.steps)

    def planned(self, ckpt: Checkpoint) -> int:
        """The RL steps this run does: spec.steps, or fewer once the time budget says so."""
        return ckpt.planned_steps or self.spec.steps

    def plan_within_budget(self, ckpt: Checkpoint, step: int) -> int:
        """At the start of `step`, before the next steps' rollouts are asked for: the steps
        that still fit the time budget (services/trainer/time_budget.py), recorded."""
        now = time.monotonic()
        if self._step_started is not None:
            ckpt.step_s.append(now - self._step_started)  # the last step, with any evaluation after it
        self._step_started = now
        before = self.planned(ckpt)
        ckpt.planned_steps = planned_steps(
            before, step, max(self._requested, default=step), self.spec.time_budget_minutes * 60.0,
            time.time() - ckpt.started_unix, ckpt.step_s, ckpt.eval_s)
        if ckpt.planned_steps < before:
            log.info("run %s: %d of %d RL steps fit the time budget of %g min", self.run_id, ckpt.planned_steps,
                     self.spec.steps, self.spec.time_budget_minutes)
        return ckpt.planned_steps

    async def warm_start(self, ckpt: Checkpoint, updater, fine_tune: bool = True) -> None:
        """Self-bootstrapping: a few fine-tuning passes over demonstrations (the replayed
        reference solutions of synthetic train tasks, rendered as the policy's own turns). An
        advantage of 1 on every policy token with the behaviour log-probs recomputed (ratio 1)
        makes the GRPO step a supervised step on exactly those tokens. With navigating on, the
        demonstrations also go to memory, so guided rollouts have experiences from step 0
        (fine_tune=False: that alone). With bootstrapping.warm_start_from, another run's warm
        start (weights and optimizer state, on the same tasks) replaces the fine-tuning."""
        spec, b = self.spec, self.spec.bootstrapping
        train = (await self._pool("train"))[0]
        reused = await self.reusable_warm_start(train) if fine_tune and b.warm_start_from else None
        if reused is not None:
            by_id = {t.task_id: t for t in train}
            tasks = [by_id[i] for i in reused.task_ids]
        else:
            tasks = bootstrap_tasks(train, b.max_tasks)
        demos: list[Sample] = []
        if reused is None or spec.mechanisms.navigating:
            demos = await self.demonstrations(tasks, updater.tokenizer)
        if not fine_tune:
            ckpt.bootstrapped = True
            await self.save_checkpoint(ckpt, None)
            return
        await self.progress(events_pb2.RUN_PHASE_WARM_START, 0, demonstrations=float(len(tasks)))
        losses: list[float] = []
        if reused is not None:
            await asyncio.to_thread(serialized, restore_warm_start, updater, reused)
            updates, losses = reused.updates, [reused.loss_first, reused.loss_last]
        else:
            for _ in range(b.epochs if demos else 0):
                for i in range(0, len(demos), b.batch):
                    self.check_stop()
                    m = await self.supervised_step(updater, demos[i:i + b.batch], b.learning_rate)
                    losses.append(m["loss"])
            updates = len(losses)
        version = updater.version
        if tasks:
            # Kept under this run's name before any KL anchoring, so a later run can start from it.
            await self.bus.put_blob(topology.CHECKPOINTS_BUCKET, warm_start_key(self.run_id), pack(WarmStartRecord(
                source_run=reused.source_run if reused else self.run_id,
                base_model=self.base_model[0], base_model_digest=self.base_model[1],
                task_ids=[t.task_id for t in tasks], updates=updates, loss_first=losses[0] if losses else 0.0,
                loss_last=losses[-1] if losses else 0.0,
                checkpoint=await asyncio.to_thread(serialized, updater.checkpoint_blob))))
            if spec.training.kl_reference == "warm_start":
                updater.anchor_reference()  # saved with the checkpoint below, so a resumed run keeps it
            await publish_policy(self.bus, self.run_id, version, self.base_model[0] or "SmolLM2-135M-Instruct",
                                 await asyncio.to_thread(serialized, updater.adapter_blob))
        ckpt.version, ckpt.bootstrapped = version, True
        ckpt.bootstrap_task_ids = [t.task_id for t in tasks]
        await self.save_checkpoint(ckpt, await asyncio.to_thread(serialized, updater.checkpoint_blob))
        self.run_pb.policy_version = version
        await self.save_run()
        await self.progress(events_pb2.RUN_PHASE_WARM_START, 0, demonstrations=float(len(tasks)),
                            policy_version=version, loss_first=losses[0] if losses else 0.0,
                            loss_last=losses[-1] if losses else 0.0, updates=float(updates),
                            reused=float(reused is not None))

    async def demonstrations(self, tasks: list[task_pb2.Task], tokenizer) -> list[Sample]:
        """The tasks' replayed reference solutions as training samples; with navigating on,
        also published to memory, so guided rollouts have experiences from step 0."""
        spec = self.spec
        address = await self._env_address()
        demos: list[Sample] = []
        async with RemoteEnvironment(address) as env:
            for task in tasks:
                d = await demonstration(tokenizer, env, task,
                                        max_tools_shown=spec.rollout.max_tools_shown, seed=spec.seed)
                demos.append(demonstration_sample(task.task_id, d.sequence))
                if spec.mechanisms.navigating:
                    await self.bus.publish("rollout.completed", events_pb2.RolloutCompleted(
                        group=tpb.RolloutGroup(group_id=f"{self.run_id}.demo.{task.task_id}"[:128], run_id=self.run_id,
                                               task_id=task.task_id, trajectories=[d.trajectory]),
                        task=task, demonstration=True), key=f"{self.run_id}.demo.{task.task_id}")
        return demos

    async def reusable_warm_start(self, train: list[task_pb2.Task]) -> WarmStartRecord:
        """The warm start bootstrapping.warm_start_from names, checked against this run."""
        source = self.spec.bootstrapping.warm_start_from
        return reusable(await self.bus.get_blob(topology.CHECKPOINTS_BUCKET, warm_start_key(source)), source,
                        self.base_model[1], {t.task_id for t in train})

    async def supervised_step(self, updater, samples: list[Sample], learning_rate: float) -> dict[str, float]:
        return await asyncio.to_thread(serialized, partial(
            updater.update, supervised=True, prompt_grad=self.spec.bootstrapping.prompt_grad,
            learning_rate=learning_rate), samples)

    async def imitate_successes(self, updater, samples: list[Sample], successes: set[str]) -> dict[str, float]:
        """Self-bootstrapping between steps: one supervised step on the policy's own verified
        successes, after the RL step of the same batch."""
        demos = imitation_samples(samples, successes)
        if not demos:
            return {"imitated_successes": 0.0}
        m = await self.supervised_step(updater, demos, self.spec.bootstrapping.imitation_rate)
        return {"imitated_successes": float(len(demos)), "imitation_loss": m["loss"],
                "imitation_learning_rate": m["learning_rate"]}

    async def within_lag(self, groups: list, step: int, version: int, lag: int) -> tuple[list, int]:
        """Groups generated more than `lag` versions (RunSpec.version_lag) behind the policy
        being trained are dropped and asked for again at this version (under their own job ids),
        once; counted."""
        keep, old = split_stale(groups, version, lag)
        if not old:
            return keep, 0
        ids = [restale_job_id(g.group.group_id, version) for g in old]
        for job, g in zip(ids, old):
            await self.request_one(job, step, g.task, version, False)
        return keep + await self.collect(ids, events_pb2.RUN_PHASE_ROLLOUT, step), len(old)

    async def train_step(self, ckpt: Checkpoint, updater) -> None:
        spec, step = self.spec, ckpt.step
        lag = spec.rollout.max_policy_lag
        planned = self.plan_within_budget(ckpt, step)
        ids = await self.request_step(step, ckpt.version)
        # Asynchronous mode: the next `lag` steps' groups are generated while this one trains
        # (explorers and trainer busy at once); lag 0 is the synchronous loop.
        for ahead in range(step + 1, min(step + lag, planned - 1) + 1):
            await self.request_step(ahead, ckpt.version)
        groups = await self.collect(ids, events_pb2.RUN_PHASE_ROLLOUT, step)
        groups, stale = await self.within_lag(groups, step, ckpt.version, spec.version_lag)
        groups = [g for g in groups if g.group.group_id not in ckpt.consumed]
        cfg = spec.attributing.adca()
        alpha = alpha_at(cfg, step, spec.steps)
        sums = tally(groups, cfg, attributing=spec.mechanisms.attributing, alpha=alpha)
        samples = sums.samples
        await self.progress(events_pb2.RUN_PHASE_UPDATE, step, samples=len(samples))
        with telemetry.tracer().start_as_current_span(
                f"train step {step}", attributes={"evolver.run_id": self.run_id, "evolver.train_step": step,
                                                  "evolver.groups": len(groups)}) as update_span:
            t = spec.training
            metrics = await asyncio.to_thread(serialized, partial(updater.update, samples, t.micro_batch,
                                                                  mini_batches=t.mini_batches))
            if spec.mechanisms.bootstrapping and spec.bootstrapping.between_steps:
                metrics |= await self.imitate_successes(updater, samples, sums.own_successes)
        # Each consumed group's own trace ends in the step that trained on it (linked to the
        # step's span, which spans several rollouts' traces).
        for g in groups:
            parent = trace_parent(self._trace_parents.get(g.group.group_id, {}))
            span = telemetry.tracer().start_span(
                f"train on {g.group.group_id}", context=parent, kind=SpanKind.CONSUMER,
                links=[Link(update_span.get_span_context())],
                attributes={"evolver.rollout_id": g.group.group_id, "evolver.train_step": step,
                            "evolver.policy_version_after": updater.version})
            span.end()
        version = updater.version
        await publish_policy(self.bus, self.run_id, version, self.base_model[0] or "SmolLM2-135M-Instruct",
                             await asyncio.to_thread(serialized, updater.adapter_blob))
        ckpt.step, ckpt.version = step + 1, version
        ckpt.consumed += [g.group.group_id for g in groups]
        await self.save_checkpoint(ckpt, await asyncio.to_thread(serialized, updater.checkpoint_blob))
        self.run_pb.train_step, self.run_pb.policy_version = ckpt.step, version
        await self.save_run()
        await self.progress(events_pb2.RUN_PHASE_TRAINED, step + 1, policy_version=version,
                            **sums.metrics(alpha=alpha, groups=len(groups)), stale_groups=stale,
                            steps_planned=planned, **metrics)


# Two runs starting at once in one trainer built their updaters in two threads: importing trl
# and loading a model concurrently fails (a half-initialised module: "cannot import name
# 'GRPOConfig'"; accelerate's empty-weights context is process-wide: "Cannot copy out of meta
# tensor"). Found by the chaos run. Builds and updates of all runs in a process take turns (they
# share the CPU or the GPU anyway).
_UPDATER_LOCK = threading.Lock()


def serialized(fn, *args):
    with _UPDATER_LOCK:
        return fn(*args)


def default_updater_factory(settings):
    """Builds the PolicyUpdater for a run: spec.model, else settings.policy.model_dir, else the
    prepared SmolLM2."""
    def make(spec: RunSpec):
        return serialized(_build, spec)

    def _build(spec: RunSpec):
        from evolver.models.decode import dtype_setting
        from evolver.models.prepare import resolve_model_dir
        from services.trainer.updater import PolicyUpdater
        model_dir = resolve_model_dir(spec.model, settings.policy.model_dir)
        t = spec.training
        return PolicyUpdater(model_dir, learning_rate=t.learning_rate, lora_r=t.lora_r, lora_alpha=t.lora_alpha,
                             beta=t.beta, epsilon=t.epsilon, epsilon_high=t.epsilon_high,
                             off_cliprange_high=t.off_cliprange_high, temperature=spec.rollout.temperature,
                             max_grad_norm=t.max_grad_norm, seed=spec.seed, clip_ratio_c=t.clip_ratio_c,
                             gradient_checkpointing=t.gradient_checkpointing,
                             device=None if t.device == "auto" else t.device,
                             compute_dtype=dtype_setting(settings.policy.compute_dtype),
                             keep_versions=spec.version_lag + 1)
    return make
