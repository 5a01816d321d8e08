# Two commands matter (README): `make demo` runs the demo batch on the simulator, `make test`
# runs every check. Both create the virtualenv in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: setup demo test check lint typecheck pytest format bench-sim clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/batchrun run jobs/demo.jsonl --models MiniMax-M2.7,MiniMax-M2.7-highspeed,MiniMax-M3 --sim-time-scale 0.1

# Every check: lint, format, types, then the whole test suite.
test: setup lint typecheck pytest

check: test

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-sim: setup
	$(BIN)/python bench/sim_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
