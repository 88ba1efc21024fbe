"""Regenerates the committed Python code for proto/evolver/v1 into evolver/v1.

`python scripts/gen_protos.py` writes in place; `--out DIR` writes elsewhere (the regeneration
test compares such a copy with what is committed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("evolver") / "v1"


def generate(out_root: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    out_pkg = out_root / PACKAGE_DIR
    out_pkg.mkdir(parents=True, exist_ok=True)
    for stale in out_pkg.glob("*_pb2*.py*"):
        stale.unlink()
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out_pkg / "__init__.py"
    init.write_text('"""Generated from proto/evolver/v1 by scripts/gen_protos.py. Do not edit."""\n')
    return sorted(out_pkg.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT)
    args = parser.parse_args()
    files = generate(args.out)
    print(f"generated {len(files)} files under {args.out / PACKAGE_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
