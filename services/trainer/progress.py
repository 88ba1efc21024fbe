"""Which run.progress phases end a run (pure)."""

TERMINAL_PHASES = frozenset({"finished", "failed", "stopped"})


def is_terminal(phase: str) -> bool:
    return phase in TERMINAL_PHASES
