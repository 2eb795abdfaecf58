#!/usr/bin/env bash
# Run one nhbench scenario against a gateway this script starts and stops itself.
#
#   bench/run.sh SCENARIO [nhbench options...]
#   bench/run.sh smoke                       # the C client's end-to-end check (what `make test` runs)
#   bench/run.sh hold --sessions 50000 --hold 60s
#   bench/run.sh handshake --concurrency 32 --duration 20s [--resume]
#   bench/run.sh storm --sessions 100000 [--backoff link|none] [--resume]
#
# It generates the test PKI (ops/devcerts.sh build/test-certs), starts build/nhgw on a free
# 127.0.0.1 port with enough workers for the session count (each process stays under the 20,000
# descriptor limit), a high accept rate, and timeouts that fit the scenario, runs build/nhbench
# with --target/--gateway-pid/--json, stops the gateway with SIGTERM, and prints nhbench's summary
# plus what the gateway logged at warn/error. Files land in build/bench-results/, with a PNG of the
# run's curves (bench/plot.sh) when gnuplot is installed.
# Environment: NHGW_BIN, NHBENCH_BIN (binaries), GW_WORKERS (gateway workers), GW_ARGS (extra
# gateway options), GW_CPUS / BENCH_CPUS (taskset CPU lists to pin the gateway / nhbench, e.g. 1
# and 0), RESULTS (output directory). Exit status: nhbench's, or 1 if the gateway died.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"

if [ $# -lt 1 ]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
scenario=$1
shift

NHGW_BIN=${NHGW_BIN:-$repo/build/nhgw}
NHBENCH_BIN=${NHBENCH_BIN:-$repo/build/nhbench}
RESULTS=${RESULTS:-$repo/build/bench-results}
for b in "$NHGW_BIN" "$NHBENCH_BIN"; do
  if [ ! -x "$b" ]; then
    echo "run.sh: $b is missing: build it first (make)" >&2
    exit 2
  fi
done
certs=$repo/build/test-certs
"$repo/ops/devcerts.sh" "$certs" >/dev/null

# Sizes from the nhbench arguments: sessions decide the gateway's worker count, hold and heartbeat
# the timeouts (a TLS-only session sends no HTTP request, so the upgrade deadline must outlast it).
dur_s() { # 30s, 2m, 500ms, 45 -> whole seconds (at least 1)
  case $1 in
    *ms) echo 1 ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *h) echo $(( ${1%h} * 3600 )) ;;
    *s) echo "${1%s}" | cut -d. -f1 ;;
    *) echo "$1" | cut -d. -f1 ;;
  esac
}
sessions=0
hold_s=30
args=("$@")
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
  v=${args[$((i + 1))]}
  case ${args[$i]} in
    --sessions) case $v in *k) sessions=$(( ${v%k} * 1000 )) ;; *) sessions=$v ;; esac ;;
    --hold) hold_s=$(dur_s "$v") ;;
  esac
done
cores=$(nproc)
if [ -n "${GW_WORKERS:-}" ]; then
  workers=$GW_WORKERS
else
  workers=$(( (sessions + 11999) / 12000 ))
  [ "$workers" -lt "$cores" ] && workers=$cores
fi
upgrade_timeout=10s
case $scenario in tls-hold|smoke) upgrade_timeout=$(( hold_s * 2 + 600 ))s ;; esac

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$RESULTS"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log=$RESULTS/$scenario-$stamp-nhgw.log
json=$RESULTS/$scenario-$stamp.json

gw_args=(--listen "127.0.0.1:$port" --workers "$workers"
  --cert "$certs/server.pem" --key "$certs/server.key" --device-ca "$certs/device-cas.pem"
  --ticket-key-file "$certs/ticket.key"
  --accept-rate 1000000 --accept-burst 100000 --backlog 65535
  --handshake-timeout 30s --upgrade-timeout "$upgrade_timeout" --max-output 1MiB
  --log-level info)
# shellcheck disable=SC2206
[ -n "${GW_ARGS:-}" ] && gw_args+=($GW_ARGS)

gw_pin=()
bench_pin=()
[ -n "${GW_CPUS:-}" ] && gw_pin=(taskset -c "$GW_CPUS")
[ -n "${BENCH_CPUS:-}" ] && bench_pin=(taskset -c "$BENCH_CPUS")
${gw_pin[@]+"${gw_pin[@]}"} "$NHGW_BIN" "${gw_args[@]}" >"$log" 2>&1 &
gw_pid=$!
stop_gateway() {
  if kill -0 "$gw_pid" 2>/dev/null; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$gw_pid" 2>/dev/null; then
      echo "run.sh: gateway did not stop within 10 s of SIGTERM; killing it" >&2
      kill -KILL "$gw_pid" 2>/dev/null || true
    fi
  fi
  wait "$gw_pid" 2>/dev/null
}
trap stop_gateway EXIT

for _ in $(seq 1 100); do
  n=$(grep -c 'event=listening' "$log" || true)
  [ "$n" -ge "$workers" ] && break
  if ! kill -0 "$gw_pid" 2>/dev/null; then
    echo "run.sh: the gateway exited during start-up:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done

echo "run.sh: nhgw pid $gw_pid on 127.0.0.1:$port, $workers workers${GW_CPUS:+ on CPUs $GW_CPUS}; log $log"
extra=()
[ "$scenario" = smoke ] && extra+=(--server-ca "$certs/server-ca.pem")
set +e
${bench_pin[@]+"${bench_pin[@]}"} "$NHBENCH_BIN" "$scenario" --target "127.0.0.1:$port" --gateway-pid "$gw_pid" --json "$json" \
  --ca-cert "$certs/device-ca.pem" --ca-key "$certs/device-ca.key" --pool-dir "$repo/build/bench-pool" \
  "${extra[@]}" "$@"
rc=$?
set -e

respawns=$(grep -c 'event=worker_died' "$log" || true)
alive=1
kill -0 "$gw_pid" 2>/dev/null || alive=0
stop_gateway
trap - EXIT
gw_status=$(grep -E 'event=master_exit' "$log" | tail -1 || true)

echo
echo "run.sh: results $json"
if [ "$scenario" != smoke ] && [ -f "$json" ] && command -v gnuplot >/dev/null 2>&1; then
  "$here/plot.sh" "$json" | sed 's/^/run.sh: plot /' || echo "run.sh: plotting failed" >&2
fi
echo "run.sh: gateway log $log"
echo "run.sh: gateway warn/error lines by event:"
grep -E 'level=(warn|error)' "$log" | sed -E 's/.*level=([a-z]+) event=([A-Za-z0-9_]+).*/  \1 \2/' | sort | uniq -c | sort -rn | head -20 || true
[ -n "$gw_status" ] && echo "run.sh: $gw_status"
if [ "$alive" = 0 ]; then
  echo "run.sh: the gateway had died before the end of the run" >&2
  rc=1
fi
if [ "$respawns" -gt 0 ]; then
  echo "run.sh: $respawns gateway worker(s) died during the run:" >&2
  grep 'event=worker_died' "$log" | head -5 >&2
  rc=1
fi
exit "$rc"
