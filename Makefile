# The two commands a newcomer needs:
#   make run    set everything up (virtualenv, dependencies) and start the sidecar
#   make test   set everything up and run the whole test suite
# Everything lives in .venv; nothing is installed globally.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test setup lint proto bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/anyllm-sidecar $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Regenerate the gRPC/protobuf code from proto/ (committed; a test fails when it drifts).
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

bench: setup
	bench/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
