"""Attributor: self-attributing (GOOD/BAD per step)."""
