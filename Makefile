# Two commands a user needs: `make demo` (the main job on embedded defaults) and `make test`.
# Both create .venv and install the project into it first (pinned by .ci/constraints.txt).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-slow lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c .ci/constraints.txt -e '.[airflow,cluster,test,bench]'
	touch $@

demo: install
	$(BIN)/apportion demo

test: install
	$(BIN)/pytest

test-slow: install
	$(BIN)/pytest -m "slow or integration"

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/bench_evaluator.py
	$(BIN)/python benchmarks/bench_slots.py
	$(BIN)/python benchmarks/bench_optimizer.py
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_robust.py
	$(BIN)/python benchmarks/bench_replan.py
	$(BIN)/python benchmarks/bench_baselines.py
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python -m pip install --quiet --no-deps -r benchmarks/requirements-saga.txt
	$(BIN)/python benchmarks/bench_saga.py
	$(BIN)/python benchmarks/bench_islands.py
	$(BIN)/python benchmarks/bench_calibration.py

clean:
	rm -rf $(VENV) .demo out
