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
	$(BIN)/sparsescale run configs/double_descent_dense.yaml --jobs $(JOBS)
	$(BIN)/sparsescale run configs/compute_frontier.yaml --jobs $(JOBS)
	$(BIN)/sparsescale run configs/gd_stability.yaml --jobs $(JOBS)
	$(BIN)/sparsescale run configs/gd_stability_no_power_law.yaml --jobs $(JOBS)
	$(BIN)/sparsescale run configs/nonlinear.yaml --jobs $(JOBS)

# What CI runs: unit tests, the quick configs end to end, and the shipped configs' checks.
test: $(STAMP)
	$(BIN)/python -m pytest -q

# Speed and memory against naive code, scikit-learn and this machine's matrix-product rate.
# Not part of CI: about 4 minutes on 2 idle cores; writes results/bench/latest.json.
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
