#!/usr/bin/env bash
# Makes sure `redis-server` is on PATH for the shared-state tests (tests/integration/
# test_shared_state.py start their own on a free 127.0.0.1 port and stop it by PID; no system
# service is used). On a machine without it, installs Debian's package `redis-server` with
# apt-get (as root, or through sudo when that is available). Idempotent: does nothing when the
# binary is there already. REDIS_SERVER may point at another binary.
set -euo pipefail
if command -v "${REDIS_SERVER:-redis-server}" >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-redis: redis-server is missing and apt-get is not available; install Redis 7" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: the binary only, no service is enabled or started by the tests.
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
command -v redis-server >/dev/null
