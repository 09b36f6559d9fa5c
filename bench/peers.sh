#!/usr/bin/env bash
# bench/peers.sh -- installs the peers the sidecar is compared with, into a cache directory:
#
#   bench/peers.sh               install (idempotent) LiteLLM's proxy and Portkey's gateway
#   bench/peers.sh --check       exit 0 when both are installed, 1 otherwise
#
# LiteLLM (PyPI `litellm[proxy]`, BENCH_LITELLM_VERSION, default 1.80.0) goes into a venv at
# BENCH_PEERS/litellm-venv, Portkey (npm `@portkey-ai/gateway`, BENCH_PORTKEY_VERSION, default
# 1.15.2) into BENCH_PEERS/portkey; BENCH_PEERS defaults to ~/.cache/anyllm-bench-peers. Nothing
# else is fetched. `run.sh --peers` (`make bench-peers`) runs this, then starts the peers beside
# the sidecar (see the README's "Against the peers").
set -euo pipefail

PEERS=${BENCH_PEERS:-$HOME/.cache/anyllm-bench-peers}
LITELLM_VERSION=${BENCH_LITELLM_VERSION:-1.80.0}
PORTKEY_VERSION=${BENCH_PORTKEY_VERSION:-1.15.2}
LITELLM_BIN=$PEERS/litellm-venv/bin/litellm
PORTKEY_JS=$PEERS/portkey/node_modules/@portkey-ai/gateway/build/start-server.js

installed() { [[ -x $LITELLM_BIN && -f $PORTKEY_JS ]]; }
if [[ ${1:-} == --check ]]; then installed; exit; fi

mkdir -p "$PEERS"
if [[ ! -x $LITELLM_BIN ]]; then
  echo "# installing litellm[proxy]==$LITELLM_VERSION into $PEERS/litellm-venv" >&2
  python3 -m venv "$PEERS/litellm-venv"
  "$PEERS/litellm-venv/bin/pip" install --quiet "litellm[proxy]==$LITELLM_VERSION"
fi
if [[ ! -f $PORTKEY_JS ]]; then
  command -v npm >/dev/null || { echo "peers.sh: needs node and npm" >&2; exit 1; }
  echo "# installing @portkey-ai/gateway@$PORTKEY_VERSION into $PEERS/portkey" >&2
  mkdir -p "$PEERS/portkey"
  (cd "$PEERS/portkey" && { [[ -f package.json ]] || npm init -y >/dev/null; } \
    && npm install --silent --no-audit --no-fund "@portkey-ai/gateway@$PORTKEY_VERSION" >/dev/null)
fi
installed
