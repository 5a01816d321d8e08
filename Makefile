# Two commands matter (README): `make demo` runs the demo batch on the simulator, `make test`
# runs every check. Both create the virtualenv in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: setup demo test test-slow check lint typecheck pytest format bench-sim clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

DEMO_MODELS = MiniMax-M2.7,MiniMax-M2.7-highspeed,MiniMax-M3

# The demo batch, the cache sample (40 questions sharing a ~2,000-token system prompt: the hit
# rate and the saving show on the simulator's prompt cache), then the graded sample set, graded:
# quality next to cost and speed per model.
demo: setup
	$(BIN)/batchrun run jobs/demo.jsonl --models $(DEMO_MODELS) --sim-time-scale 0.1
	$(BIN)/batchrun run jobs/cache-demo.jsonl --models $(DEMO_MODELS) --sim-time-scale 0.1 --name cache-demo
	$(BIN)/batchrun run jobs/graded-sim.jsonl --models $(DEMO_MODELS) --sim-time-scale 0.1 --name graded-demo
	$(BIN)/batchrun grade graded-demo

# Every check: lint, format, types, then the whole test suite.
test: setup lint typecheck pytest

check: test

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# Two workers (pytest-xdist), each taking whole modules so module fixtures are built once.
PYTEST_WORKERS ?= 2

pytest: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# The soak and scale tests (marked slow) that the default run leaves out; .ci/run runs them too.
test-slow: setup
	$(BIN)/pytest -m slow

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-sim: setup
	$(BIN)/python bench/sim_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
