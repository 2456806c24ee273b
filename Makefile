# tunefactory — the two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SPEC   ?= search_spaces/laptop.yaml

export TF_CPP_MIN_LOG_LEVEL := 2
export RAY_USAGE_STATS_ENABLED := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help demo test lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## run the laptop sweep on the embedded data and print where the leaderboard is
	$(BIN)/tunefactory run $(SPEC)

test: lint  ## run ruff, mypy, the import contracts and every test (what CI runs: .ci/run)
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff + mypy + import contracts (layers, no cycles, who may import ray/keras)
	$(BIN)/ruff check search_spaces trainables cluster reports tests benchmarks
	$(BIN)/mypy search_spaces trainables cluster reports
	$(BIN)/lint-imports

bench: $(STAMP)  ## sweep vs bare sequential Keras loop, trials/hour
	$(BIN)/python benchmarks/sweep_vs_loop.py

clean:  ## remove the virtual environment and run outputs
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
