"""Shared fixtures: a real nats-server on a free loopback port (no mocked NATS), a fresh bus per
test, and the process's one OpenTelemetry provider with an in-memory exporter."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from evolver.bus import Bus
from evolver.config import load_settings
from evolver.stack import processes as proc
from tests.conftest_models_fixtures import tiny_model_dir, tokenizer, tokenizer_dir  # noqa: F401

# One provider per process: set_tracer_provider can only be called once.
SPANS = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_provider)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    SPANS.clear()
    return SPANS


def start_nats_server(config: str | None = None, env: dict | None = None):
    """A nats-server with JetStream on a free loopback port: (url, process, store dir). With
    `config`, a config body to which the listen address and store are added."""
    port, store = proc.free_port(), tempfile.mkdtemp(prefix="evolver-js-")
    if config is None:
        args = ["-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store]
    else:
        conf = os.path.join(store, "nats.conf")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {store!r} }}\n{config}\n")
        args = ["-c", conf]
    p = subprocess.Popen([proc.nats_server_binary(), *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    if not proc.wait_for_tcp("127.0.0.1", port, 10.0, alive=lambda: p.poll() is None):
        p.kill()
        raise RuntimeError("nats-server did not start")
    return f"nats://127.0.0.1:{port}", p, store


def stop_nats_server(p, store) -> None:
    p.terminate()
    p.wait(10)
    shutil.rmtree(store, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_url():
    """A real nats-server with JetStream, or TEST_NATS_URL to reuse one."""
    if url := os.environ.get("TEST_NATS_URL"):
        yield url
        return
    url, p, store = start_nats_server()
    yield url
    stop_nats_server(p, store)


def make_settings(nats_url: str, **bus):
    env = {"EVOLVER_NATS__URL": nats_url}
    env.update({f"EVOLVER_BUS__{k.upper()}": str(v) for k, v in bus.items()})
    return load_settings(environ=env)


@pytest.fixture
def settings_for(nats_url):
    return lambda **bus: make_settings(nats_url, **bus)


@pytest_asyncio.fixture
async def bus(nats_url):
    """A connected bus with the topology applied; every stream is deleted afterwards."""
    b = await Bus.connect(make_settings(nats_url, ack_wait_s=3, retry_base_s=0.3, retry_max_s=2,
                                        fetch_timeout_s=0.5), name="test")
    await b.ensure_topology()
    yield b
    await wipe(b)
    await b.close()


async def wipe(b: Bus) -> None:
    for info in await b.js.streams_info():
        await b.js.delete_stream(info.config.name)
