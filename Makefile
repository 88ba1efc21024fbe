# The two commands a new user needs: `make run` and `make test`. Both create .venv themselves.
.PHONY: run smoke test test-unit chaos proto lint-proto bench-bus bench-env bench-gen bench-learning bench-explore bench-vllm bench-pipeline bench-llm-roles venv clean

PY := .venv/bin/python

venv:
	@bash scripts/bootstrap.sh

# The main job: the self-evolving loop on the embedded stack (configs/default.yaml: 4-6 min on a
# 2-core CPU with fast bfloat16; a 13-minute budget trims RL steps where float32 is slower).
run: venv
	@$(PY) -m evolver.cli run

# The stack up, healthy, one event through every service, down (seconds).
smoke: venv
	@$(PY) -m evolver.cli smoke

test: venv
	@$(PY) -m pytest -q

# The unit tests alone: no nats-server, no network (about a minute).
test-unit: venv
	@$(PY) -m pytest -q tests/unit

# The robustness suite, longer than in `make test`: more fuzzed requests per RPC and several
# chaos rounds (every service SIGKILLed once per round); figures in docs/robustness.jsonl.
chaos: venv
	@rm -f docs/robustness.jsonl
	@ROBUSTNESS_JSONL=docs/robustness.jsonl CHAOS_ROUNDS=3 CHAOS_STEPS=6 FUZZ_EXAMPLES=40 \
		$(PY) -m pytest -q -s -p no:cacheprovider tests/integration/test_robustness.py \
		tests/integration/test_hostile_tool_calls.py tests/integration/test_hostile_bus.py

proto: venv
	@$(PY) scripts/gen_protos.py

lint-proto:
	@npx --yes @bufbuild/buf@1.75.0 lint

bench-bus: venv
	@$(PY) bench/bus_throughput.py --breakdown

bench-env: venv
	@$(PY) bench/env_step.py

bench-gen: venv
	@$(PY) bench/generation.py

bench-learning: venv
	@$(PY) bench/learning.py

bench-vllm: venv
	@$(PY) bench/vllm_path.py --versions 4 --requests 8 --new-tokens 32 --json docs/bench_vllm_path.json

bench-pipeline: venv
	@$(PY) bench/pipeline.py --steps 8 --replicas 1,2 --seeds 0 --json docs/bench_pipeline.json
	@$(PY) bench/pipeline_sim.py --from-run runs/bench-pipeline/pipeline-lag0-x1-seed0/metrics.jsonl --json docs/bench_pipeline_sim.json

# Two runs: the roles in separate service processes contend for 2 cores (docs/BENCHMARKS.md).
bench-llm-roles: venv
	@$(PY) bench/llm_roles.py --steps 5 --no-questioning --roles step_attributor --json docs/bench_llm_roles_labeller.json
	@$(PY) bench/llm_roles.py --steps 1 --explorations 1 --roles judge,experience_extractor --json docs/bench_llm_roles_questioning.json

bench-explore: venv
	@$(PY) bench/exploration.py --json docs/bench_exploration.json

clean:
	@rm -rf .evolver
