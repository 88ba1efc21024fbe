#!/usr/bin/env bash
# The GPU path end to end, on a machine with an NVIDIA GPU. Never part of CI.
#
#   1. vLLM in its own virtual environment (it pins its own torch), serving the prepared
#      SmolLM2-135M-Instruct with runtime LoRA loading and processed (temperature-applied) log-probs;
#   2. bench/vllm_path.py against it, trainer on CUDA: tokens/s, the log-prob agreement between
#      vLLM and the trainer, the adapter swap latency and intended-version share, the step time;
#   3. a 2-step run with `policy.backend: openai` through the embedded stack, trainer on CUDA,
#      and its step times (rollouts, update) from metrics.jsonl (bench/pipeline_sim.py --from-run).
#
# Usage: scripts/gpu_check.sh [OUT_DIR]     (default ./gpu-check)
# Offline machines: WHEELHOUSE=/path/to/wheels (vllm and its dependencies) is used with
# --no-index. VLLM_SPEC picks the version (default: the newest vllm).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
PORT=${PORT:-8011}
SERVED=smollm2
export EVOLVER_MODEL_CACHE=${EVOLVER_MODEL_CACHE:-$HOME/.cache/evolver/models}
ADAPTERS=$(mktemp -d /tmp/evolver-adapters.XXXX)   # one machine: explorer and vLLM share it

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
[ -x .venv/bin/python ] || bash scripts/bootstrap.sh          # the README's setup
.venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
  echo "the trainer's torch has no CUDA: reinstall torch==2.13.0 with its CUDA build" >&2; exit 1; }
.venv/bin/evolver models prepare
MODEL_DIR="$EVOLVER_MODEL_CACHE/smollm2-135m-instruct"

if [ ! -x .venv-vllm/bin/vllm ]; then
  python3 -m venv .venv-vllm
  if [ -n "${WHEELHOUSE:-}" ]; then
    .venv-vllm/bin/pip install -q --no-index --find-links "$WHEELHOUSE" "${VLLM_SPEC:-vllm}"
  else
    .venv-vllm/bin/pip install -q "${VLLM_SPEC:-vllm}"
  fi
fi
.venv-vllm/bin/python -c 'import vllm; print("vllm", vllm.__version__)' | tee "$OUT/vllm_version.txt"

VLLM_ALLOW_RUNTIME_LORA_UPDATING=true .venv-vllm/bin/vllm serve "$MODEL_DIR" --served-model-name "$SERVED" \
  --enable-lora --max-lora-rank 64 --max-loras 4 --max-model-len 8192 \
  --logprobs-mode processed_logprobs --generation-config vllm \
  --gpu-memory-utilization "${GPU_MEMORY_UTILIZATION:-0.35}" --port "$PORT" > "$OUT/vllm.log" 2>&1 &
VLLM_PID=$!
trap 'kill $VLLM_PID 2>/dev/null || true; .venv/bin/evolver --state-dir "$OUT/stack" down >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  kill -0 $VLLM_PID 2>/dev/null || { tail -50 "$OUT/vllm.log"; exit 1; }
  sleep 2
done
curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null || { echo "vLLM did not come up" >&2; tail -50 "$OUT/vllm.log"; exit 1; }

echo "== rollouts on vLLM, trainer on CUDA"
.venv/bin/python bench/vllm_path.py --endpoint "http://127.0.0.1:$PORT/v1" --served-model "$SERVED" \
  --adapter-dir "$ADAPTERS" --model-dir "$MODEL_DIR" --versions 3 --requests 64 --new-tokens 128 \
  --json "$OUT/vllm_path.json"

echo "== a 2-step run with policy.backend: openai"
cat > "$OUT/run.yaml" <<'YAML'
steps: 2
tasks_per_step: 4
group_size: 8
eval_every: 0
eval: {synthetic_tasks: 8, seed_tasks: 4, k: 4}
rollout: {max_steps: 4, max_new_tokens: 128, timeout_s: 1800}
training: {mini_batches: 4, micro_batch: 8, gradient_checkpointing: true}
YAML
EVOLVER_POLICY__BACKEND=openai EVOLVER_POLICY__ENDPOINT="http://127.0.0.1:$PORT/v1" EVOLVER_POLICY__MODEL="$SERVED" \
EVOLVER_POLICY__ADAPTER_DIR="$ADAPTERS" EVOLVER_POLICY__MODEL_DIR="$MODEL_DIR" \
  .venv/bin/evolver --state-dir "$OUT/stack" up
.venv/bin/evolver --state-dir "$OUT/stack" run --config "$OUT/run.yaml" --run-id gpu-check --out "$OUT/runs"
# The run's measured stage costs per step (rollouts, update) and what they project for more explorers.
.venv/bin/python bench/pipeline_sim.py --from-run "$OUT/runs/gpu-check/metrics.jsonl" --replicas 1,2,4,8 \
  --json "$OUT/pipeline_sim.json"
echo "results in $OUT (vllm_path.json, runs/gpu-check/report.md)"
