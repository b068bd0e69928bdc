# gapscope — the two commands a new user needs are `make run` and `make test`.
# Both bootstrap .venv idempotently (re-installing only when pyproject.toml changes).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.gapscope-installed
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
# CPU machines get this torch release (a CPU build where the registry or a local wheel offers one).
TORCH_CPU_VERSION ?= 2.13.0
RUN_DIR ?= runs/main

.PHONY: setup run test test-fast lab bench lint clean-runs

setup: $(STAMP)

# The set-up's pip calls run in bash with pipefail, so that filtering their output keeps
# pip's exit status. Dropped, and nothing else: pip's notice for an extra index that a
# machine's pip config names but does not have ("WARNING: Location 'file:///...' is ignored:
# it is neither a file nor a directory"), and setuptools' "Editable installation." notice
# (an information-only warning that every editable install of this layout emits).
$(STAMP): SHELL := /bin/bash
$(STAMP): .SHELLFLAGS := -o pipefail -c
$(STAMP): QUIET := { grep -v 'is ignored: it is neither a file nor a directory' || [ $$? -eq 1 ]; }
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | $(QUIET)
	@# torch first, so the package's own 'torch>=2.4' is already satisfied and pip never
	@# swaps in a multi-GB CUDA build on a machine without a GPU.
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    echo "NVIDIA GPU found: installing a CUDA build of torch"; \
	    $(BIN)/python -m pip install -q 'torch>=2.4' $(TORCH_PIP_ARGS) 2>&1 | $(QUIET); \
	else \
	    echo "no NVIDIA GPU: installing torch==$(TORCH_CPU_VERSION) (CPU)"; \
	    $(BIN)/python -m pip install -q 'torch==$(TORCH_CPU_VERSION)' $(TORCH_PIP_ARGS) 2>&1 | $(QUIET); \
	fi
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | $(QUIET)
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m gapscope.helpers.cli run --config notebooks/grids/default.yaml --out $(RUN_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:randomly notebooks

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow and not browser"

# JupyterLab on the notebooks, bound to 127.0.0.1 (--allow-root added when run as root);
# more JupyterLab options through LAB_ARGS, e.g. make lab LAB_ARGS="--no-browser --port 8890"
LAB_ARGS ?=
lab: $(STAMP)
	$(BIN)/python -m gapscope.helpers.cli lab $(LAB_ARGS)

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check helpers widgets tests benchmarks notebooks/*.ipynb notebooks/*.py
	$(BIN)/mypy

clean-runs:
	rm -rf runs
