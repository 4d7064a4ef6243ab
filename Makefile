# jingzhun — the whole set-up on a new machine is `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,spark]'
	touch $(STAMP)

demo: install
	$(BIN)/jingzhun demo

lint: install
	$(BIN)/ruff check src tests benchmarks

# Test files run in parallel, one file per worker at a time (a file's fixtures are built once;
# the Spark files together on one worker: tests/conftest.py's scheduler), in the order
# tests/conftest.py collects them (slow files first; xdist's own order, most tests first, left
# the browser files for last).
TEST_JOBS ?= 2

test: install lint
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --durations=30

# The benchmarks' baselines (Polars) come with the bench extra.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,spark,bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache jingzhun-demo
