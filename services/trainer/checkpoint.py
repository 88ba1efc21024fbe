"""A run's checkpoint record (KV `run-checkpoints`; the weights and optimizer state are a blob in
the Object Store, written first). Pure: what resuming needs, and its bytes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass
class Checkpoint:
    step: int = 0  # the next step to run
    version: int = 0
    consumed: list[str] = field(default_factory=list)  # group ids already trained on
    evaluated: list[int] = field(default_factory=list)  # steps whose evaluation is done
    # The evaluation set, fixed at the first evaluation so every evaluation of the run uses it.
    eval_task_ids: list[str] = field(default_factory=list)
    # Demonstrations prepared before step 0 (and, with bootstrapping, trained on), on which
    # tasks (synthetic train tasks only).
    bootstrapped: bool = False
    bootstrap_task_ids: list[str] = field(default_factory=list)
    warm_start_evaluated: bool = False
    # The time budget: when the run started (Unix seconds; a resumed run keeps counting from
    # there), the measured evaluations and RL steps, and the steps it settled on (0: spec.steps).
    started_unix: float = 0.0
    eval_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    planned_steps: int = 0

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Checkpoint":
        """Keys this version does not know (written by a newer trainer) are ignored."""
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
