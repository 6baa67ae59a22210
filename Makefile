# sparsescale: the main job, the tests and the benchmarks.
# Every target creates the virtual environment .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: install reproduce-all test test-all bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

install: $(STAMP)

# The full-scale studies behind the README's figures (minutes each on 2 cores).
reproduce-all: $(STAMP)
	$(BIN)/sparsescale run configs/double_descent.yaml --jobs $(JOBS)

# What CI runs: unit tests, the quick configs end to end, and the shipped configs' checks.
test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
