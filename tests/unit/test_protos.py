"""Generated code is committed; regenerating must change nothing."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_protos_changes_nothing(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    fresh, committed = tmp_path / "evolver" / "v1", ROOT / "evolver" / "v1"
    fresh_files = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed_files = sorted(p.name for p in committed.iterdir() if p.is_file())
    assert fresh_files == committed_files, "run `make proto` and commit evolver/v1"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, fresh_files, shallow=False)
    assert not mismatch and not errors, f"stale generated files: {mismatch + errors}; run `make proto`"


def test_every_proto_service_has_a_python_stub():
    from evolver.v1 import (attributor_service_pb2_grpc, environment_pb2_grpc, explorer_service_pb2_grpc,
                            memory_service_pb2_grpc, task_gen_service_pb2_grpc, trainer_service_pb2_grpc)
    for module, service in [(explorer_service_pb2_grpc, "ExplorerService"), (task_gen_service_pb2_grpc, "TaskGenService"),
                            (memory_service_pb2_grpc, "MemoryService"), (attributor_service_pb2_grpc, "AttributorService"),
                            (trainer_service_pb2_grpc, "TrainerService"), (environment_pb2_grpc, "EnvironmentService")]:
        assert hasattr(module, f"{service}Stub") and hasattr(module, f"add_{service}Servicer_to_server")
