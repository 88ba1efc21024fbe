# The two commands a new user needs: `make run` and `make test`. Both create .venv themselves.
.PHONY: run smoke test proto lint-proto bench-bus bench-env bench-gen bench-learning venv clean

PY := .venv/bin/python

venv:
	@bash scripts/bootstrap.sh

# The main job: the self-evolving loop on the embedded stack (configs/default.yaml, ~9 min on a 2-core CPU).
run: venv
	@$(PY) -m evolver.cli run

# The stack up, healthy, one event through every service, down (seconds).
smoke: venv
	@$(PY) -m evolver.cli smoke

test: venv
	@$(PY) -m pytest -q

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

clean:
	@rm -rf .evolver
