# The two commands a newcomer needs:
#   make run    set everything up (virtualenv, dependencies) and start the sidecar
#   make test   set everything up and run the whole test suite: unit and integration tests,
#               the Go/Java/Node/Python/buf interop checks, and the end-to-end suite with real
#               clients and servers (Claude Code, the TypeScript SDK, llama.cpp, LiteLLM)
# Parts of it: make check (unit + integration, ~4 min), make interop, make e2e (the first run
# builds llama.cpp: ~10 min; cached in .e2e/ after that).
# Everything lives in .venv; nothing is installed globally.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check interop e2e setup lint proto bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/anyllm-sidecar $(ARGS)

test: check interop e2e

check: setup
	bash scripts/ensure-redis.sh  # the shared-state tests run a real redis-server
	$(BIN)/python -m pytest $(PYTEST_ARGS)

interop: setup
	scripts/interop.sh

e2e: setup
	bash scripts/e2e-setup.sh
	$(BIN)/python -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Regenerate the gRPC/protobuf code from proto/ (committed; a test fails when it drifts).
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

bench: setup
	bench/run.sh

# The sidecar beside LiteLLM's proxy and Portkey's gateway (installed into a cache dir first).
bench-peers: setup
	bench/run.sh --peers

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
