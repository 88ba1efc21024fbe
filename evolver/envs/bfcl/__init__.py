"""BFCL multi-turn APIs (bfcl-eval==2026.3.23) as an Evolver environment."""

from evolver.envs.bfcl.environment import BfclEnvironment, BfclEpisode

__all__ = ["BfclEnvironment", "BfclEpisode"]
