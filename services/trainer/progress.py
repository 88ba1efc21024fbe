"""Run phases (events_pb2.RunPhase): which end a run, and the name tools print (pure)."""

from evolver.v1 import events_pb2

TERMINAL_PHASES = frozenset({events_pb2.RUN_PHASE_FINISHED, events_pb2.RUN_PHASE_FAILED,
                             events_pb2.RUN_PHASE_STOPPED})


def is_terminal(phase: int) -> bool:
    return phase in TERMINAL_PHASES


def phase_name(phase: int) -> str:
    """RUN_PHASE_EVALUATED -> "evaluated" (metrics JSONL, reports, progress bars)."""
    return events_pb2.RunPhase.Name(phase).removeprefix("RUN_PHASE_").lower()


def phase_named(name: str) -> int:
    """The inverse of phase_name; ValueError for a name that is no phase."""
    return events_pb2.RunPhase.Value("RUN_PHASE_" + name.upper())
