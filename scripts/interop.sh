#!/usr/bin/env bash
# Interop: the example clients in examples/ (Go, Java, Node, Python) and `buf curl` call a real
# sidecar over gRPC, with stubs generated from proto/ by each language's own toolchain.
#
#   scripts/interop.sh                       # everything: python go java node buf
#   scripts/interop.sh go java               # some of them
#
# It installs what each client needs (Debian packages with apt-get — `apt-get update` only when a
# package has no install candidate; npm packages into $WORK), generates the stubs, starts the fake
# upstream (tests/upstream/server.py) and the sidecar on ephemeral 127.0.0.1 ports, runs each
# client's checks (scripting the upstream before each one with scripts/interop/upstream.py, and
# asserting afterwards what the upstream saw), and stops what it started, by PID, on exit.
# Prints PASS/FAIL lines and a final `N passed, N failed` line; exits 1 when anything failed.
#
# Environment: INTEROP_WORK (scratch dir, default /tmp/anyllm-interop), PYTHON (the project's
# interpreter, default .venv/bin/python; `make setup` first), INTEROP_CHECKS (a subset of checks).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WORK="${INTEROP_WORK:-/tmp/anyllm-interop}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
PROTO="$ROOT/proto"
PROTOS=(anyllm/sidecar/v1/messages.proto anyllm/sidecar/v1/messages_service.proto)
HELPER="$ROOT/scripts/interop/upstream.py"
LANGS=(${*:-python go java node buf})
CHECKS=(${INTEROP_CHECKS:-unary tools fallback stream deadline invalid exhausted chain cancel count servertools})
STARTED=$SECONDS
mkdir -p "$WORK"
RESULTS="$WORK/results.txt"; : > "$RESULTS"

log() { echo "[interop $(date +%H:%M:%S)] $*" >&2; }
pass() { echo "PASS $*" | tee -a "$RESULTS"; }
fail() { echo "FAIL $*" | tee -a "$RESULTS"; }
die() {  # an infrastructure failure: count it, print the summary line, stop
  fail "setup $*"
  echo "$(grep -c '^PASS ' "$RESULTS" || true) passed, $(grep -c '^FAIL ' "$RESULTS" || true) failed"
  exit 1
}

for l in "${LANGS[@]}"; do
  case $l in python|go|java|node|buf) ;; *) echo "unknown language: $l (python go java node buf)" >&2; exit 2;; esac
done
[ -x "$PY" ] || { log "no $PY: running make setup"; make -C "$ROOT" setup >&2; }

# ------------------------------------------------------------------------------ installs
# apt_install PKG...: install the missing Debian packages; `apt-get update` once if one of
# them has no install candidate (a fresh machine with empty package lists).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if apt-cache policy "${missing[@]}" 2>/dev/null | grep -q "Candidate: (none)" \
     || ! apt-cache policy "${missing[@]}" 2>/dev/null | grep -q "Candidate: [0-9]"; then
    log "apt-get update"; $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  fi
  log "apt-get install ${missing[*]}"
  local t0=$SECONDS
  local install=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install
    -y -qq --no-install-recommends "${missing[@]}")
  if ! "${install[@]}" > "$WORK/apt.log" 2>&1; then   # stale package lists: update, retry once
    log "apt-get install failed; apt-get update and retry"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    "${install[@]}" > "$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; return 1; }
  fi
  log "apt-get install took $((SECONDS - t0))s"
}

# npm_install DIR PKG@VER...: a private node_modules under $WORK (nothing global).
npm_install() {
  local dir="$1"; shift
  mkdir -p "$dir"
  if [ ! -f "$dir/.installed" ] || [ "$(cat "$dir/.installed")" != "$*" ]; then
    local t0=$SECONDS
    echo '{"name":"anyllm-interop","private":true,"version":"0.0.0"}' > "$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --silent "$@" >&2)
    echo "$*" > "$dir/.installed"
    log "npm install $* took $((SECONDS - t0))s"
  fi
}

has() { local x; for x in "${LANGS[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }

APT=()
# Go: Debian's Go 1.19 + grpc-go 1.33 (GOPATH mode). apt picks golang-github-golang-protobuf-1-3-dev
# for grpc-dev unless 1-5 is named explicitly.
has go && APT+=(golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
  golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-google-genproto-dev)
# Java: Debian's grpc-java 1.41 jars, protoc + grpc_java_plugin, plain javac (no Maven).
has java && APT+=(protobuf-compiler protobuf-compiler-grpc-java-plugin libgrpc-java libprotobuf-java
  libnetty-java libguava-java libperfmark-java libgoogle-gson-java
  libgeronimo-annotation-1.3-spec-java libjsr305-java openjdk-17-jdk-headless)
if has node || has buf; then command -v npm > /dev/null || APT+=(npm); fi
[ ${#APT[@]} -eq 0 ] || apt_install "${APT[@]}" || fail "setup apt-get install -- see $WORK/apt.log"

# google/rpc/{status,error_details}.proto for the languages that compile them (Java) — taken from
# googleapis-common-protos, which grpcio-status brings into the project's virtualenv.
RPC_PROTO="$WORK/googleapis"
mkdir -p "$RPC_PROTO/google/rpc"
RPC_SRC="$("$PY" -c 'import os, google.rpc.status_pb2 as m; print(os.path.dirname(m.__file__))')"
cp "$RPC_SRC/status.proto" "$RPC_SRC/error_details.proto" "$RPC_PROTO/google/rpc/"

# ------------------------------------------------------------------------------ builds
# Each build logs to $WORK/build-LANG.log and writing the command that
# runs its checks to $WORK/run-LANG.cmd (--addr and the check name follow). A language whose build
# fails is skipped, with one FAIL.
declare -A RUN BUILD_TIME BUILD_PID
BUF="$WORK/buf/node_modules/.bin/buf"

build_python() {
  local gen="$WORK/python/gen"
  rm -rf "$gen" && mkdir -p "$gen"
  # grpcio-tools bundles protoc and google/protobuf/*.proto.
  "$PY" -m grpc_tools.protoc -I "$PROTO" --python_out="$gen" --grpc_python_out="$gen" "${PROTOS[@]/#/$PROTO/}"
  echo "env PYTHONPATH=$gen:$ROOT/examples/python $PY $ROOT/examples/python/check.py" > "$WORK/run-python.cmd"
}

build_go() {
  local G="$WORK/go" GP="$WORK/go/gopath"
  rm -rf "$GP" && mkdir -p "$GP/src/example.com/anyllm-example"
  # Default paths=import: the files land under their go_package path inside GOPATH/src.
  protoc -I "$PROTO" -I /usr/include --go_out="$GP/src" --go-grpc_out="$GP/src" "${PROTOS[@]/#/$PROTO/}"
  cp "$ROOT"/examples/go/*.go "$GP/src/example.com/anyllm-example/"
  local t0=$SECONDS
  (export GO111MODULE=off GOPATH="$GP:/usr/share/gocode" GOCACHE="$G/cache" GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
   go vet example.com/anyllm-example && go build -o "$G/anyllm-example" example.com/anyllm-example)
  log "go build took $((SECONDS - t0))s ($(go version))"
  echo "$G/anyllm-example check" > "$WORK/run-go.cmd"
}

JARS=(grpc-api grpc-core grpc-context grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub protobuf protobuf-util
  guava failureaccess geronimo-annotation-1.3-spec jsr305 perfmark-api gson
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common
  netty-handler netty-handler-proxy netty-resolver netty-transport netty-transport-native-unix-common)

build_java() {
  local D="$WORK/java" cp="" jar
  for jar in "${JARS[@]}"; do
    if [ -f "/usr/share/java/$jar.jar" ]; then cp="$cp:/usr/share/java/$jar.jar"
    elif [ "$jar" != failureaccess ]; then log "missing /usr/share/java/$jar.jar"; return 1; fi
  done
  cp="${cp#:}"
  rm -rf "$D" && mkdir -p "$D/gen" "$D/classes"
  # com.google.rpc.{Status,ErrorInfo,RetryInfo} are generated too (Maven users take them from
  # com.google.api.grpc:proto-google-common-protos; Debian has no recent enough jar).
  protoc -I "$PROTO" -I "$RPC_PROTO" -I /usr/include \
    --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin --java_out="$D/gen" --grpc-java_out="$D/gen" \
    "${PROTOS[@]/#/$PROTO/}" "$RPC_PROTO/google/rpc/status.proto" "$RPC_PROTO/google/rpc/error_details.proto"
  local t0=$SECONDS
  javac -nowarn -encoding UTF-8 -d "$D/classes" -cp "$cp" $(find "$D/gen" -name '*.java') "$ROOT"/examples/java/*.java
  log "javac took $((SECONDS - t0))s ($(javac -version 2>&1))"
  # A short-lived JVM per check: C1 only and the serial GC start faster.
  echo "java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp $D/classes:$cp dev.anyllm.examples.InteropChecks" > "$WORK/run-java.cmd"
}

build_node() {
  npm_install "$WORK/node" @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1 protobufjs@7.5.4
  # Dynamic loading: proto-loader reads proto/ at run time (no codegen step).
  echo "env NODE_PATH=$WORK/node/node_modules node $ROOT/examples/node/check.js --proto $PROTO" > "$WORK/run-node.cmd"
}

build_buf() {
  npm_install "$WORK/buf" @bufbuild/buf@1.75.0   # ships the buf binary (@bufbuild/buf-linux-x64)
  log "$("$BUF" --version 2>&1 | sed 's/^/buf /')"
}

for l in "${LANGS[@]}"; do   # one at a time: in parallel they only fight for the CPU
  rm -f "$WORK/run-$l.cmd"
  ( t0=$SECONDS; "build_$l"; echo "$((SECONDS - t0))" > "$WORK/build-$l.time" ) > "$WORK/build-$l.log" 2>&1 &
  BUILD_PID[$l]=$!
  if wait "${BUILD_PID[$l]}"; then
    BUILD_TIME[$l]="$(cat "$WORK/build-$l.time")"
    cat "$WORK/build-$l.log" >&2
    [ "$l" = buf ] || RUN[$l]="$(cat "$WORK/run-$l.cmd")"
  else
    tail -40 "$WORK/build-$l.log" >&2
    fail "$l build -- see $WORK/build-$l.log"
    BUILD_TIME[$l]=failed
  fi
done

# ------------------------------------------------------------------------------ servers
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# wait_line FILE PATTERN PID: until FILE has a line matching PATTERN (10 s), or PID died.
wait_line() {
  local i
  for i in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  log "no '$2' in $1"; cat "$1" "${1%.out}.err" >&2 2>/dev/null || true; return 1
}

"$PY" -m tests.upstream.server --port 0 --max-seconds 900 > "$WORK/upstream.out" 2> "$WORK/upstream.err" &
PIDS+=($!)
wait_line "$WORK/upstream.out" '^READY port=' "${PIDS[-1]}" || die "start the fake upstream"
UP_PORT="$(sed -n 's/^READY port=\([0-9]*\).*/\1/p' "$WORK/upstream.out")"
UP="http://127.0.0.1:$UP_PORT"

# First-token and idle timeouts far above the checks' waits: an upstream that sees its connection
# closed within seconds was cancelled by the client's cancel / deadline, not by a sidecar timeout.
cat > "$WORK/sidecar.yaml" <<EOF
server: {http: "127.0.0.1:0", grpc: "127.0.0.1:0"}
policy: {ttft_timeout: 30, idle_timeout: 30, timeout: 60}
backends:
  primary: {kind: openai, base_url: "$UP/v1", api_key: "sk-test"}
  secondary: {kind: openai, base_url: "$UP/v1", api_key: "sk-test2"}
  native: {kind: anthropic, base_url: "$UP", api_key: "sk-ant-test"}
chains:
  default: [{backend: primary, model: gpt-primary}, {backend: secondary}]
  only-primary: [{backend: primary}]
  native: [{backend: native, model: claude-upstream}]
EOF
"$PY" -m sidecar --config "$WORK/sidecar.yaml" > "$WORK/sidecar.out" 2> "$WORK/sidecar.err" &
PIDS+=($!)
wait_line "$WORK/sidecar.out" '"event":"ready"' "${PIDS[-1]}" || die "start the sidecar"
ADDR="$(sed -n 's/.*"event":"ready".*"grpc":"\([^"]*\)".*/\1/p' "$WORK/sidecar.out" | head -1)"
log "upstream $UP (pid ${PIDS[0]}), sidecar grpc $ADDR (pid ${PIDS[1]})"

# ------------------------------------------------------------------------------ checks
# run_check LANG CHECK: script the upstream, run the client's check, assert what the upstream saw.
run_check() {
  local l="$1" c="$2" out rc=0
  "$PY" "$HELPER" "$UP" before "$c"
  out="$(timeout 60 ${RUN[$l]} --addr "$ADDR" "$c" 2>&1)" || rc=$?
  printf '%s\n' "$out" | grep -E '^(PASS|FAIL) ' >> "$RESULTS" || true
  printf '%s\n' "$out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$' || true
  if [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -q '^FAIL '; then
    fail "$l $c -- exited with status $rc"
  fi
  "$PY" "$HELPER" "$UP" after "$c" "$l" | tee -a "$RESULTS" || true
}

# buf curl through server reflection (v1alpha): the service needs no local proto at all.
run_buf() {
  local U="http://$ADDR" out rc
  bc() { timeout 30 "$BUF" curl --protocol grpc --http2-prior-knowledge "$@"; }
  expect() {  # expect NAME PATTERN OUTPUT
    local flat; flat="$(printf '%s' "$3" | tr '\n' ' ' | tr -s ' ')"   # multi-line JSON on one line
    if printf '%s' "$flat" | grep -qE "$2"; then pass "buf $1"; else fail "buf $1 -- $(printf '%s' "$flat" | head -c 400)"; fi
  }
  local req='{"model":"m","maxTokens":64,"system":"You are terse.","messages":[{"role":"ROLE_USER","content":[{"text":{"text":"hello from buf"}}]}]}'
  # The contract itself: buf's STANDARD lint rules (AIP-like naming, _UNSPECIFIED enum zeros...).
  rc=0; out="$(cd "$PROTO" && "$BUF" lint --config '{"version":"v2","lint":{"use":["STANDARD"]}}' . 2>&1)" || rc=$?
  if [ $rc -eq 0 ]; then pass "buf lint proto/ (STANDARD)"; else fail "buf lint proto/ (STANDARD) -- $(printf '%s' "$out" | head -5 | tr '\n' ' ')"; fi
  "$PY" "$HELPER" "$UP" before unary
  out="$(bc --list-services "$U" 2>&1)" || true
  expect "list services" 'anyllm\.sidecar\.v1\.MessagesService' "$out"
  out="$(bc --list-methods "$U" 2>&1)" || true
  expect "list methods" 'MessagesService/StreamMessage' "$out"
  out="$(bc -v -H 'x-anyllm-chain: default' --timeout 10s -d "$req" "$U/anyllm.sidecar.v1.MessagesService/CreateMessage" 2>&1)" || true
  expect "CreateMessage" '"text": "echo: hello from buf"' "$out"
  expect "CreateMessage metadata" '[Xx]-[Aa]nyllm-[Bb]ackend: primary' "$out"
  out="$(bc --timeout 10s -d "$req" "$U/anyllm.sidecar.v1.MessagesService/StreamMessage" 2>&1)" || true
  # The deltas come merged or not, as the upstream's reads fall: check the order of events and
  # the joined text, not how the text was split.
  local joined; joined="$(printf '%s' "$out" | grep -oE '"textDelta": "[^"]*"' | sed -E 's/^"textDelta": "(.*)"$/\1/' | tr -d '\n')"
  expect "StreamMessage" '^\{ "messageStart".*"textDelta".*"messageStop": \{\} \} ?$' "$out"
  expect "StreamMessage text" '^echo: hello from buf$' "$joined"
  out="$(bc -d '{"service":"anyllm.sidecar.v1.MessagesService"}' "$U/grpc.health.v1.Health/Check" 2>&1)" || true
  expect "health" '"status": "SERVING"' "$out"
  "$PY" "$HELPER" "$UP" before invalid
  rc=0; out="$(bc --timeout 10s -d "$req" "$U/anyllm.sidecar.v1.MessagesService/CreateMessage" 2>&1)" || rc=$?
  expect "upstream 400 -> invalid_argument" '"code": "invalid_argument"' "$out"
  "$PY" "$HELPER" "$UP" before deadline
  rc=0; out="$(bc --timeout 0.5s -d "$req" "$U/anyllm.sidecar.v1.MessagesService/CreateMessage" 2>&1)" || rc=$?
  expect "deadline -> deadline_exceeded" 'deadline_exceeded' "$out (exit $rc)"
}

declare -A CHECK_TIME
for l in "${LANGS[@]}"; do
  [ "${BUILD_TIME[$l]}" = failed ] && continue
  t0=$SECONDS
  echo "== $l" >&2
  if [ "$l" = buf ]; then
    run_buf
  else
    for c in "${CHECKS[@]}"; do run_check "$l" "$c"; done
  fi
  CHECK_TIME[$l]=$((SECONDS - t0))
done

# ------------------------------------------------------------------------------ summary
echo "== summary (build / checks, seconds)"
for l in "${LANGS[@]}"; do
  p=$(grep -c "^PASS $l " "$RESULTS" || true); f=$(grep -c "^FAIL $l " "$RESULTS" || true)
  echo "$l: $p passed, $f failed (build ${BUILD_TIME[$l]}, checks ${CHECK_TIME[$l]:--})"
done
passed=$(grep -c '^PASS ' "$RESULTS" || true); failed=$(grep -c '^FAIL ' "$RESULTS" || true)
echo "wall time $((SECONDS - STARTED))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
