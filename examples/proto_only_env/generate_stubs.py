"""Generates Python stubs for the Environment protocol into a package of your own.

    python examples/proto_only_env/generate_stubs.py OUT_DIR [--package libenv_stubs]

The protos' package stays `evolver.v1`: it names the service on the wire
(`/evolver.v1.EnvironmentService/Step`), so it must not change. Only the files' *paths* move,
from `evolver/v1/` to `<package>/v1/`, and with them the Python import path of the generated
modules (`from libenv_stubs.v1 import environment_pb2`). That avoids the collision with the
`evolver` package when Evolver is importable in the same interpreter. Needs `grpcio-tools`."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto" / "evolver" / "v1"
NEEDED = ["environment.proto", "trajectory.proto"]  # environment.proto and what it imports


def generate(out: Path, package: str = "libenv_stubs") -> Path:
    src = out / "proto_src" / package / "v1"
    src.mkdir(parents=True, exist_ok=True)
    for name in NEEDED:
        text = (PROTO_DIR / name).read_text()
        (src / name).write_text(re.sub(r'import "evolver/v1/', f'import "{package}/v1/', text))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{out / 'proto_src'}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *[str(src / n) for n in NEEDED]], check=True)
    for d in (out / package, out / package / "v1"):
        (d / "__init__.py").touch()
    return out / package


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--package", default="libenv_stubs")
    a = p.parse_args()
    print(generate(a.out, a.package))
