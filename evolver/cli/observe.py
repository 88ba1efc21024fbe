"""Watching a running system: event streams as they flow, and the span tree of one trace."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Callable

from google.protobuf.json_format import MessageToDict

from evolver.bus import Bus, topology

TAILED_STREAMS = (topology.EXPLORE_JOBS, topology.ROLLOUT_JOBS, topology.EVENTS, topology.DIAG, topology.DEAD)


def _summary(subject: str, payload: dict) -> str:
    keys = ("run_id", "job_id", "request_id", "group_id", "task_id", "env_id", "ping_id", "service", "train_step", "version")
    found = []

    def walk(d: dict, depth: int = 0) -> None:
        for k, v in d.items():
            if k in keys and len(found) < 4:
                found.append(f"{k}={v}")
            elif isinstance(v, dict) and depth < 2:
                walk(v, depth + 1)
    walk(payload)
    return " ".join(found)


async def tail(bus: Bus, subject_filter: str = ">", *, as_json: bool = False, max_messages: int = 0,
               deliver_new_only: bool = True, emit: Callable[[str], None] = print, ready: asyncio.Event | None = None) -> int:
    """Ordered, ephemeral consumers (never the services' durables) on replayable streams, and
    core subscriptions on work queues (live only): observing changes nothing."""
    count = 0
    done = asyncio.Event()
    subs = []

    async def on_msg(event) -> None:
        nonlocal count
        if done.is_set():
            return
        if event.message is not None:
            payload = MessageToDict(event.message, preserving_proto_field_name=True)
            kind = type(event.message).__name__
        else:  # show what cannot be decoded instead of hiding it
            payload, kind = {"undecodable": event.error}, "?"
        seq, headers, subject = event.seq, event.headers, event.subject
        if as_json:
            emit(json.dumps({"subject": subject, "seq": seq, "type": kind, "msg_id": headers.get("Nats-Msg-Id", ""),
                             "headers": {k: v for k, v in headers.items() if k.startswith("Dlq-")}, "payload": payload}))
        else:
            reason = f" reason={headers['Dlq-Reason']!r}" if "Dlq-Reason" in headers else ""
            emit(f"{subject:<22} #{seq:<6} {kind:<18} {_summary(subject, payload)}{reason}")
        count += 1
        if max_messages and count >= max_messages:
            done.set()

    for stream in TAILED_STREAMS:
        # A consumer's filter must fit inside its stream's subjects: for each stream subject the
        # filter reaches, subscribe with the narrower of the two.
        subjects = set()
        for pattern in stream.subjects:
            if topology.subjects_overlap(subject_filter, pattern):
                broader = topology.subject_matches(subject_filter, pattern.replace(">", "x").replace("*", "x"))
                subjects.add(pattern if broader else subject_filter)
        for subject in sorted(subjects):
            # A second consumer on a work queue would take jobs from the explorer (and NATS
            # refuses ack-less ones): watch jobs live through a core subscription instead.
            subs.append(await bus.subscribe(subject, on_msg, stream=None if stream.work_queue else stream,
                                            from_start=not deliver_new_only))
    if ready:
        ready.set()
    try:
        await done.wait()
    finally:
        for s in subs:
            await s.close()
    return count


def load_spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def find_traces(spans: list[dict], key: str) -> list[str]:
    """Trace ids for a trace id, or for any span whose attributes mention key (a rollout id,
    group id, message id...)."""
    ids = {s["trace_id"] for s in spans if s["trace_id"] == key}
    ids |= {s["trace_id"] for s in spans if any(key in str(v) for v in (s.get("attributes") or {}).values())}
    return sorted(ids)


def render_tree(spans: list[dict], trace_id: str) -> list[str]:
    mine = [s for s in spans if s["trace_id"] == trace_id]
    by_parent: dict = defaultdict(list)
    ids = {s["span_id"] for s in mine}
    for s in mine:
        by_parent[s["parent_span_id"] if s["parent_span_id"] in ids else None].append(s)
    lines: list[str] = []

    def walk(parent, depth):
        for s in sorted(by_parent.get(parent, []), key=lambda s: s["start_ns"]):
            ms = (s["end_ns"] - s["start_ns"]) / 1e6
            err = " ERROR" if s.get("status") == "ERROR" else ""
            lines.append(f"{'  ' * depth}{s['service']}: {s['name']} [{s['kind'].lower()}] {ms:.1f} ms{err}")
            walk(s["span_id"], depth + 1)
    walk(None, 0)
    return lines
