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

REQUIREMENTS := requirements/serve.txt requirements/runtime-cpu.txt requirements/dev.txt requirements/export.txt
NODEPS_REQUIREMENTS := requirements/nodeps.txt
SETUP_STAMP := $(VENV)/.setup-done

# One line per exported model file: make rebuilds it when its script changes.
EXPORTS := \
	model_repository/datatypes_onnx/1/model.onnx \
	model_repository/text_encoder/1/model.onnx \
	model_repository/orientation_classifier/1/model.onnx \
	model_repository/ocr_det/1/model.onnx \
	model_repository/vit_model/1/model.onnx \
	model_repository/clip_image_encoder/1/model.onnx

.PHONY: help setup export backends serve test lint perf clean distclean

help:
	@echo "make serve   run tritonserver on model_repository/ (HTTP_PORT=$(HTTP_PORT) GRPC_PORT=$(GRPC_PORT) METRICS_PORT=$(METRICS_PORT) MODEL_CONFIG_NAME=)"
	@echo "make test    lint and run the test suite against a real server (PYTEST_ARGS=...)"
	@echo "make lint    check every config.pbtxt"
	@echo "make export  produce every model file of the repository"
	@echo "make perf    perf_analyzer suites beside their baselines (PERF_ARGS=...)"
	@echo "make setup   virtual environment with the pinned packages"

$(SETUP_STAMP): $(REQUIREMENTS) $(NODEPS_REQUIREMENTS) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(addprefix -r ,$(NODEPS_REQUIREMENTS))
	$(PIP) install --quiet --disable-pip-version-check --no-deps -e .
	$(PY) -c "import numpy, sys; sys.exit(0 if numpy.__version__ < '2' else 'numpy must be < 2 in the serving environment, got ' + numpy.__version__)"
	$(PY) -m pipelines.runtime.distribution
	touch $@

setup: $(SETUP_STAMP)

backends: $(SETUP_STAMP)
	$(PY) -m pipelines.runtime.distribution

model_repository/datatypes_onnx/1/model.onnx: export/datatypes_onnx.py pipelines/datatypes_onnx.py $(SETUP_STAMP)
	$(PY) export/datatypes_onnx.py

model_repository/text_encoder/1/model.onnx: export/text_embedding.py pipelines/text/minilm.py $(SETUP_STAMP)
	HF_HUB_OFFLINE=1 $(PY) export/text_embedding.py

model_repository/orientation_classifier/1/model.onnx: export/orientation.py pipelines/image/orientation.py $(SETUP_STAMP)
	$(PY) export/orientation.py

model_repository/ocr_det/1/model.onnx: export/ocr.py pipelines/ocr/params.py $(SETUP_STAMP)
	$(PY) export/ocr.py

# ViT and CLIP: a seeded small checkpoint (no hub here); TensorRT first where
# a GPU is, else ONNX. Another checkpoint: python export/vit.py --source NAME
model_repository/vit_model/1/model.onnx: export/vit.py pipelines/vit/__init__.py pipelines/image/hf_processor.py $(SETUP_STAMP)
	$(PY) export/vit.py

model_repository/clip_image_encoder/1/model.onnx: export/clip.py pipelines/clip/__init__.py pipelines/image/hf_processor.py $(SETUP_STAMP)
	$(PY) export/clip.py

export: $(EXPORTS)

serve: export backends
	$(PY) -m pipelines.runtime.server --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
		$(if $(MODEL_CONFIG_NAME),--model-config-name $(MODEL_CONFIG_NAME))

lint: export
	$(PY) -m pipelines.lint model_repository tests/model_repository

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

perf: export backends
	$(PY) -m perf $(PERF_ARGS)

clean:
	rm -rf build .pytest_cache perf/results checkpoints
	rm -f $(EXPORTS)

distclean: clean
	rm -rf $(VENV)
