#!/usr/bin/env bash
# Installs what the end-to-end suite (tests/e2e) needs into a cache directory, idempotently:
#
#   $E2E_HOME/node        npm: @anthropic-ai/claude-code, @anthropic-ai/sdk
#   $E2E_HOME/llama-venv  llama-cpp-python[server] (llama.cpp built from source, without tests,
#                         examples and tools: about 7 minutes on 2 cores)
#   $E2E_HOME/litellm-venv  litellm[proxy], gguf (also used to write the tiny test model)
#
# Each part is skipped when its stamp file exists and says the same versions; a part that failed
# half-way is redone from scratch. E2E_HOME defaults to <repo>/.e2e (it ignores itself in git).
# Environment: E2E_HOME, PYTHON (the interpreter for the venvs, default python3), and the pinned
# versions below (CLAUDE_CODE_VERSION, ANTHROPIC_SDK_VERSION, LLAMA_CPP_PYTHON_VERSION,
# LITELLM_VERSION, GGUF_VERSION) — empty means "latest", which is what a new user gets.
# tests/e2e reads the same E2E_HOME.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
E2E_HOME="${E2E_HOME:-$ROOT/.e2e}"
PYTHON="${PYTHON:-python3}"
CLAUDE_CODE_VERSION="${CLAUDE_CODE_VERSION-2.1.332}"
ANTHROPIC_SDK_VERSION="${ANTHROPIC_SDK_VERSION-1.15.0}"
LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION-0.3.36}"
# litellm 1.109+ moved the proxy's dependencies into a package (litellm-proxy) that has no release
# for Python 3.11 matching it; pip's resolver backtracks to 1.108.7, which we pin.
LITELLM_VERSION="${LITELLM_VERSION-1.108.7}"
GGUF_VERSION="${GGUF_VERSION-0.19.0}"
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF}"
export MAKEFLAGS="${MAKEFLAGS:--j2}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 npm_config_update_notifier=false npm_config_fund=false \
  npm_config_audit=false

mkdir -p "$E2E_HOME"
[ -f "$E2E_HOME/.gitignore" ] || printf '*\n' > "$E2E_HOME/.gitignore"
# pip's notes about the machine's extra (absent) local indexes are noise here.
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }
log() { echo "[e2e-setup $(date +%H:%M:%S)] $*" >&2; }
pin() { [ -n "$2" ] && printf '%s==%s' "$1" "$2" || printf '%s' "$1"; }
npin() { [ -n "$2" ] && printf '%s@%s' "$1" "$2" || printf '%s' "$1"; }

# done_or_run NAME KEY COMMAND...: run COMMAND unless $E2E_HOME/NAME.stamp holds KEY.
done_or_run() {
  local name=$1 key=$2; shift 2
  local stamp="$E2E_HOME/$name.stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    log "$name: up to date ($key)"; return 0
  fi
  rm -f "$stamp"
  local t0=$SECONDS
  log "$name: installing ($key)"
  "$@"
  echo "$key" > "$stamp"
  log "$name: done in $((SECONDS - t0)) s"
}

install_node() {
  local dir="$E2E_HOME/node"
  rm -rf "$dir"; mkdir -p "$dir"
  printf '{"name":"anyllm-e2e","private":true}\n' > "$dir/package.json"
  (cd "$dir" && npm install --no-save --loglevel=error \
     "$(npin @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION")" \
     "$(npin @anthropic-ai/sdk "$ANTHROPIC_SDK_VERSION")" >&2)
  "$dir/node_modules/.bin/claude" --version >&2
}

install_llama() {
  local venv="$E2E_HOME/llama-venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  quiet_pip "$venv/bin/pip" install --quiet --upgrade pip
  # llama.cpp from source, CPU only, only the libraries the bindings load (LLAVA_BUILD=OFF: no
  # multimodal library; llama_cpp imports it lazily, for the llava chat handlers only).
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" \
    quiet_pip "$venv/bin/pip" install --no-cache-dir \
    "$(pin 'llama-cpp-python[server]' "$LLAMA_CPP_PYTHON_VERSION")" >&2
  "$venv/bin/python" -c "import llama_cpp, llama_cpp.server; print('llama_cpp', llama_cpp.__version__)" >&2
}

install_litellm() {
  local venv="$E2E_HOME/litellm-venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  quiet_pip "$venv/bin/pip" install --quiet --upgrade pip
  quiet_pip "$venv/bin/pip" install --quiet "$(pin 'litellm[proxy]' "$LITELLM_VERSION")" \
    "$(pin gguf "$GGUF_VERSION")" numpy >&2
  LITELLM_LOCAL_MODEL_COST_MAP=True "$venv/bin/python" -c "import litellm, gguf; print('litellm ok')" >&2
}

T0=$SECONDS
command -v node >/dev/null && command -v npm >/dev/null || { log "node and npm are needed"; exit 1; }
command -v cmake >/dev/null || { log "cmake is needed (apt-get install cmake)"; exit 1; }
done_or_run node "claude-code=$CLAUDE_CODE_VERSION sdk=$ANTHROPIC_SDK_VERSION node=$(node --version)" install_node
done_or_run litellm "litellm=$LITELLM_VERSION gguf=$GGUF_VERSION" install_litellm
done_or_run llama "llama-cpp-python=$LLAMA_CPP_PYTHON_VERSION cmake=$LLAMA_CMAKE_ARGS" install_llama
log "all done in $((SECONDS - T0)) s ($E2E_HOME)"
