"""One model load at a time per process. transformers/accelerate build a model under a
process-wide empty-weights (meta device) context, so two loads in two threads at once fail
("Cannot copy out of meta tensor"). Found when a service loaded its policy and an LLM role's
model (the explorer), or the embedder and a role's model (memory), at the same time; the trainer
serialises its own builds the same way."""

from __future__ import annotations

import threading

MODEL_LOAD_LOCK = threading.RLock()
