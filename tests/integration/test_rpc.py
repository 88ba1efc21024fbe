"""The shared gRPC bootstrap: error mapping, health, graceful shutdown, deadlines."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from evolver.config import load_settings
from evolver.rpc import GrpcServer, Registration, bad_request_fields, channel, health_status, stub
from evolver.service import ServiceRunner
from evolver.v1 import memory_service_pb2 as mem
from evolver.v1 import memory_service_pb2_grpc as mem_grpc
from evolver.v1 import trainer_service_pb2 as tr
from evolver.v1 import trainer_service_pb2_grpc as tr_grpc
from services.memory.servicer import MemoryServicer
from services.memory.app import build as build_memory
from evolver.v1 import explorer_service_pb2 as ex
from evolver.v1 import explorer_service_pb2_grpc as ex_grpc
from services.trainer.runs import Runs
from services.trainer.servicer import TrainerServicer
from tests.integration._helpers import empty_memory, no_updates

pytestmark = pytest.mark.integration


def trainer(bus) -> TrainerServicer:
    return TrainerServicer(Runs(SimpleNamespace(bus=bus), no_updates))


@pytest.fixture
async def server(bus):
    s = GrpcServer([Registration("evolver.v1.MemoryService", MemoryServicer(empty_memory()),
                                 mem_grpc.add_MemoryServiceServicer_to_server),
                    Registration("evolver.v1.TrainerService", trainer(bus), tr_grpc.add_TrainerServiceServicer_to_server),
                    # the generated base class: every method answers UNIMPLEMENTED
                    Registration("evolver.v1.ExplorerService", ex_grpc.ExplorerServiceServicer(),
                                 ex_grpc.add_ExplorerServiceServicer_to_server)])
    await s.start()
    await s.set_serving()
    yield s
    await s.stop(0)


async def test_bad_field_returns_invalid_argument_naming_it(server):
    async with channel(server.address) as ch:
        memory = stub(mem_grpc.MemoryServiceStub, ch, 5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await memory.Retrieve(mem.RetrieveRequest(query="list files", k=0))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == {"k": "must be between 1 and 50, got 0"}
    assert "k: must be between 1 and 50" in err.value.details()


async def test_domain_errors_map_to_status_codes(server):
    async with channel(server.address) as ch:
        trainer = stub(tr_grpc.TrainerServiceStub, ch, 5)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await trainer.GetRun(tr.GetRunRequest(run_id="nope"))
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await trainer.GetRun(tr.GetRunRequest())
        with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
            await stub(ex_grpc.ExplorerServiceStub, ch, 5).Explore(ex.ExploreRequest(env_id="x"))
        # The first Retrieve loads the embedder (seconds; more on a loaded machine): not what is tested.
        ok = await stub(mem_grpc.MemoryServiceStub, ch, 30).Retrieve(mem.RetrieveRequest(query="q", k=3))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in missing.value.details()
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_fields(empty.value) == {"run_id": "must be non-empty"}
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert list(ok.experiences) == []


async def test_unexpected_exception_is_internal_without_details():
    class Broken(mem_grpc.MemoryServiceServicer):
        async def Stats(self, request, context):
            raise RuntimeError("secret stack detail")

    s = GrpcServer([Registration("evolver.v1.MemoryService", Broken(), mem_grpc.add_MemoryServiceServicer_to_server)])
    await s.start()
    try:
        async with channel(s.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub(mem_grpc.MemoryServiceStub, ch, 5).Stats(mem.StatsRequest())
    finally:
        await s.stop(0)
    assert err.value.code() == grpc.StatusCode.INTERNAL and "secret" not in err.value.details()


async def test_stub_always_sets_a_deadline():
    class Slow(mem_grpc.MemoryServiceServicer):
        async def Stats(self, request, context):
            await asyncio.sleep(5)
            return mem.StatsResponse()

    s = GrpcServer([Registration("evolver.v1.MemoryService", Slow(), mem_grpc.add_MemoryServiceServicer_to_server)])
    await s.start()
    try:
        async with channel(s.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub(mem_grpc.MemoryServiceStub, ch, default_timeout_s=0.3).Stats(mem.StatsRequest())
    finally:
        await s.stop(0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_port_in_use_is_a_clear_error(server):
    port = int(server.address.rsplit(":", 1)[1])
    with pytest.raises((OSError, RuntimeError), match=str(port)):
        GrpcServer([], port=port)


async def test_a_started_server_is_not_serving_until_its_runner_says_so():
    # grpc's health servicer starts at SERVING; readiness before the service is registered on the
    # bus would send traffic to a replica that cannot yet be found or answer on the bus.
    s = GrpcServer([Registration("evolver.v1.MemoryService", MemoryServicer(empty_memory()),
                                 mem_grpc.add_MemoryServiceServicer_to_server)])
    await s.start()
    try:
        assert await health_status(s.address) == "NOT_SERVING"
        assert await health_status(s.address, "evolver.v1.MemoryService") == "NOT_SERVING"
        await s.set_serving()
        assert await health_status(s.address) == "SERVING"
    finally:
        await s.stop(0)


async def test_health_flips_to_not_serving_on_shutdown(nats_url, tmp_path):
    settings = load_settings(environ={"EVOLVER_NATS__URL": nats_url, "EVOLVER_GRPC__SHUTDOWN_NOTICE_S": "1.5",
                                      "EVOLVER_BUS__FETCH_TIMEOUT_S": "0.3", "EVOLVER_STATE_DIR": str(tmp_path)})
    runner = ServiceRunner("memory", build_memory, settings)
    task = asyncio.create_task(runner.run())
    for _ in range(100):
        if runner.server and await health_status(runner.server.address, timeout_s=0.5) == "SERVING":
            break
        await asyncio.sleep(0.05)
    address = runner.server.address
    assert await health_status(address, "evolver.v1.MemoryService") == "SERVING"
    runner.stop_requested.set()
    seen = set()
    async with grpc.aio.insecure_channel(address) as ch:
        for _ in range(20):
            try:
                r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(
                    service="evolver.v1.MemoryService"), timeout=0.5)
                seen.add(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
            except grpc.aio.AioRpcError:
                seen.add("GONE")
                break
            await asyncio.sleep(0.05)
    await asyncio.wait_for(task, 15)
    assert "NOT_SERVING" in seen
    assert await health_status(address) == "UNREACHABLE"


async def test_grpc_tls_from_settings(tmp_path):
    import subprocess
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    s = GrpcServer([Registration("evolver.v1.MemoryService", MemoryServicer(empty_memory()),
                                 mem_grpc.add_MemoryServiceServicer_to_server)],
                   host="localhost", tls_cert_file=str(cert), tls_key_file=str(key), health_port=0)
    await s.start()
    await s.set_serving()
    try:
        # kubelet's probes speak plaintext: the health port answers them, the API port does not.
        assert await health_status(s.health_address) == "SERVING"
        assert await health_status(s.address) == "UNREACHABLE"
        async with channel(f"localhost:{s.port}", tls_ca_file=str(cert)) as ch:
            r = await stub(mem_grpc.MemoryServiceStub, ch, 5).Retrieve(mem.RetrieveRequest(query="q", k=1))
        assert list(r.experiences) == []
        async with grpc.aio.insecure_channel(f"localhost:{s.port}") as plain:  # plaintext is refused
            with pytest.raises(grpc.aio.AioRpcError):
                await mem_grpc.MemoryServiceStub(plain).Retrieve(mem.RetrieveRequest(query="q", k=1), timeout=2)
    finally:
        await s.stop(0)


async def test_bearer_token_is_required_beyond_health_and_sent_by_configured_clients(tmp_path, bus):
    from evolver.rpc import configure_clients, read_token
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-0123456789\n")
    token = read_token(str(token_file))
    server = GrpcServer([Registration("evolver.v1.TrainerService", trainer(bus),
                                      tr_grpc.add_TrainerServiceServicer_to_server)], auth_token=token)
    await server.start()
    await server.set_serving()
    try:
        for metadata in ((), (("authorization", "Bearer wrong-token-000000000"),), (("authorization", token),)):
            async with grpc.aio.insecure_channel(server.address) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await tr_grpc.TrainerServiceStub(ch).GetRun(tr.GetRunRequest(run_id="r"), metadata=metadata,
                                                               timeout=5)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.aio.AioRpcError) as s:  # streaming calls too
                    async for _ in tr_grpc.TrainerServiceStub(ch).WatchRun(tr.WatchRunRequest(run_id="r"),
                                                                          metadata=metadata, timeout=5):
                        pass
                assert s.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await health_status(server.address) == "SERVING"  # probes send no token
        configure_clients(token=token)
        try:
            async with channel(server.address) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as through:
                    await stub(tr_grpc.TrainerServiceStub, ch, 5).GetRun(tr.GetRunRequest(run_id="r"))
            # Past authentication: the servicer answered (no such run -> NOT_FOUND).
            assert through.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            configure_clients()
    finally:
        await server.stop(0)
    with pytest.raises(ValueError, match="needs authentication"):
        GrpcServer([], host="0.0.0.0")
    GrpcServer([], host="0.0.0.0", allow_unauthenticated=True)  # an explicit choice
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ValueError, match="at least 16"):
        read_token(str(short))
