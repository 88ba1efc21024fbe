"""Integration fixtures shared by several modules."""

from __future__ import annotations

import pytest

from evolver.envs.bfcl import BfclEnvironment
from evolver.envs.client import RemoteEnvironment
from evolver.envs.server import EnvironmentServicer
from evolver.rpc import GrpcServer, Registration
from evolver.v1 import environment_pb2_grpc as pb_grpc


@pytest.fixture
async def bfcl():
    """BFCL behind the real gRPC Environment protocol, and a client for it."""
    servicer = EnvironmentServicer(BfclEnvironment())
    server = GrpcServer([Registration("evolver.v1.EnvironmentService", servicer,
                                      pb_grpc.add_EnvironmentServiceServicer_to_server)])
    await server.start()
    async with RemoteEnvironment(server.address) as env:
        yield env
    await server.stop(0)
    await servicer.close()
