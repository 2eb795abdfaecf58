#!/usr/bin/env bash
# Run one nhbench scenario against a gateway this script starts and stops itself.
#
#   bench/run.sh SCENARIO [nhbench options...]
#   bench/run.sh smoke                       # the C client's end-to-end check (what `make test` runs)
#   bench/run.sh hold --sessions 50000 --hold 60s
#   bench/run.sh handshake --concurrency 32 --duration 20s [--resume]
#   bench/run.sh storm --sessions 100000 [--backoff link|none] [--resume]
#   LINK=nats bench/run.sh hold --sessions 15000 --rate 1000      # the whole stack (bench/run-stack.sh)
#   LINK=nats bench/run.sh fanout --sessions 10000 --fanout topic,scan
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
#
# LINK=nats: the whole stack on loopback instead of a standalone gateway: nats-server (with its
# monitoring port), redis-server (no persistence), build/nhplatform (--auto-register) and the
# gateway with --link nats --nats-url ... --redis ... --gateway-id bench; all started fresh for
# this run and stopped afterwards. STACK_CPUS pins nats-server, redis-server and the platform;
# PF_ARGS adds platform options, NHPLATFORM_BIN picks it. The platform's, nats-server's and
# redis-server's CPU time (/proc) and the link messages (nats-server /connz, the gateway's
# /metrics when it has them) are taken right before nhbench starts and 2 s after it ends and
# written to <scenario>-<stamp>-stack.json: platform calls per platform CPU second.
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
NHPLATFORM_BIN=${NHPLATFORM_BIN:-$repo/build/nhplatform}
RESULTS=${RESULTS:-$repo/build/bench-results}
LINK=${LINK:-local}
case $LINK in local|nats) ;; *) echo "run.sh: LINK must be local or nats" >&2; exit 2 ;; esac
need_bins=("$NHGW_BIN" "$NHBENCH_BIN")
[ "$LINK" = nats ] && need_bins+=("$NHPLATFORM_BIN")
for b in "${need_bins[@]}"; do
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
mkdir -p "$RESULTS"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
[ "$LINK" = nats ] && stamp=$stamp-nats
log=$RESULTS/$scenario-$stamp-nhgw.log
json=$RESULTS/$scenario-$stamp.json
if { [ "$scenario" = fanout ] || [ "$scenario" = console ]; } && [ "$LINK" != nats ]; then
  echo "run.sh: $scenario needs the platform: LINK=nats bench/run.sh $scenario ... (or bench/run-stack.sh $scenario ...)" >&2
  exit 2
fi

gw_args=(--listen "127.0.0.1:$port" --workers "$workers"
  --cert "$certs/server.pem" --key "$certs/server.key" --device-ca "$certs/device-cas.pem"
  --ticket-key-file "$certs/ticket.key"
  --accept-rate 1000000 --accept-burst 100000 --backlog 65535
  --handshake-timeout 30s --upgrade-timeout "$upgrade_timeout" --max-output 1MiB
  --log-level info)
# shellcheck disable=SC2206
[ -n "${GW_ARGS:-}" ] && gw_args+=($GW_ARGS)

# A gateway with an admin endpoint (/metrics) gets a free port for it, so runs do not collide.
admin_port=
if "$NHGW_BIN" --help 2>&1 | grep -q -- '--admin-listen'; then
  admin_port=$(free_port)
  gw_args+=(--admin-listen "127.0.0.1:$admin_port")
fi

gw_pin=()
bench_pin=()
stack_pin=()
[ -n "${GW_CPUS:-}" ] && gw_pin=(taskset -c "$GW_CPUS")
[ -n "${BENCH_CPUS:-}" ] && bench_pin=(taskset -c "$BENCH_CPUS")
[ -n "${STACK_CPUS:-}" ] && stack_pin=(taskset -c "$STACK_CPUS")

# ---- LINK=nats: nats-server, redis-server, the platform ----
nats_pid= redis_pid= pf_pid=
stop_pid() { # pid name: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: $2 did not stop within 10 s of SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}
stop_stack() {
  stop_pid "$pf_pid" nhplatform
  stop_pid "$nats_pid" nats-server
  stop_pid "$redis_pid" redis-server
  pf_pid= nats_pid= redis_pid=
}
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid name
  for _ in $(seq 1 100); do
    tcp_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "run.sh: $3 exited during start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "run.sh: $3 is not listening on $1 after 10 s" >&2
  return 1
}
nats_url=
if [ "$LINK" = nats ]; then
  trap stop_stack EXIT
  nats_port=$(free_port)
  nats_mon=$(free_port)
  redis_port=$(free_port)
  nats_url=nats://127.0.0.1:$nats_port
  nats_log=$RESULTS/$scenario-$stamp-nats.log
  redis_log=$RESULTS/$scenario-$stamp-redis.log
  pf_log=$RESULTS/$scenario-$stamp-platform.log
  ${stack_pin[@]+"${stack_pin[@]}"} nats-server -a 127.0.0.1 -p "$nats_port" -m "$nats_mon" >"$nats_log" 2>&1 &
  nats_pid=$!
  ${stack_pin[@]+"${stack_pin[@]}"} redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --protected-mode no --maxclients 10000 >"$redis_log" 2>&1 &
  redis_pid=$!
  wait_port "$nats_port" "$nats_pid" nats-server
  wait_port "$redis_port" "$redis_pid" redis-server
  # shellcheck disable=SC2206
  pf_args=(--nats "$nats_url" --redis "127.0.0.1:$redis_port" --auto-register --log-level info ${PF_ARGS:-})
  ${stack_pin[@]+"${stack_pin[@]}"} "$NHPLATFORM_BIN" "${pf_args[@]}" >"$pf_log" 2>&1 &
  pf_pid=$!
  nhctl=$repo/build/nhctl
  for i in $(seq 1 100); do
    if [ -x "$nhctl" ]; then
      "$nhctl" deployment list --nats "$nats_url" --timeout 500ms >/dev/null 2>&1 && break
    else
      grep -q 'event=nats_connected' "$pf_log" && sleep 0.5 && break
    fi
    kill -0 "$pf_pid" 2>/dev/null || { echo "run.sh: nhplatform exited during start-up:" >&2; cat "$pf_log" >&2; exit 1; }
    [ "$i" = 100 ] && { echo "run.sh: nhplatform did not answer within 10 s" >&2; exit 1; }
    sleep 0.1
  done
  gw_args+=(--link nats --nats-url "$nats_url" --redis "127.0.0.1:$redis_port" --gateway-id bench)
  echo "run.sh: stack: nats-server pid $nats_pid ($nats_url, monitor $nats_mon), redis-server pid $redis_pid" \
    "(127.0.0.1:$redis_port), nhplatform pid $pf_pid${STACK_CPUS:+, on CPUs $STACK_CPUS}"
fi

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
trap 'stop_gateway; stop_stack' EXIT

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
if [ "$LINK" = nats ]; then
  for _ in $(seq 1 100); do
    n=$(grep -c 'event=nats_connected' "$log" || true)
    [ "$n" -ge "$workers" ] && break
    sleep 0.1
  done
  if [ "$(grep -c 'event=nats_connected' "$log" || true)" -lt "$workers" ]; then
    echo "run.sh: the gateway's workers did not all connect to NATS within 10 s" >&2
    exit 1
  fi
fi

echo "run.sh: nhgw pid $gw_pid on 127.0.0.1:$port, $workers workers${GW_CPUS:+ on CPUs $GW_CPUS}; log $log"
extra=()
[ "$scenario" = smoke ] && extra+=(--server-ca "$certs/server-ca.pem")
case $scenario in fanout|console) extra+=(--nats "$nats_url") ;; esac
stack_json=$RESULTS/$scenario-$stamp-stack.json
stack_snap() { # label: CPU ticks of the stack's processes, NATS per-connection counts, gateway metrics
  [ "$LINK" = nats ] || return 0
  python3 "$here/stackstat.py" snap "$1" "$stack_json.tmp" --pid platform="$pf_pid" --pid nats-server="$nats_pid" \
    --pid redis-server="$redis_pid" --pid gateway-tree="$gw_pid" --nats-monitor "127.0.0.1:$nats_mon" \
    ${admin_port:+--metrics "127.0.0.1:$admin_port"} || echo "run.sh: stack sample failed" >&2
}
stack_snap before
set +e
${bench_pin[@]+"${bench_pin[@]}"} "$NHBENCH_BIN" "$scenario" --target "127.0.0.1:$port" --gateway-pid "$gw_pid" --json "$json" \
  --ca-cert "$certs/device-ca.pem" --ca-key "$certs/device-ca.key" --pool-dir "$repo/build/bench-pool" \
  "${extra[@]}" "$@"
rc=$?
set -e
if [ "$LINK" = nats ]; then
  sleep 2 # the disconnects of nhbench's last sessions reach the platform
  stack_snap after
  python3 "$here/stackstat.py" report "$stack_json.tmp" "$stack_json" --bench-json "$json" || echo "run.sh: stack report failed" >&2
  rm -f "$stack_json.tmp"
fi

respawns=$(grep -c 'event=worker_died' "$log" || true)
alive=1
kill -0 "$gw_pid" 2>/dev/null || alive=0
pf_alive=1
[ -n "$pf_pid" ] && ! kill -0 "$pf_pid" 2>/dev/null && pf_alive=0
stop_gateway
stop_stack
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
if [ "$LINK" = nats ]; then
  echo "run.sh: platform log $pf_log; warn/error lines by event:"
  grep -E 'level=(warn|error)' "$pf_log" | sed -E 's/.*level=([a-z]+) event=([A-Za-z0-9_]+).*/  \1 \2/' | sort | uniq -c | sort -rn | head -20 || true
  [ -f "$stack_json" ] && echo "run.sh: stack figures $stack_json"
  if [ "$pf_alive" = 0 ]; then
    echo "run.sh: the platform had died before the end of the run" >&2
    rc=1
  fi
fi
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
