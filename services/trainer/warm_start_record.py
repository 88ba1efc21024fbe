"""A run's warm start kept whole (adapter weights, optimizer state, the tasks it was trained on),
so that a later run can start its RL phase from it instead of fine-tuning again: an ablation's
settings from one warm start, or RL settings tried one after another. Pure: the record's bytes
and the checks that decide whether a run may reuse one."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field

from evolver.errors import FailedPrecondition

MAGIC = b"EVOLVER-WARM-START-1\n"
FIELD = "bootstrapping.warm_start_from"


def warm_start_key(source: str) -> str:
    """Its name in the checkpoints Object Store bucket: a run's own id, or `file-<sha>` for one
    `evolver run --warm-start FILE` brought."""
    return f"warm-start.{source}"


@dataclass
class WarmStartRecord:
    source_run: str
    base_model: str
    base_model_digest: str
    task_ids: list[str]  # the synthetic train tasks whose replayed solutions it was trained on
    updates: int
    loss_first: float
    loss_last: float
    checkpoint: bytes = field(repr=False)  # PolicyUpdater.checkpoint_blob, taken before any KL anchoring


def pack(record: WarmStartRecord) -> bytes:
    header = json.dumps({k: v for k, v in asdict(record).items() if k != "checkpoint"}).encode()
    return MAGIC + struct.pack(">I", len(header)) + header + record.checkpoint


def unpack(raw: bytes) -> WarmStartRecord:
    """ValueError, saying what is wrong, for bytes that are not a whole record."""
    if not raw.startswith(MAGIC):
        raise ValueError(f"not an Evolver warm start (it starts {raw[:16]!r})")
    at = len(MAGIC)
    if len(raw) < at + 4:
        raise ValueError("the warm start is cut short (no header)")
    (size,) = struct.unpack(">I", raw[at:at + 4])
    header, checkpoint = raw[at + 4:at + 4 + size], raw[at + 4 + size:]
    if len(header) < size or not checkpoint:
        raise ValueError("the warm start is cut short (header or weights missing)")
    try:
        meta = json.loads(header)
        return WarmStartRecord(source_run=str(meta["source_run"]), base_model=str(meta["base_model"]),
                               base_model_digest=str(meta["base_model_digest"]),
                               task_ids=[str(t) for t in meta["task_ids"]], updates=int(meta["updates"]),
                               loss_first=float(meta["loss_first"]), loss_last=float(meta["loss_last"]),
                               checkpoint=checkpoint)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"the warm start's header is unreadable: {str(e)[:80]}") from None


def check_reusable(record: WarmStartRecord, base_model_digest: str, train_task_ids: set[str]) -> None:
    """A run may start from a warm start made on its own base model and on its own train tasks
    only: one trained on a task this run holds out (or does not have) would leak it into the
    evaluation."""
    if record.base_model_digest and base_model_digest and record.base_model_digest != base_model_digest:
        raise FailedPrecondition(f"{FIELD}: the warm start of run {record.source_run!r} was made on another base "
                                 f"model ({record.base_model_digest[:19]}, this run has {base_model_digest[:19]})")
    foreign = sorted(set(record.task_ids) - train_task_ids)
    if foreign:
        raise FailedPrecondition(f"{FIELD}: the warm start of run {record.source_run!r} was trained on "
                                 f"{len(foreign)} task(s) that are not train tasks of this run (first: "
                                 f"{foreign[0][:40]!r}); a warm start may only have seen this run's train tasks")


def reusable(raw: bytes | None, source: str, base_model_digest: str, train_task_ids: set[str]) -> WarmStartRecord:
    """The stored warm start named source, if this run may start from it (check_reusable);
    else a FailedPrecondition saying why."""
    if raw is None:
        raise FailedPrecondition(f"{FIELD}: no warm start named {source!r} on this stack (a run keeps its own "
                                 f"under its id; `evolver run --warm-start FILE` brings one)")
    try:
        record = unpack(raw)
    except ValueError as e:
        raise FailedPrecondition(f"{FIELD}: {source!r}: {e}") from None
    check_reusable(record, base_model_digest, train_task_ids)
    return record


def restore(updater, record: WarmStartRecord) -> None:
    """Loads the record into the updater (its weights, optimizer state and version); a record
    that does not fit this policy (another LoRA rank or target modules) is a FailedPrecondition."""
    try:
        updater.restore(record.checkpoint)
    except (KeyError, RuntimeError, ValueError) as e:
        raise FailedPrecondition(f"{FIELD}: the warm start of run {record.source_run!r} does not fit this policy "
                                 f"(another LoRA rank or target modules?): {str(e)[:120]}") from None
