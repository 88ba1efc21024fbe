"""The standing robustness suite, on the embedded stack (nats-server, the five services and the BFCL
environment server as separate processes):

- a fuzz of every RPC of every server, found through gRPC reflection, with generated malformed
  requests and undecodable bytes: no INTERNAL, no crash, everyone still SERVING;
- a poison-message sweep of every consumed subject (undecodable bytes and out-of-bounds ids):
  each is dead-lettered with its reason by each consumer, and the consumers go on;
- a chaos run: every service SIGKILLed once during a small training run (task_gen with a
  multi-second outage during self-questioning); the run succeeds with every group trained
  exactly once.

`make chaos` runs the chaos part longer (CHAOS_STEPS, CHAOS_ROUNDS). Each test prints one
`ROBUSTNESS {json}` line with its counts, which docs/RELIABILITY.md records."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolver.bus import Bus, topology
from evolver.config import load_settings
from evolver.rpc import channel, stub
from services.trainer.collection import original_group_id
from services.trainer.run_config import RunSpec, to_run_config
from evolver.stack import Stack
from evolver.stack import processes as proc
from evolver.v1 import run_pb2
from evolver.v1 import trainer_service_pb2 as tr_pb
from evolver.v1 import trainer_service_pb2_grpc as tr_grpc
from tests.integration._helpers import embedded_stack, robustness_line
from tests.integration.test_loop import SMALL, _checkpoint, _events, cli

pytestmark = pytest.mark.integration

HOSTILE_STRINGS = ["h" * 5000, "a b", "*", "../x", "a..b", "ü\u2028\U0001f600", "\x00", "{", "[]", "null",
                   "x" * 70_000, "-5", "1e999"]
# Plausible values too, so requests also get past the boundary check into the handlers.
PLAUSIBLE_STRINGS = ["", "a", "run-1", "run-1.s0.t0", "multi_turn_base_0", "train", "heldout", '{"a": 1}', "{}",
                     "syn-0123456789abcdef"]
HOSTILE_INTS = [0, 1, -1, 7, 65, 257, 2 ** 31 - 1, -(2 ** 31)]
HOSTILE_FLOATS = [0.0, -1.0, 0.5, 1.5, math.nan, math.inf, -math.inf, 1e308]
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
           grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.ALREADY_EXISTS}
# Fields pinned so that a fuzzed request cannot start real work or reach past loopback: the
# environment id is never the registered one (no run, no exploration, no rollout starts, and
# UnregisterEnvironment cannot remove it), addresses are loopback or malformed.
PINNED = {"env_id": ["", "fuzz-env", "h" * 5000, "a b", "BFCL"],
          # A run config never names the registered environment (its YAML default), so no fuzzed
          # StartRun starts a real run.
          "config_yaml": ["env_id: fuzz-env", "env_id: fuzz-env\nsteps: -1", "{", "- a", "env_id: [1]",
                          "env_id: fuzz-env\nunknown_key: 1", "x" * 70_000],
          "address": ["", "nohost", "127.0.0.1:1", "127.0.0.1:99999", "127.0.0.1:0", "[::1]:1", "127.0.0.1:" + "9" * 50]}


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory, tiny_model_dir):
    yield from embedded_stack(tmp_path_factory.mktemp("robust") / "stack", tiny_model_dir, cli,
                              EVOLVER_BUS__RETRY_BASE_S="0.5", EVOLVER_BUS__RETRY_MAX_S="2")


def servers(stack_dir: Path) -> dict[str, str]:
    state = Stack(stack_dir).read_state()
    return {s.name: s.address for s in state.all_processes()}


def all_serving(stack_dir: Path) -> dict[str, str]:
    return Stack(stack_dir).status()


# --- the RPC fuzz ---------------------------------------------------------------------------------

def message_strategy(desc, depth: int = 0):
    """Requests built from a message descriptor with hostile values in every field kind."""
    cls = message_factory.GetMessageClass(desc)
    fields = {}
    for fd in desc.fields:
        if fd.name in PINNED:
            value = st.sampled_from(PINNED[fd.name])
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                value = st.dictionaries(st.sampled_from(["a", "h" * 300, "", "x y"]), st.sampled_from(HOSTILE_FLOATS),
                                        max_size=2) if fd.message_type.fields_by_name["value"].type in (
                    FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT) else st.just({})
            elif depth >= 3 or fd.message_type.full_name.startswith("google.protobuf"):
                value = st.none()
            else:
                value = message_strategy(fd.message_type, depth + 1)
        elif fd.type == FieldDescriptor.TYPE_STRING:
            value = st.one_of(st.sampled_from(PLAUSIBLE_STRINGS), st.sampled_from(HOSTILE_STRINGS))
        elif fd.type == FieldDescriptor.TYPE_BYTES:
            value = st.sampled_from([b"", b"\xff" * 10])
        elif fd.type == FieldDescriptor.TYPE_BOOL:
            value = st.booleans()
        elif fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            value = st.sampled_from(HOSTILE_FLOATS)
        elif fd.type == FieldDescriptor.TYPE_ENUM:
            value = st.sampled_from([0, 1, 2, 99])
        elif fd.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
            value = st.sampled_from(HOSTILE_INTS + [2 ** 62, -(2 ** 62)])
        elif fd.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            value = st.sampled_from([0, 1, 2 ** 32 - 1])
        elif fd.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            value = st.sampled_from([0, 1, 2 ** 64 - 1])
        else:
            value = st.sampled_from(HOSTILE_INTS)
        if fd.is_repeated and not (fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry):
            value = st.lists(value.filter(lambda v: v is not None), max_size=3)
        # A run config and its YAML are always present (an absent one means the defaults, which
        # name the registered environment).
        fields[fd.name] = value if fd.name in ("config", "config_yaml") else st.one_of(st.none(), value)

    @st.composite
    def build(draw):
        msg = cls()
        for name, strategy in fields.items():
            v = draw(strategy)
            if v is None or v == [] or v == {}:
                continue
            fd = desc.fields_by_name[name]
            if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.message_type.GetOptions().map_entry:
                if fd.is_repeated:
                    getattr(msg, name).extend(v)
                else:
                    getattr(msg, name).CopyFrom(v)
            elif fd.is_repeated and not isinstance(v, dict):
                getattr(msg, name).extend(v)
            elif isinstance(v, dict):
                getattr(msg, name).update(v)
            else:
                setattr(msg, name, v)
        return msg
    return build()


def discover(address: str) -> list[tuple[str, object]]:
    """(full method path, method descriptor) for every method the server offers, by reflection."""
    with grpc.insecure_channel(address) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        pool = DescriptorPool(db)
        out = []
        for name in db.get_services():
            if name.startswith("grpc."):
                continue
            service = pool.FindServiceByName(name)
            out += [(f"/{name}/{m.name}", m) for m in service.methods]
        return out


def test_fuzz_every_rpc_through_reflection(stack_dir):
    addresses = servers(stack_dir)
    methods = [(svc, addr, path, m) for svc, addr in addresses.items() for path, m in discover(addr)]
    offered = {path for _, _, path, _ in methods}
    # Reflection found the whole API (a server that hid a method would escape the fuzz).
    assert {"/evolver.v1.TrainerService/StartRun", "/evolver.v1.TaskGenService/RegisterEnvironment",
            "/evolver.v1.EnvironmentService/Step", "/evolver.v1.ExplorerService/Rollout",
            "/evolver.v1.MemoryService/Retrieve", "/evolver.v1.AttributorService/Attribute"} <= offered
    counts: dict[str, int] = {}
    bad: list[str] = []
    sent = 0
    examples = int(os.environ.get("FUZZ_EXAMPLES", "6"))  # make chaos: 40
    with_channels = {addr: grpc.insecure_channel(addr) for addr in {a for _, a, _, _ in methods}}
    try:
        for svc, addr, path, m in methods:
            ch = with_channels[addr]
            call = (ch.unary_stream if m.server_streaming else ch.unary_unary)(
                path, request_serializer=lambda b: b, response_deserializer=lambda b: b)

            def send(payload: bytes) -> None:
                nonlocal sent
                sent += 1
                t0 = time.monotonic()
                try:
                    if m.server_streaming:
                        for _ in call(payload, timeout=3.0):
                            pass
                    else:
                        # Generous: the first call to a service may load a model (memory's
                        # embedder; an LLM role's on a fuzzed rewrite=True) on a busy machine.
                        call(payload, timeout=60.0)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                    # A stream that is legitimately open (a run that exists) ends at our deadline.
                    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not m.server_streaming:
                        bad.append(f"{path}: deadline after {time.monotonic() - t0:.1f}s")
                    if len(e.details() or "") > 2000:
                        bad.append(f"{path}: {len(e.details())}-char status message")
                counts[code.name] = counts.get(code.name, 0) + 1
                if code not in ALLOWED:
                    bad.append(f"{path}: {code.name} for {payload[:60]!r}")

            for junk in (b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 11):
                send(junk)  # undecodable bytes

            @settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(message_strategy(m.input_type))
            def fuzz(request):
                send(request.SerializeToString())
            fuzz()
    finally:
        for ch in with_channels.values():
            ch.close()
    status = all_serving(stack_dir)
    started = asyncio.run(_live_runs(stack_dir))
    robustness_line("rpc_fuzz", requests=sent, methods=len(methods), codes=counts, violations=len(bad),
                    dead=[k for k, v in status.items() if v == "DEAD"])
    assert not bad, bad[:10]
    assert all(v in ("SERVING", "RUNNING") for v in status.values()), status
    assert not started, f"fuzzed requests started runs: {started}"  # the pins hold; nothing real ran


async def _live_runs(stack_dir: Path) -> list[str]:
    """Every run record but the chaos runs': any other was started by a fuzzed request."""
    state = Stack(stack_dir).read_state()
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": state.nats_url}), name="fuzz-check")
    try:
        kv = await bus.kv(topology.RUNS_BUCKET)
        live = []
        for key in await kv.keys():
            raw = await kv.get(key)
            if raw and not key.startswith(("ckpt.", "chaos")):  # the chaos runs are the suite's own
                live.append(f"{key}: {run_pb2.RunState.Name(run_pb2.Run.FromString(raw).state)}")
        return live
    finally:
        await bus.close()


# --- the poison sweep -----------------------------------------------------------------------------

def oversized(message_type):
    """A message of the right type whose first id field (depth-first) is 5,000 characters."""
    msg = message_type()

    def fill(m, depth=0) -> bool:
        for fd in m.DESCRIPTOR.fields:
            if fd.type == FieldDescriptor.TYPE_STRING and not fd.is_repeated and fd.name.endswith("_id"):
                setattr(m, fd.name, "h" * 5000)
                return True
        for fd in m.DESCRIPTOR.fields:
            if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated and depth < 3 \
                    and not fd.message_type.GetOptions().map_entry:
                if fill(getattr(m, fd.name), depth + 1):
                    return True
        return False
    assert fill(msg), message_type
    return msg


async def _sweep(stack_dir: Path) -> dict:
    state = Stack(stack_dir).read_state()
    bus = await Bus.connect(load_settings(environ={"EVOLVER_NATS__URL": state.nats_url}), name="sweep")
    try:
        consumers = [c for c in topology.CONSUMERS if not c.filter_subject.startswith("$")]
        consumers += [topology.diag_consumer(s) for s in topology.SERVICES]
        subjects = sorted({c.filter_subject for c in consumers})
        sent = 0
        for subject in subjects:
            spec = topology.event_for(subject)
            await bus.js.publish(subject, b"\xff\xfe garbage", headers={"Nats-Msg-Id": f"sweep-garbage-{subject}"})
            await bus.publish(subject, oversized(spec.message_type), key=f"sweep-oversized-{subject}")
            sent += 2
        want = {(c.durable, kind) for c in consumers for kind in ("garbage", "oversized")}
        got: dict[tuple[str, str], str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and set(got) < want:
            sub = await bus.js.subscribe("dead.>", stream=topology.DEAD.name, ordered_consumer=True)
            try:
                while True:
                    try:
                        m = await sub.next_msg(timeout=1.0)
                    except Exception:
                        break
                    original = m.headers.get("Dlq-Original-Msg-Id", "")
                    kind = "garbage" if "sweep-garbage" in original else "oversized" if "sweep-oversized" in original else ""
                    if kind:
                        got[(m.headers["Dlq-Consumer"], kind)] = m.headers["Dlq-Reason"]
            finally:
                await sub.unsubscribe()
            await asyncio.sleep(0.5)
        return {"sent": sent, "want": want, "got": got, "subjects": subjects}
    finally:
        await bus.close()


def test_poison_sweep_of_every_consumed_subject(stack_dir):
    r = asyncio.run(_sweep(stack_dir))
    missing = r["want"] - set(r["got"])
    status = all_serving(stack_dir)
    robustness_line("poison_sweep", messages=r["sent"], subjects=len(r["subjects"]), consumers=len(r["want"]) // 2,
                    dead_lettered=len(r["got"]), missing=len(missing),
                    dead=[k for k, v in status.items() if v == "DEAD"])
    assert not missing, sorted(missing)
    for (durable, kind), reason in r["got"].items():
        assert ("not a valid" in reason) if kind == "garbage" else ("out of bounds" in reason and "h" * 64 not in reason)
    assert all(v in ("SERVING", "RUNNING") for v in status.values()), status


# --- the chaos run --------------------------------------------------------------------------------

def test_chaos_run_survives_a_sigkill_of_every_service(stack_dir):
    """After the fuzz and the sweep, on the same stack: a run during which every service is
    SIGKILLed once. task_gen stays down for several seconds during self-questioning (a run used
    to fail for good on that)."""
    # 6 steps: on an AMX CPU (bfloat16) a 3-step run could finish before the trainer's kill.
    steps = int(os.environ.get("CHAOS_STEPS", "6"))
    rounds = int(os.environ.get("CHAOS_ROUNDS", "1"))
    for round_ in range(rounds):
        _chaos_round(stack_dir, f"chaos{round_}", steps)


def _chaos_round(stack_dir: Path, run_id: str, steps: int) -> None:
    spec = RunSpec.model_validate({**SMALL, "steps": steps, "group_size": 2, "seed": 11,
                                   "rollout": {**SMALL["rollout"], "max_new_tokens": 24},
                                   "eval": {"synthetic_tasks": 0, "seed_tasks": 0, "k": 1}})
    stack = Stack(stack_dir)

    async def trainer_call(method, request):
        async with channel(stack.read_state().address_of("trainer")) as ch:
            return await getattr(stub(tr_grpc.TrainerServiceStub, ch, 30.0), method)(request)

    def run_now() -> run_pb2.Run:
        for _ in range(60):  # the trainer itself may be restarting
            try:
                return asyncio.run(trainer_call("GetRun", tr_pb.GetRunRequest(run_id=run_id))).run
            except grpc.aio.AioRpcError:
                time.sleep(0.5)
        raise AssertionError("trainer unreachable")

    def wait_for(pred, timeout=400):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = run_now()
            if pred(run) or run.state in (run_pb2.RUN_STATE_FAILED, run_pb2.RUN_STATE_STOPPED):
                return run
            time.sleep(0.3)
        raise AssertionError(f"timed out; run is {run_now()}")

    recovery: dict[str, float] = {}

    def kill_and_restart(name: str, outage_s: float = 0.0) -> None:
        t0 = time.monotonic()
        info = next(s for s in stack.read_state().services if s.name == name)
        os.kill(info.pid, signal.SIGKILL)
        while proc.pid_alive(info.pid, info.marker):
            time.sleep(0.05)
        time.sleep(outage_s)
        stack.restart(name)  # back when its health says SERVING
        recovery[name] = round(time.monotonic() - t0 - outage_s, 2)

    asyncio.run(trainer_call("StartRun", tr_pb.StartRunRequest(run_id=run_id, config=to_run_config(spec))))
    time.sleep(1.0)
    kill_and_restart("task_gen", outage_s=4.0)  # during self-questioning
    run = wait_for(lambda r: r.train_step >= 1)
    assert run.state == run_pb2.RUN_STATE_RUNNING, run.message
    kill_and_restart("memory")
    kill_and_restart("attributor")
    kill_and_restart("explorer")  # step 1's groups are in flight
    run = wait_for(lambda r: r.train_step >= 2)
    assert run.state == run_pb2.RUN_STATE_RUNNING, run.message
    kill_and_restart("trainer")  # resumes from its checkpoint
    run = wait_for(lambda r: r.state == run_pb2.RUN_STATE_SUCCEEDED)
    assert run.state == run_pb2.RUN_STATE_SUCCEEDED, run.message
    assert run.train_step == steps and run.policy_version == steps

    ckpt = asyncio.run(_checkpoint(stack_dir, run_id))
    expected = [f"{run_id}.s{s}.t{i}" for s in range(steps) for i in range(spec.tasks_per_step)]
    ev = asyncio.run(_events(stack_dir, run_id))
    # A group that came back too old (a kill delays it past max_policy_lag) is asked for again
    # under `<group>.v<version>`: it is still that group, and must still be trained on once.
    consumed = [original_group_id(g) for g in ckpt["consumed"]]
    completed = {original_group_id(c.group.group_id) for c in ev.completed}
    lost = sorted(set(expected) - completed)
    doubled = len(consumed) - len(set(consumed))
    robustness_line("chaos", run=run_id, kills=len(recovery), recovery_s=recovery, groups=len(expected),
                    lost=len(lost), trained_twice=doubled, state="SUCCEEDED")
    assert sorted(consumed) == expected  # every group trained on, each exactly once
    assert not lost
