"""Unit fixtures: no network, no server."""

from __future__ import annotations

import pytest

from evolver.envs.bfcl import BfclEnvironment
from evolver.envs.local import InProcessEnvironment


@pytest.fixture
def bfcl() -> InProcessEnvironment:
    """BFCL in this process, behind the same client surface the agent uses for a remote one."""
    return InProcessEnvironment(BfclEnvironment())
