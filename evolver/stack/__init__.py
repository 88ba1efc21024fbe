"""The embedded stack (everything on one machine)."""

from evolver.stack.stack import ServiceInfo, Stack, StackError, StackState

__all__ = ["ServiceInfo", "Stack", "StackError", "StackState"]
