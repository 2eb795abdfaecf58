#!/usr/bin/env bash
# nhgw, HAProxy and nginx side by side in one run: the same mutual-TLS configuration (server
# certificate and key from build/test-certs, device CA bundle, client certificate required), the
# same number of worker processes (threads for HAProxy), the same nhbench runs against each, the same
# /proc accounting, and the ratios.
#
#   bench/peers.sh                         # defaults below
#   SESSIONS=30000 HOLD=20s DURATION=15s REPEATS=2 bench/peers.sh
#
# Peers: nhgw, haproxy, nginx, and tlsfloor (bench/tlsfloor.c: BoringSSL's own mTLS handshake in an
# epoll loop with nothing around it, the same library build and configuration as nhgw; the floor
# any terminator on this BoringSSL pays on this machine, so nhgw's handshake rate over tlsfloor's is
# the share of the achievable rate nhgw reaches).
#
# Per peer, one after the other so each has the machine to itself: start it on a free 127.0.0.1 port
# from a private config under build/peers/ (no system service, no system config), run
#   nhbench tls-hold      --sessions $SESSIONS --hold $HOLD             memory per TLS session
#   nhbench tls-handshake --concurrency 32 --duration $DURATION         full mTLS handshakes per server CPU second
# with --gateway-pid set to the peer's master process (memory and CPU = sum over it and its
# children, threads included), stop it. The handshake runs are repeated REPEATS times, peers
# interleaved (nhgw, haproxy, nginx, nhgw, ...) because the host's speed drifts; `nhbench crypto`
# (BoringSSL's public-key cost of one handshake) is measured before and after.
#
# Each peer terminates TLS and then holds the authenticated connection idle without opening an
# upstream connection until the client sends a first byte (HAProxy: tcp-request inspect-delay;
# nginx: the preread phase with ssl_preread), which TLS-only clients never do: the figure is the
# terminator's own cost per TLS session, like nhgw's before the HTTP request. A deployed peer would
# also hold an upstream connection per device, and the application behind it its session.
#
# Environment: SESSIONS (30000), HOLD_WORKERS (worker processes of every peer in tls-hold, default
# SESSIONS / 9000 rounded up: HAProxy reserves two descriptors per connection it may accept, so one
# process holds < 10,000 under the 20,000-descriptor limit; HAProxy 2.6 has no nbproc, so that many
# single-threaded instances share the port), HOLD (20s), DURATION (15s), WARMUP (3s), CONCURRENCY
# (32), REPEATS (2), WORKERS (1), HOLD_RUN (1; 0 skips tls-hold), NGINX_PREREAD_BUFFER (nginx's preread_buffer_size, default 16k),
# SERVER_CPUS / BENCH_CPUS (taskset CPU lists for the servers and nhbench in the handshake runs;
# default 1 and 0 when WORKERS=1, unpinned otherwise), PEERS ("nhgw tlsfloor haproxy nginx"), TLS13=1 (also
# run tls-handshake with TLS 1.3), NHGW_BIN, NHBENCH_BIN, TLSFLOOR_BIN. HAProxy and nginx (with its stream module)
# are installed with apt-get when missing (as root). Results: build/bench-results/peers-<stamp>.json
# (every nhbench JSON next to it) and a table with ratios on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"

SESSIONS=${SESSIONS:-30000}
HOLD=${HOLD:-20s}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONCURRENCY=${CONCURRENCY:-32}
REPEATS=${REPEATS:-2}
WORKERS=${WORKERS:-1}
PEERS=${PEERS:-nhgw tlsfloor haproxy nginx}
# tls-hold: every peer gets the same number of processes, each holding at most 9,000 sessions
HAPROXY_MAXCONN=9500
HOLD_WORKERS=${HOLD_WORKERS:-$(( (SESSIONS + 8999) / 9000 ))}
NHGW_BIN=${NHGW_BIN:-$repo/build/nhgw}
NHBENCH_BIN=${NHBENCH_BIN:-$repo/build/nhbench}
TLSFLOOR_BIN=${TLSFLOOR_BIN:-$repo/build/tlsfloor}
RESULTS=${RESULTS:-$repo/build/bench-results}
if [ "$WORKERS" = 1 ]; then
  SERVER_CPUS=${SERVER_CPUS-1}
  BENCH_CPUS=${BENCH_CPUS-0}
else
  SERVER_CPUS=${SERVER_CPUS-}
  BENCH_CPUS=${BENCH_CPUS-}
fi

bins=("$NHGW_BIN" "$NHBENCH_BIN")
case " $PEERS " in *" tlsfloor "*) bins+=("$TLSFLOOR_BIN") ;; esac
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "peers.sh: $b is missing: build it first (make)" >&2; exit 2; }
done

# Bench-only packages: installed here rather than by ops/install-packages.sh. Debian's policy-rc.d
# (or its absence of an init system) keeps the packages' own services from starting; we never use them.
need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "peers.sh: missing ${need[*]}; as root: apt-get install -y --no-install-recommends ${need[*]}" >&2
    exit 2
  fi
  echo "peers.sh: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${need[@]}" >/dev/null
fi

certs=$repo/build/test-certs
"$repo/ops/devcerts.sh" "$certs" >/dev/null
stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=$repo/build/peers/$stamp
mkdir -p "$work" "$RESULTS"
# HAProxy wants certificate and key in one file
cat "$certs/server.pem" "$certs/server.key" >"$work/server-combined.pem"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
dur_s() { # 20s, 2m, 500ms -> seconds (at least 1)
  case $1 in
    *ms) echo 1 ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" | cut -d. -f1 ;;
    *) echo "$1" | cut -d. -f1 ;;
  esac
}
idle_s=$(( $(dur_s "$HOLD") * 2 + 600 )) # how long a peer keeps an idle TLS session

server_pid=
stop_server() {
  [ -n "$server_pid" ] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid" 2>/dev/null
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap stop_server EXIT

# start_server PEER PORT PIN WORKERS: starts the peer in the foreground of a background job; sets
# server_pid to its master process (the one nhbench samples with its children).
start_server() {
  local peer=$1 port=$2 pin=() log=$work/$1-$2.log nw=$4
  [ -n "$3" ] && pin=(taskset -c "$3")
  case $peer in
    nhgw)
      ${pin[@]+"${pin[@]}"} "$NHGW_BIN" --listen "127.0.0.1:$port" --workers "$nw" \
        --cert "$certs/server.pem" --key "$certs/server.key" --device-ca "$certs/device-cas.pem" \
        --ticket-key-file "$certs/ticket.key" \
        --accept-rate 1000000 --accept-burst 100000 --backlog 65535 \
        --handshake-timeout 30s --upgrade-timeout "${idle_s}s" --max-output 1MiB --log-level warn \
        >"$log" 2>&1 &
      ;;
    tlsfloor)
      ${pin[@]+"${pin[@]}"} "$TLSFLOOR_BIN" --listen "127.0.0.1:$port" --workers "$nw" \
        --cert "$certs/server.pem" --key "$certs/server.key" --device-ca "$certs/device-cas.pem" \
        >"$log" 2>&1 &
      ;;
    haproxy)
      cat >"$work/haproxy-$port.cfg" <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN
defaults
    mode tcp
    maxconn $HAPROXY_MAXCONN
    timeout connect 5s
    timeout client ${idle_s}s
    timeout server ${idle_s}s
frontend mtls
    bind 127.0.0.1:$port ssl crt $work/server-combined.pem ca-file $certs/device-cas.pem verify required backlog 65535
    # hold the authenticated connection without an upstream one until the client sends a byte
    tcp-request inspect-delay ${idle_s}s
    tcp-request content accept if { req.len gt 0 }
    default_backend app
backend app
    server app 127.0.0.1:9
EOF
      if [ "$nw" = 1 ]; then
        ${pin[@]+"${pin[@]}"} haproxy -db -f "$work/haproxy-$port.cfg" >"$log" 2>&1 &
      else
        # HAProxy 2.6 runs one process (nbproc is gone) that reserves two descriptors per maxconn,
        # so under the 20,000-descriptor limit one process holds < 10,000 sessions: run $nw
        # single-threaded instances on the port (SO_REUSEPORT, HAProxy's default), children of a
        # shell that nhbench samples as their master.
        # shellcheck disable=SC2016
        ${pin[@]+"${pin[@]}"} bash -c 'trap "kill \$(jobs -p) 2>/dev/null; wait; exit 0" TERM
          for _ in $(seq 1 "$1"); do haproxy -db -f "$2" & done; wait' peers-haproxy "$nw" \
          "$work/haproxy-$port.cfg" >"$log" 2>&1 &
      fi
      ;;
    nginx)
      mkdir -p "$work/nginx-$port"
      cat >"$work/nginx-$port/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes $nw;
worker_rlimit_nofile 20000;
pid $work/nginx-$port/nginx.pid;
error_log $work/nginx-$port/error.log warn;
events {
    worker_connections 19500;
}
stream {
    server {
        listen 127.0.0.1:$port ssl backlog=65535 reuseport;
        ssl_certificate $certs/server.pem;
        ssl_certificate_key $certs/server.key;
        ssl_client_certificate $certs/device-cas.pem;
        ssl_verify_client on;
        ssl_handshake_timeout 30s;
        # hold the authenticated connection without an upstream one until the client sends a byte
        ssl_preread on;
        preread_buffer_size ${NGINX_PREREAD_BUFFER:-16k};
        preread_timeout ${idle_s}s;
        proxy_pass 127.0.0.1:9;
    }
}
EOF
      ${pin[@]+"${pin[@]}"} nginx -p "$work/nginx-$port" -c "$work/nginx-$port/nginx.conf" -e stderr \
        -g 'daemon off; master_process on;' >"$log" 2>&1 &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "peers.sh: $peer exited during start-up:" >&2
      cat "$log" >&2
      exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      sleep 0.3 # let every worker get going
      return 0
    fi
    sleep 0.1
  done
  echo "peers.sh: $peer does not listen on $port" >&2
  exit 1
}

# bench PEER SCENARIO JSON PIN WORKERS [nhbench options]: one nhbench run against a fresh server.
bench() {
  local peer=$1 scenario=$2 json=$3 srv_pin=$4 nw=$5 bench_pin=()
  shift 5
  [ -n "$srv_pin" ] && [ -n "$BENCH_CPUS" ] && bench_pin=(taskset -c "$BENCH_CPUS")
  local port
  port=$(free_port)
  start_server "$peer" "$port" "$srv_pin" "$nw"
  echo "peers.sh: $peer pid $server_pid on 127.0.0.1:$port: $scenario $*"
  set +e
  ${bench_pin[@]+"${bench_pin[@]}"} "$NHBENCH_BIN" "$scenario" --target "127.0.0.1:$port" --gateway-pid "$server_pid" \
    --json "$json" --ca-cert "$certs/device-ca.pem" --ca-key "$certs/device-ca.key" \
    --pool-dir "$repo/build/bench-pool" --quiet --label "peers $peer" "$@" >"${json%.json}.txt" 2>&1
  local rc=$?
  set -e
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "peers.sh: $peer died during $scenario" >&2
    rc=1
  fi
  stop_server
  grep -E '^  (sessions|gateway|window|errors|FAIL|result)' "${json%.json}.txt" | sed 's/^/    /' || true
  [ "$rc" = 0 ] || echo "peers.sh: $peer $scenario failed (exit $rc): ${json%.json}.txt" >&2
  return 0
}

crypto() {
  local pin=()
  [ -n "$SERVER_CPUS" ] && pin=(taskset -c "$SERVER_CPUS")
  ${pin[@]+"${pin[@]}"} "$NHBENCH_BIN" crypto --json "$1" >/dev/null
}

out=$RESULTS/peers-$stamp
mkdir -p "$out"
echo "peers.sh: $PEERS; tls-hold with $HOLD_WORKERS worker process(es) each, tls-handshake with $WORKERS; results in $out"
crypto "$out/crypto-before.json"
for peer in $PEERS; do
  [ "${HOLD_RUN:-1}" = 1 ] || break
  bench "$peer" tls-hold "$out/$peer-tls-hold.json" "" "$HOLD_WORKERS" --sessions "$SESSIONS" --hold "$HOLD" \
    --workers $(( (SESSIONS + 14999) / 15000 ))
done
for rep in $(seq 1 "$REPEATS"); do
  for peer in $PEERS; do
    bench "$peer" tls-handshake "$out/$peer-tls-handshake-$rep.json" "$SERVER_CPUS" "$WORKERS" --workers 1 \
      --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP"
    if [ "${TLS13:-0}" = 1 ]; then
      bench "$peer" tls-handshake "$out/$peer-tls13-handshake-$rep.json" "$SERVER_CPUS" "$WORKERS" --workers 1 \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" --tls 1.3
    fi
  done
done
crypto "$out/crypto-after.json"

# Summary: per peer memory per session and handshakes per server CPU second (median over repeats),
# and nhgw's advantage as ratios.
python3 - "$out" "$PEERS" "$WORKERS" "$SESSIONS" "$out.json" <<'PY'
import glob, json, os, statistics, sys

out, peers, workers, sessions, dest = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

res = {"tool": "bench/peers.sh", "workers": workers, "sessions": sessions, "peers": {}, "crypto": {}}
for w in ("before", "after"):
    c = load(os.path.join(out, "crypto-%s.json" % w))
    if c:
        res["crypto"][w] = {"x25519": c["bound_per_core_s_x25519"], "p256": c["bound_per_core_s_p256"]}
for p in peers:
    r = {}
    h = load(os.path.join(out, p + "-tls-hold.json"))
    if h and h["runs"]:
        run = h["runs"][0]
        d = run["derived"]
        r["hold_pass"] = run["pass"]
        r["hold_sessions"] = d.get("sessions_ready")
        r["rss_bytes_per_session"] = d.get("gateway_rss_bytes_per_session")
        r["anon_bytes_per_session"] = d.get("gateway_anon_bytes_per_session")
        r["rss_kib_before"] = run["gateway"].get("before", {}).get("rss_kib")
        r["rss_kib_ramped"] = run["gateway"].get("ramped", {}).get("rss_kib")
        r["processes"] = run["gateway"].get("ramped", {}).get("procs")
        r["hold_errors"] = run["errors_total"]
    for tag, pat in (("tls12", "-tls-handshake-"), ("tls13", "-tls13-handshake-")):
        rates, cores, passes = [], [], []
        for f in sorted(glob.glob(os.path.join(out, p + pat + "*.json"))):
            j = load(f)
            if not j or not j["runs"]:
                continue
            d = j["runs"][0]["derived"]
            passes.append(j["runs"][0]["pass"])
            if d.get("handshakes_per_gateway_core_s"):
                rates.append(d["handshakes_per_gateway_core_s"])
                cores.append(d.get("gateway_cores", 0))
        if rates:
            r["handshakes_per_core_s_" + tag] = rates
            r["handshakes_per_core_s_%s_median" % tag] = statistics.median(rates)
            r["server_cores_busy_" + tag] = cores
            r["handshake_pass_" + tag] = all(passes)
    res["peers"][p] = r

ratios = {}
g = res["peers"].get("nhgw", {})
for p in peers:
    if p == "nhgw":
        continue
    q = res["peers"][p]
    x = {}
    if g.get("rss_bytes_per_session") and q.get("rss_bytes_per_session"):
        x["memory_per_session_peer_over_nhgw"] = q["rss_bytes_per_session"] / g["rss_bytes_per_session"]
    for tag in ("tls12", "tls13"):
        k = "handshakes_per_core_s_%s_median" % tag
        if g.get(k) and q.get(k):
            x["handshakes_per_core_nhgw_over_peer_" + tag] = g[k] / q[k]
    ratios[p] = x
res["ratios"] = ratios
with open(dest, "w") as f:
    json.dump(res, f, indent=2)

def fmt(v, f="%.0f"):
    return f % v if isinstance(v, (int, float)) else "-"

has13 = any("handshakes_per_core_s_tls13" in r for r in res["peers"].values())
print()
print("| peer | procs | tls-hold sessions | RSS / session | anon / session | RSS before -> after (MiB) | TLS 1.2 handshakes / server core-s (runs) | cores busy |%s" % (
    " TLS 1.3 (runs) |" if has13 else ""))
print("|---|---|---|---|---|---|---|---|%s" % ("---|" if has13 else ""))
for p in peers:
    r = res["peers"][p]
    runs = ", ".join(fmt(v) for v in r.get("handshakes_per_core_s_tls12", []))
    cb = ", ".join(fmt(v, "%.2f") for v in r.get("server_cores_busy_tls12", []))
    line = "| %s | %s | %s | %s B | %s B | %s -> %s | **%s** (%s) | %s |" % (
        p, fmt(r.get("processes"), "%s"), fmt(r.get("hold_sessions"), "%s"), fmt(r.get("rss_bytes_per_session")),
        fmt(r.get("anon_bytes_per_session")), fmt((r.get("rss_kib_before") or 0) / 1024, "%.1f"),
        fmt((r.get("rss_kib_ramped") or 0) / 1024, "%.1f"), fmt(r.get("handshakes_per_core_s_tls12_median")), runs, cb)
    if "handshakes_per_core_s_tls13" in r:
        line += " %s (%s) |" % (fmt(r.get("handshakes_per_core_s_tls13_median")),
                                 ", ".join(fmt(v) for v in r["handshakes_per_core_s_tls13"]))
    print(line)
print()
for p, x in ratios.items():
    parts = []
    if "memory_per_session_peer_over_nhgw" in x:
        parts.append("memory per TLS session %.2fx nhgw's" % x["memory_per_session_peer_over_nhgw"])
    if "handshakes_per_core_nhgw_over_peer_tls12" in x:
        parts.append("nhgw does %.2fx its TLS 1.2 handshakes per core" % x["handshakes_per_core_nhgw_over_peer_tls12"])
    if "handshakes_per_core_nhgw_over_peer_tls13" in x:
        parts.append("%.2fx its TLS 1.3 handshakes per core" % x["handshakes_per_core_nhgw_over_peer_tls13"])
    print("%s: %s" % (p, "; ".join(parts) if parts else "no comparable figures"))
c = res["crypto"]
if c:
    print("crypto bound (BoringSSL, X25519, per core-s): before %s, after %s" % (
        fmt(c.get("before", {}).get("x25519")), fmt(c.get("after", {}).get("x25519"))))
print("summary: " + dest)
PY
