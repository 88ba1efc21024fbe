"""Every stream, consumer and event subject of Evolver, declared once.

Work queues (explore.requested, rollout.requested) are WorkQueue streams with one durable pull
consumer shared by all replicas. Domain events are one Limits stream (replayable). The k8s KEDA
triggers and the bootstrap Job read consumer names from here; tests check they agree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable

from google.protobuf.message import Message

from evolver.v1 import events_pb2 as ev

# --- streams -----------------------------------------------------------------------------------

DAY = 86400.0


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    work_queue: bool = False
    max_age_s: float = 0.0  # 0 = unlimited
    description: str = ""


EXPLORE_JOBS = StreamSpec("EXPLORE_JOBS", ("explore.requested",), work_queue=True,
                          description="exploration walks to run (task_gen -> explorer)")
ROLLOUT_JOBS = StreamSpec("ROLLOUT_JOBS", ("rollout.requested",), work_queue=True,
                          description="rollout groups to run (trainer -> explorer)")
EVENTS = StreamSpec("EVENTS", ("explore.completed", "rollout.completed", "rollout.attributed",
                               "tasks.accepted", "experience.stored", "policy.updated", "run.progress"),
                    max_age_s=7 * DAY, description="domain events, replayable")
DIAG = StreamSpec("DIAG", ("diag.>",), max_age_s=3600.0, description="liveness pings through every service")
DEAD = StreamSpec("DEAD", ("dead.>",), max_age_s=14 * DAY,
                  description="dead letters: original payload and headers plus Dlq-* reason headers")
# Max-deliveries advisories are fire-and-forget core messages; capturing them in a stream lets
# the sweeper dead-letter messages whose handler crashed on the final attempt.
ADVISORIES = StreamSpec("DLQ_ADVISORIES", ("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",), work_queue=True,
                        max_age_s=14 * DAY, description="max-deliveries advisories awaiting the sweeper")

STREAMS: tuple[StreamSpec, ...] = (EXPLORE_JOBS, ROLLOUT_JOBS, EVENTS, DIAG, DEAD, ADVISORIES)

# --- events (subject -> payload type) ---------------------------------------------------------


@dataclass(frozen=True)
class EventSpec:
    subject: str  # may end in ".*" for a per-service token
    message_type: type[Message]
    stream: StreamSpec


EVENT_SPECS: tuple[EventSpec, ...] = (
    EventSpec("explore.requested", ev.ExploreRequested, EXPLORE_JOBS),
    EventSpec("rollout.requested", ev.RolloutRequested, ROLLOUT_JOBS),
    EventSpec("explore.completed", ev.ExploreCompleted, EVENTS),
    EventSpec("rollout.completed", ev.RolloutCompleted, EVENTS),
    EventSpec("rollout.attributed", ev.RolloutAttributed, EVENTS),
    EventSpec("tasks.accepted", ev.TasksAccepted, EVENTS),
    EventSpec("experience.stored", ev.ExperienceStored, EVENTS),
    EventSpec("policy.updated", ev.PolicyUpdated, EVENTS),
    EventSpec("run.progress", ev.RunProgress, EVENTS),
    EventSpec("diag.ping", ev.DiagPing, DIAG),
    EventSpec("diag.pong.*", ev.DiagPong, DIAG),
)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: '*' is one token, '>' the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def subjects_overlap(a: str, b: str) -> bool:
    """Whether two subject patterns can match a common subject (either one matches a concrete
    instance of the other)."""
    def concrete(p: str) -> str:
        return p.replace(">", "x").replace("*", "x")
    return subject_matches(a, concrete(b)) or subject_matches(b, concrete(a))


@functools.lru_cache(maxsize=1024)
def event_for(subject: str) -> EventSpec:
    for spec in EVENT_SPECS:
        if subject_matches(spec.subject, subject):
            return spec
    raise KeyError(f"no event declared for subject {subject!r} (add it to evolver/bus/topology.py)")


# --- consumers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerSpec:
    durable: str
    stream: StreamSpec
    filter_subject: str
    service: str
    # None = take the value from BusSettings.
    ack_wait_s: float | None = None
    max_deliver: int | None = None
    max_ack_pending: int = 256
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def diag_consumer(service: str) -> ConsumerSpec:
    return ConsumerSpec(f"{service.replace('_', '-')}-diag", DIAG, "diag.ping", service,
                        description=f"{service} answers liveness pings")


SERVICES = ("explorer", "task_gen", "memory", "attributor", "trainer")

CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec("explorer-explore-requested", EXPLORE_JOBS, "explore.requested", "explorer",
                 description="exploration walks"),
    ConsumerSpec("explorer-rollout-requested", ROLLOUT_JOBS, "rollout.requested", "explorer",
                 description="rollout groups"),
    ConsumerSpec("task-gen-explore-completed", EVENTS, "explore.completed", "task_gen",
                 description="walks -> candidate tasks"),
    ConsumerSpec("task-gen-rollout-completed", EVENTS, "rollout.completed", "task_gen",
                 description="per-task success counts for the curriculum"),
    ConsumerSpec("memory-rollout-completed", EVENTS, "rollout.completed", "memory",
                 description="experience extraction"),
    ConsumerSpec("attributor-rollout-completed", EVENTS, "rollout.completed", "attributor",
                 description="step attribution"),
    ConsumerSpec("trainer-rollout-attributed", EVENTS, "rollout.attributed", "trainer",
                 description="attributed groups for training"),
    ConsumerSpec("dead-letter-sweeper", ADVISORIES, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>", "*",
                 description="copies messages that exhausted deliveries to DEAD"),
    *(diag_consumer(s) for s in SERVICES),
)

# Key-value buckets: small durable state that must survive a service restart.
ENVIRONMENTS_BUCKET = "environments"  # env_id -> EnvironmentSpec
TASKS_BUCKET = "tasks"  # task_id -> Task (the verified pool)
TASK_STATS_BUCKET = "task-stats"  # group_id -> TaskStats of that group (summed per task on read)
SERVICES_BUCKET = "services"  # service name -> gRPC address it serves on
RUNS_BUCKET = "runs"  # run_id -> Run
RUN_CHECKPOINTS_BUCKET = "run-checkpoints"  # run_id -> the trainer's checkpoint record (JSON; weights in the Object Store)
POLICIES_BUCKET = "policies"  # run_id -> latest PolicyVersion
ROLLOUT_INDEX_BUCKET = "rollout-index"  # group_id -> EVENTS stream sequence of its rollout.attributed
KV_BUCKETS = (ENVIRONMENTS_BUCKET, TASKS_BUCKET, TASK_STATS_BUCKET, SERVICES_BUCKET, RUNS_BUCKET, RUN_CHECKPOINTS_BUCKET,
              POLICIES_BUCKET, ROLLOUT_INDEX_BUCKET)
# Object Store buckets: adapters (one object per policy version) and trainer checkpoint weights.
ADAPTERS_BUCKET = "evolver-adapters"
CHECKPOINTS_BUCKET = "evolver-checkpoints"

PAYLOAD_BUCKET = "evolver-payloads"
PAYLOAD_TTL_S = 7 * DAY


def consumer(durable: str) -> ConsumerSpec:
    for c in CONSUMERS:
        if c.durable == durable:
            return c
    raise KeyError(f"no consumer named {durable!r} in the topology")


def consumers_of(service: str) -> Iterable[ConsumerSpec]:
    return (c for c in CONSUMERS if c.service == service)
