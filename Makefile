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
# Serving at scale: a remote repository (s3:// gs:// as://) for make serve, the
# poll period that makes the server pick up what is published, the publish target.
MODEL_REPOSITORY ?=
REPOSITORY_POLL_SECS ?=
REPOSITORY_URL ?=
# make serve also reads ADMIN_KEY and STATS_KEY (else random keys go to build/admin-key and
# build/stats-key, mode 0600; docs/operations.md), METRICS_ADDRESS (default 127.0.0.1),
# DRAIN_GRACE_SECS (how long requests in flight may finish on SIGTERM or Ctrl-C, default 120),
# GRPC_TLS_CERT, GRPC_TLS_KEY, GRPC_TLS_CLIENT_CA (gRPC over TLS; with a client CA, mutual TLS)
export ADMIN_KEY STATS_KEY METRICS_ADDRESS DRAIN_GRACE_SECS GRPC_TLS_CERT GRPC_TLS_KEY GRPC_TLS_CLIENT_CA
SOAK_MINUTES ?= 10
SOAK_CONCURRENCY ?= 32
# e.g. SOAK_ARGS=--no-faults (fair weather) or --models text_embedding,datatypes
SOAK_ARGS ?=
# malloc of make serve's server and stubs: Debian's jemalloc (libjemalloc2,
# installed by `make jemalloc`), which held RSS in the soak where glibc grew;
# ALLOCATOR=glibc opts out. (Preloaded jemalloc killed the openvino stubs at load
# with OpenVINO 2026.4; the 2024.0.0 served now loads and answers with it.)
ALLOCATOR ?= jemalloc
# the soak measures what make serve runs unless told otherwise
SOAK_PRELOAD ?= $(ALLOCATOR)
export ALLOCATOR
FUZZ_EXAMPLES ?= 5000

REQUIREMENTS := requirements/serve.txt requirements/runtime-cpu.txt requirements/dev.txt requirements/export.txt requirements/ui.txt
NODEPS_REQUIREMENTS := requirements/nodeps.txt
SETUP_STAMP := $(VENV)/.setup-done
# RapidOCR's OpenVINO flavour needs an older openvino: a venv of its own (perf/ocr.py)
BASELINE_VENV := build/venv-rapidocr-openvino
BASELINE_STAMP := $(BASELINE_VENV)/.setup-done
# rapidocr 3.x on the OpenVINO a user installs today (perf/ocr.py's baselines)
BASELINE3_VENV := build/venv-rapidocr3-openvino
BASELINE3_STAMP := $(BASELINE3_VENV)/.setup-done
ANALYZER_VENV := build/venv-model-analyzer
ANALYZER_STAMP := $(ANALYZER_VENV)/.setup-done
MA_ARGS ?=
# The checkout on the venv's import path: the serving package (pipelines/)
# as the Docker image installs it, and the tooling beside it (runtime/, lint/, testsets/, references/, deploy/,
# export/, clients/, perf/), so scripts run as `python export/vit.py`.
CHECKOUT_ON_PATH := import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'triton_pipelines_checkout.pth').write_text('$(CURDIR)\n')

.PHONY: help setup export backends serve test lint perf model-analyzer clean distclean publish nginx fonts

help:
	@echo "make serve   run tritonserver on model_repository/ (HTTP_PORT=$(HTTP_PORT) GRPC_PORT=$(GRPC_PORT) METRICS_PORT=$(METRICS_PORT) MODEL_CONFIG_NAME=)"
	@echo "            OCR serves PP-OCRv6 (rapidocr 3.10) in f32; MODEL_CONFIG_NAME=ppocrv4 serves PP-OCRv4, =fast|bf16|int8 faster precisions (docs/ocr.md)"
	@echo "make test    lint and run the test suite against a real server (PYTEST_ARGS=...)"
	@echo "make lint    check every config.pbtxt (and the Python code with ruff)"
	@echo "make export  produce the model files that are missing or out of date (python -m export --list)"
	@echo "make perf    perf_analyzer suites beside their baselines, tables and plots in perf/results/ (PERF_ARGS=...)"
	@echo "make model-analyzer  Triton Model Analyzer instance/thread/engine sweeps of single networks (MA_ARGS=...)"
	@echo "make publish publish the model repository to object storage as a verified snapshot and serve it (REPOSITORY_URL=s3://[host:port/]bucket/prefix)"
	@echo "make serve MODEL_REPOSITORY=s3://... [REPOSITORY_POLL_SECS=30]   serve what make publish published, following each new publish (or one snapshot's URL; gs:// as:// served as they are)"
	@echo "make ui      the web page against a running server (UI_PORT=$(UI_PORT) TRITON_URL=$(TRITON_URL) UI_AUTH= TRITON_SSL=...; docs/ui.md)"
	@echo "make demo    the server and the page together; prints the page's URL when every model is READY"
	@echo "make setup   virtual environment with the pinned packages"
	@echo "make clean   remove every generated file but the venv; make distclean also the venv"

$(SETUP_STAMP): $(REQUIREMENTS) $(NODEPS_REQUIREMENTS) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(addprefix -r ,$(NODEPS_REQUIREMENTS))
	$(PY) -c "$(CHECKOUT_ON_PATH)"
	$(PY) -c "import numpy, sys; sys.exit(0 if numpy.__version__ < '2' else 'numpy must be < 2 in the serving environment, got ' + numpy.__version__)"
	$(PY) -m runtime.distribution
	touch $@

setup: $(SETUP_STAMP)

backends: $(SETUP_STAMP)
	$(PY) -m runtime.distribution

# Which files each export produces and what decides them: export/manifest.py.
# A re-export uses the source recorded by the last one (build/exports/).
export: $(SETUP_STAMP)
	$(PY) -m export

# A remote MODEL_REPOSITORY needs no local export.
serve: $(if $(MODEL_REPOSITORY),$(SETUP_STAMP),export) backends $(if $(filter jemalloc,$(ALLOCATOR)),jemalloc)
	$(PY) -m runtime.server --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
		$(if $(MODEL_CONFIG_NAME),--model-config-name $(MODEL_CONFIG_NAME)) \
		$(if $(MODEL_REPOSITORY),--model-repository $(MODEL_REPOSITORY)) \
		$(if $(REPOSITORY_POLL_SECS),--repository-poll-secs $(REPOSITORY_POLL_SECS))

# Lint, then publish every model folder to REPOSITORY_URL (s3://[host:port/]bucket/prefix) as a new
# snapshot, verified (SHA-256) before current.json switches to it (docs/deployment.md).
publish:
	@test -n "$(REPOSITORY_URL)" || { echo "usage: make publish REPOSITORY_URL=s3://bucket/prefix"; exit 2; }
	@$(MAKE) --no-print-directory lint
	$(PY) -m deploy.object_storage publish --no-lint $(REPOSITORY_URL)

# Debian's nginx, the load balancer of the replica tests (tests/test_balancer.py).
# Installed with apt-get where it is missing and we are root; policy-rc.d or
# not, the package's service is never what the tests run (they start their own).
nginx:
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends nginx >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends nginx >/dev/null; } \
		|| echo "warning: could not install nginx: the balancer and HTTPS proxy tests will skip"; \
	else echo "warning: nginx missing and not root (apt-get needs root): the balancer and HTTPS proxy tests will skip"; fi

# Debian's Noto CJK fonts: the Chinese and mixed-script pages of the multilingual
# OCR set (testsets/multilingual.py). Installed with apt-get where the font file is
# missing and we are root; otherwise the tests that need it skip and say why.
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
fonts:
	@if [ -f $(CJK_FONT) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends fonts-noto-cjk >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends fonts-noto-cjk >/dev/null; } \
		|| echo "warning: could not install fonts-noto-cjk: the multilingual OCR tests will skip"; \
	else echo "warning: $(CJK_FONT) missing and not root (apt-get needs root): the multilingual OCR tests will skip"; fi

lint: export
	$(PY) -m ruff check --quiet .
	$(PY) -m lint model_repository tests/model_repository

test: lint nginx jemalloc fonts chromium
	$(PY) -m pytest $(PYTEST_ARGS)

$(BASELINE_STAMP): requirements/baseline-rapidocr-openvino.txt
	$(PYTHON) -m venv $(BASELINE_VENV)
	$(BASELINE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/baseline-rapidocr-openvino.txt
	touch $@

$(BASELINE3_STAMP): requirements/baseline-rapidocr3-openvino.txt
	$(PYTHON) -m venv $(BASELINE3_VENV)
	$(BASELINE3_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/baseline-rapidocr3-openvino.txt
	touch $@

perf: export backends fonts $(BASELINE_STAMP) $(BASELINE3_STAMP) $(if $(filter jemalloc,$(ALLOCATOR)),jemalloc)
	$(PY) -m perf $(PERF_ARGS)

$(ANALYZER_STAMP): requirements/model-analyzer.txt
	$(PYTHON) -m venv $(ANALYZER_VENV)
	$(ANALYZER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/model-analyzer.txt
	touch $@

# Triton Model Analyzer sweeps of single networks (perf/model_analyzer.py)
model-analyzer: export backends $(ANALYZER_STAMP)
	$(PY) -m perf.model_analyzer $(MA_ARGS)

# Reliability (docs/reliability.md): mixed traffic with injected faults against a
# server of its own (perf/results/soak.md and .png), and fuzzing: hypothesis with a
# new seed each run, and raw HTTP and gRPC messages (all also run briefly in make test).
.PHONY: soak fuzz jemalloc
soak: export backends $(if $(filter jemalloc,$(SOAK_PRELOAD)),jemalloc)
	$(PY) -m perf.soak --minutes $(SOAK_MINUTES) --concurrency $(SOAK_CONCURRENCY) $(if $(SOAK_PRELOAD),--preload $(SOAK_PRELOAD)) $(SOAK_ARGS)

# Debian's jemalloc, for `make soak SOAK_PRELOAD=jemalloc` (the allocator comparison)
jemalloc:
	@ldconfig -p | grep -q 'libjemalloc\.so\.2' || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends libjemalloc2; }

fuzz: export backends
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RANDOM=1 $(PY) -m pytest tests/test_fuzz.py tests/test_wire_fuzz.py -q -s $(PYTEST_ARGS)

clean:
	$(PYTHON) -m export --clean
	rm -rf build .pytest_cache .ruff_cache checkpoints *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# The web page (ui/, docs/ui.md): a tab per pipeline over the clients. make ui
# serves it against a running server: TRITON_URL is the clients' endpoint
# (gRPC by default: Stop cancels a gRPC stream), TRITON_METRICS_URL the
# metrics page the Server tab reads, TRITON_SSL=1 with TRITON_ROOT_CERTIFICATES
# [TRITON_PRIVATE_KEY TRITON_CERTIFICATE_CHAIN] the clients' TLS flags, UI_AUTH
# user:password pairs (comma-separated) or a file of them (read from the
# environment: no password on a command line). make demo runs the server and
# the page together and prints the page's URL once every model is READY.
.PHONY: ui demo screenshots chromium
UI_PORT ?= 7860
UI_HOST ?= 127.0.0.1
TRITON_URL ?= localhost:$(GRPC_PORT)
TRITON_PROTOCOL ?= grpc
TRITON_METRICS_URL ?= http://$(firstword $(subst :, ,$(TRITON_URL))):$(METRICS_PORT)/metrics
TRITON_SSL ?=
TRITON_ROOT_CERTIFICATES ?=
TRITON_PRIVATE_KEY ?=
TRITON_CERTIFICATE_CHAIN ?=
UI_AUTH ?=
export UI_AUTH
UI_TLS_FLAGS = $(if $(TRITON_SSL),--ssl) $(if $(TRITON_ROOT_CERTIFICATES),--root-certificates $(TRITON_ROOT_CERTIFICATES)) \
	$(if $(TRITON_PRIVATE_KEY),--private-key $(TRITON_PRIVATE_KEY)) $(if $(TRITON_CERTIFICATE_CHAIN),--certificate-chain $(TRITON_CERTIFICATE_CHAIN))
UI_ENV = GRADIO_ANALYTICS_ENABLED=False

ui: $(SETUP_STAMP)
	$(UI_ENV) $(PY) -m ui --url $(TRITON_URL) --protocol $(TRITON_PROTOCOL) --metrics-url $(TRITON_METRICS_URL) \
		--host $(UI_HOST) --port $(UI_PORT) $(UI_TLS_FLAGS)

demo: export backends $(if $(filter jemalloc,$(ALLOCATOR)),jemalloc)
	$(UI_ENV) $(PY) -m ui.demo --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
		--host $(UI_HOST) --port $(UI_PORT) -- $(UI_TLS_FLAGS)

# docs/images/ui-*.png: each tab after its action, in headless Chromium
screenshots: export backends chromium
	$(UI_ENV) $(PY) -m ui.screenshots docs/images

# Debian's Chromium and its driver (always the same version), for the browser
# tests (tests/test_ui_browser.py) and make screenshots; installed with
# apt-get where missing and root, as make nginx does.
chromium:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; } \
		|| echo "warning: could not install chromium: the browser tests will skip"; \
	else echo "warning: chromium missing and not root (apt-get needs root): the browser tests will skip"; fi
