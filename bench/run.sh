#!/usr/bin/env bash
# bench/run.sh -- the sidecar's benchmark in one command (`make bench` runs it).
#
#   bench/run.sh                 full run: the modes x C=1,16 x {direct,http,grpc} x 2 rounds, then
#                                the real shapes (shapes.py), ~17 min
#   bench/run.sh --quick         1 round, shorter runs (~1 min)
#   bench/run.sh --profile       also record a py-spy profile of the sidecar (numbers perturbed)
#   bench/run.sh --shapes-only   only the real shapes (shapes.py: paced streams, request sizes,
#                                the servers' floors); --no-shapes: only the modes of bench.py
#                                (arguments after -- go to bench.py run and skip the shapes,
#                                or with --shapes-only go to shapes.py)
#   bench/run.sh --shapes-only -- --parts paced --paced-streams 1000   extra shapes.py arguments
#   bench/run.sh [--quick] -- -m stream -c 1      extra arguments go to `bench.py run`
#   bench/run.sh --peers         (`make bench-peers`) only the peers: installs LiteLLM's proxy and
#                                Portkey's gateway (peers.sh), runs them pinned beside the sidecar
#                                on the same mock (peers.py); arguments after -- go to peers.py
#
# Installs what is missing (nginx-light + libnginx-mod-http-js from Debian, the project .venv,
# py-spy for --profile), starts the canned nginx mock upstream on 127.0.0.1 (BENCH_MOCK_PORT,
# default 18010..18012) and the sidecar pinned to cpu BENCH_SIDECAR_CPU (1), runs the load
# generators on cpu BENCH_CLIENT_CPU (0, shared with nginx), prints the table and stops what it
# started, by pid, on any exit. Runtime files go to BENCH_RUN (/tmp/anyllm-bench).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN=${BENCH_RUN:-/tmp/anyllm-bench}
MOCK_PORT=${BENCH_MOCK_PORT:-18010}
LONG_CHUNKS=${BENCH_LONG_CHUNKS:-200}
SIDECAR_CPU=${BENCH_SIDECAR_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
MAX_SECONDS=${BENCH_MAX_SECONDS:-900}  # per phase (modes, shapes, peers)
PACED_PORT=${BENCH_PACED_PORT:-18020}
PACED_EVENTS=${BENCH_PACED_EVENTS:-50}
PACED_INTERVAL_MS=${BENCH_PACED_INTERVAL_MS:-100}
PY=$ROOT/.venv/bin/python

quick=0 profile=0 shapes=1 modes=1 peers=0 extra=()
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --profile) profile=1 ;;
    --shapes-only) modes=0 ;;
    --no-shapes) shapes=0 ;;
    --peers) peers=1 modes=0 shapes=0 ;;
    --) shift; extra=("$@"); if ((modes)); then shapes=0; fi; break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (extra bench.py arguments go after --)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "# $*" >&2; }

# ---------------------------------------------------------------- what it needs
if ! command -v nginx >/dev/null || [[ ! -e /usr/lib/nginx/modules/ngx_http_js_module.so ]]; then
  if [[ $(id -u) != 0 ]]; then
    echo "run.sh: needs nginx-light and libnginx-mod-http-js (apt-get, as root)" >&2; exit 1
  fi
  say "installing nginx-light libnginx-mod-http-js"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    nginx-light libnginx-mod-http-js >/dev/null
fi
if [[ ! -x $PY ]] || ! "$PY" -c 'import sidecar, grpc, uvloop' 2>/dev/null; then
  say "setting up .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet -e '.[dev]'
fi
if ((peers)); then
  bench/peers.sh
  PEERS=${BENCH_PEERS:-$HOME/.cache/anyllm-bench-peers}
fi
if ((profile)) && [[ ! -x .venv/bin/py-spy ]]; then
  say "installing py-spy into .venv"
  .venv/bin/pip install --quiet py-spy
fi

ncpu=$(nproc)
pin_sidecar=() pin_client=()
if ((ncpu >= 2)) && command -v taskset >/dev/null; then
  pin_sidecar=(taskset -c "$SIDECAR_CPU")
  pin_client=(taskset -c "$CLIENT_CPU")
else
  say "WARNING: $ncpu cpu(s) or no taskset: not pinning; the client competes with the sidecar"
fi

# ---------------------------------------------------------------- processes, stopped on exit
mkdir -p "$RUN"
pids=()  # every process started here, in start order
stop_pid() {  # stop_pid PID NAME: TERM, up to 10 s, then KILL
  local pid=$1 name=$2 i=0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((i < 100)); do sleep 0.1; i=$((i + 1)); done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  say "stopped $name (pid $pid)"
}
names=()
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}" "${names[i]}"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
started() { pids+=("$1"); names+=("$2"); say "started $2 (pid $1)"; }

# the mock upstream: nginx master in the foreground (daemon off), one worker, on the client cpu
conf=$("$PY" bench/mock_nginx.py --run-dir "$RUN/nginx" --base-port "$MOCK_PORT" \
  --long-chunks "$LONG_CHUNKS")
"${pin_client[@]}" nginx -c "$conf" -p "$RUN/nginx" -e "$RUN/nginx/error.log" \
  >"$RUN/nginx.log" 2>&1 </dev/null &
started $! "mock nginx"
nginx_pid=$!

if ((shapes)); then
  # the paced upstream on the client cpu (it is the model's side); the floors on the sidecar's
  "${pin_client[@]}" "$PY" bench/paced_mock.py --port "$PACED_PORT" --events "$PACED_EVENTS" \
    --interval-ms "$PACED_INTERVAL_MS" >"$RUN/paced_mock.log" 2>&1 </dev/null &
  started $! "paced mock"
  "${pin_sidecar[@]}" "$PY" bench/floor.py --paced-port "$PACED_PORT" >"$RUN/floor.log" 2>&1 </dev/null &
  started $! "floor servers"
  floor_pid=$!
fi

"$PY" bench/bench.py config --mock-port "$MOCK_PORT" --paced-port "$PACED_PORT" \
  --out "$RUN/sidecar.yaml"
"${pin_sidecar[@]}" "$PY" -m sidecar --config "$RUN/sidecar.yaml" >"$RUN/sidecar.log" 2>&1 </dev/null &
started $! sidecar
sidecar_pid=$!

"$PY" bench/bench.py wait-mock --port "$MOCK_PORT" --count 6 --pid "$nginx_pid" \
  || { cat "$RUN/nginx/error.log" "$RUN/nginx.log" >&2 2>/dev/null; exit 1; }
read -r http_addr grpc_addr < <("$PY" bench/bench.py wait-ready --log "$RUN/sidecar.log" \
  --pid "$sidecar_pid" --timeout 60) || { tail -20 "$RUN/sidecar.log" >&2; exit 1; }
say "sidecar http=$http_addr grpc=$grpc_addr pid=$sidecar_pid (cpu ${SIDECAR_CPU}); client cpu $CLIENT_CPU"

if ((peers)); then
  LITELLM_PORT=${BENCH_LITELLM_PORT:-18400} PORTKEY_PORT=${BENCH_PORTKEY_PORT:-18787}
  "$PY" bench/peers.py litellm-config --mock-port "$MOCK_PORT" --out "$RUN/litellm.yaml"
  # offline, no database, no telemetry, no auth: the bare proxy path
  env -u DATABASE_URL -u LITELLM_MASTER_KEY LITELLM_LOCAL_MODEL_COST_MAP=True \
    LITELLM_TELEMETRY=False LITELLM_LOG=ERROR DISABLE_ADMIN_UI=True NO_DOCS=True NO_REDOC=True \
    LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true \
    "${pin_sidecar[@]}" "$PEERS/litellm-venv/bin/litellm" --config "$RUN/litellm.yaml" \
    --host 127.0.0.1 --port "$LITELLM_PORT" --num_workers 1 >"$RUN/litellm.log" 2>&1 </dev/null &
  started $! "litellm proxy"
  litellm_pid=$!
  portkey_js=$PEERS/portkey/node_modules/@portkey-ai/gateway/build/start-server.js
  # a patched copy beside the original, so its imports resolve (see peers.py patch_portkey)
  "$PY" bench/peers.py portkey-patch "$portkey_js" "${portkey_js%.js}.bench.js"
  NODE_ENV=production "${pin_sidecar[@]}" node --require "$ROOT/bench/node_loopback.cjs" \
    "${portkey_js%.js}.bench.js" --port="$PORTKEY_PORT" --headless >"$RUN/portkey.log" 2>&1 \
    </dev/null &
  started $! "portkey gateway"
  portkey_pid=$!
  for port in "$LITELLM_PORT" "$PORTKEY_PORT"; do
    for i in $(seq 1800); do
      curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && break
      kill -0 "$litellm_pid" "$portkey_pid" 2>/dev/null \
        || { tail -20 "$RUN/litellm.log" "$RUN/portkey.log" >&2; exit 1; }
      ((i < 1800)) || { echo "run.sh: nothing answers on 127.0.0.1:$port" >&2; exit 1; }
      sleep 0.1
    done
  done
  say "litellm pid $litellm_pid port $LITELLM_PORT, portkey pid $portkey_pid port $PORTKEY_PORT"
fi

if ((profile)); then
  "${pin_client[@]}" .venv/bin/py-spy record --pid "$sidecar_pid" --nonblocking --rate 200 \
    --format raw --output "$RUN/profile.txt" >"$RUN/py-spy.log" 2>&1 </dev/null &
  started $! py-spy
  profiler_pid=$!
fi

stamp=$(date +%Y%m%d-%H%M%S)
args=(--http "$http_addr" --grpc "$grpc_addr" --sidecar-pid "$sidecar_pid" --mock-port "$MOCK_PORT"
  --mock-pid "$nginx_pid" --long-chunks "$LONG_CHUNKS"
  --out "$RUN/results-$stamp.json" --max-minutes $((MAX_SECONDS / 60 - 1)))
if ((quick)); then args+=(--rounds 1 --duration 2 --warmup 0.5 --prime 1 --pause 0.2); fi
status=0
if ((modes)); then
  timeout -k 5 "$MAX_SECONDS" "${pin_client[@]}" "$PY" bench/bench.py run "${args[@]}" \
    "${extra[@]}" || status=$?
fi
if ((shapes)); then
  for _ in $(seq 100); do grep -q '^ready' "$RUN/floor.log" 2>/dev/null && break; sleep 0.1; done
  read -r _ floor_http_port floor_grpc_port < <(grep '^ready' "$RUN/floor.log") \
    || { cat "$RUN/floor.log" >&2; exit 1; }
  shape_args=(--http "$http_addr" --grpc "$grpc_addr" --sidecar-pid "$sidecar_pid"
    --floor-http "127.0.0.1:$floor_http_port" --floor-grpc "127.0.0.1:$floor_grpc_port"
    --floor-pid "$floor_pid" --floor-log "$RUN/floor.log" --events "$PACED_EVENTS" --interval-ms "$PACED_INTERVAL_MS"
    --out "$RUN/shapes-$stamp.json")
  if ((quick)); then shape_args+=(--rounds 1 --duration 2 --warmup 0.5); fi
  timeout -k 5 "$MAX_SECONDS" "${pin_client[@]}" "$PY" bench/shapes.py "${shape_args[@]}" \
    "${extra[@]}" || status=$?
fi

if ((profile)); then
  kill -INT "$profiler_pid" 2>/dev/null || true  # py-spy writes its output on SIGINT
  for _ in $(seq 100); do kill -0 "$profiler_pid" 2>/dev/null || break; sleep 0.1; done
  if [[ -s $RUN/profile.txt ]]; then
    "$PY" bench/bench.py hotspots "$RUN/profile.txt"
  else
    say "py-spy wrote no profile; see $RUN/py-spy.log"
  fi
fi
if ((peers)); then
  peer_args=(--http "$http_addr" --sidecar-pid "$sidecar_pid" --mock-port "$MOCK_PORT"
    --litellm-port "$LITELLM_PORT" --litellm-pid "$litellm_pid"
    --portkey-port "$PORTKEY_PORT" --portkey-pid "$portkey_pid" --out "$RUN/peers-$stamp.json")
  if ((quick)); then peer_args+=(--rounds 1 --duration 2 --warmup 0.5 --prime 1); fi
  timeout -k 5 "$MAX_SECONDS" "${pin_client[@]}" "$PY" bench/peers.py run "${peer_args[@]}" \
    "${extra[@]}" || status=$?
fi
exit "$status"
