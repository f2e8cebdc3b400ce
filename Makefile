# Triton model repository collection: every target sets up what it needs.
#   make serve   - tritonserver on model_repository/ in the foreground
#   make test    - lint + the whole test suite against a real server
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=
PERF_ARGS ?=
MODEL_CONFIG_NAME ?=
SOAK_MINUTES ?= 10
SOAK_CONCURRENCY ?= 32
SOAK_PRELOAD ?=
FUZZ_EXAMPLES ?= 5000

REQUIREMENTS := requirements/serve.txt requirements/runtime-cpu.txt requirements/dev.txt requirements/export.txt
NODEPS_REQUIREMENTS := requirements/nodeps.txt
SETUP_STAMP := $(VENV)/.setup-done
# The checkout on the venv's import path: the serving package (pipelines/)
# as the Docker image installs it, and the tooling beside it (tools/,
# export/, clients/, perf/), so scripts run as `python export/vit.py`.
CHECKOUT_ON_PATH := import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'triton_pipelines_checkout.pth').write_text('$(CURDIR)\n')

.PHONY: help setup export backends serve test lint perf clean distclean

help:
	@echo "make serve   run tritonserver on model_repository/ (HTTP_PORT=$(HTTP_PORT) GRPC_PORT=$(GRPC_PORT) METRICS_PORT=$(METRICS_PORT) MODEL_CONFIG_NAME=)"
	@echo "make test    lint and run the test suite against a real server (PYTEST_ARGS=...)"
	@echo "make lint    check every config.pbtxt (and the Python code with ruff)"
	@echo "make export  produce the model files that are missing or out of date (python -m export --list)"
	@echo "make perf    perf_analyzer suites beside their baselines, tables and plots in perf/results/ (PERF_ARGS=...)"
	@echo "make setup   virtual environment with the pinned packages"
	@echo "make clean   remove every generated file but the venv; make distclean also the venv"

$(SETUP_STAMP): $(REQUIREMENTS) $(NODEPS_REQUIREMENTS) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(addprefix -r ,$(NODEPS_REQUIREMENTS))
	$(PY) -c "$(CHECKOUT_ON_PATH)"
	$(PY) -c "import numpy, sys; sys.exit(0 if numpy.__version__ < '2' else 'numpy must be < 2 in the serving environment, got ' + numpy.__version__)"
	$(PY) -m tools.runtime.distribution
	touch $@

setup: $(SETUP_STAMP)

backends: $(SETUP_STAMP)
	$(PY) -m tools.runtime.distribution

# Which files each export produces and what decides them: export/manifest.py.
# A re-export uses the source recorded by the last one (build/exports/).
export: $(SETUP_STAMP)
	$(PY) -m export

serve: export backends
	$(PY) -m tools.runtime.server --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
		$(if $(MODEL_CONFIG_NAME),--model-config-name $(MODEL_CONFIG_NAME))

lint: export
	$(PY) -m ruff check --quiet .
	$(PY) -m tools.lint model_repository tests/model_repository

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

perf: export backends
	$(PY) -m perf $(PERF_ARGS)

# Reliability: mixed traffic against a server of its own (perf/results/soak.md
# and .png), and hypothesis fuzzing with a new seed each run (both also run
# briefly in make test).
.PHONY: soak fuzz jemalloc
soak: export backends $(if $(filter jemalloc,$(SOAK_PRELOAD)),jemalloc)
	$(PY) -m tools.soak --minutes $(SOAK_MINUTES) --concurrency $(SOAK_CONCURRENCY) $(if $(SOAK_PRELOAD),--preload $(SOAK_PRELOAD))

# Debian's jemalloc, for `make soak SOAK_PRELOAD=jemalloc` (the allocator comparison)
jemalloc:
	@ldconfig -p | grep -q 'libjemalloc\.so\.2' || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends libjemalloc2; }

fuzz: export backends
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RANDOM=1 $(PY) -m pytest tests/test_fuzz.py -q -s $(PYTEST_ARGS)

clean:
	$(PYTHON) -m export --clean
	rm -rf build .pytest_cache .ruff_cache checkpoints *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
