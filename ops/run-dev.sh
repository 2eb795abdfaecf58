#!/usr/bin/env bash
# `make run`: the whole stack on loopback — nats-server, redis-server, the reference platform
# (build/nhplatform) and the gateway (--link nats, registry in Redis) with the generated
# development certificates — and how to connect a device and push it an update. Ctrl-C stops all.
# NHGW_STANDALONE=1 starts only the gateway with its in-process default link policy.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${BUILD:-$repo/build}
certs=$B/dev-certs
listen=${NHGW_LISTEN:-127.0.0.1:4443}
port=${listen##*:}
nats_port=${NHGW_DEV_NATS_PORT:-4222}
redis_port=${NHGW_DEV_REDIS_PORT:-6379}
run=$B/dev-run
mkdir -p "$run"

# the example device below uses the Phoenix client installed for the integration tests
if [ ! -d "$repo/tests/integration/node_modules/phoenix" ]; then
    (cd "$repo/tests/integration" && npm ci --no-audit --no-fund --loglevel=error) || true
fi

gateway_args=(--listen "$listen" --cert "$certs/server.pem" --key "$certs/server.key"
    --cert "$certs/server-rsa.pem" --key "$certs/server-rsa.key"
    --device-ca "$certs/device-cas.pem" --ticket-key-file "$certs/ticket.key")

if [ "${NHGW_STANDALONE:-0}" = 1 ]; then
    echo "nhgw standalone: wss://localhost:$port/socket/websocket (in-process default link policy)"
    exec "$B/nhgw" "${gateway_args[@]}" "$@"
fi

pids=()
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT INT TERM

wait_port() { # port name
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "run-dev: $2 did not come up on port $1 (see $run/$2.log)" >&2
    exit 1
}

nats-server -a 127.0.0.1 -p "$nats_port" > "$run/nats.log" 2>&1 &
pids+=($!)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no > "$run/redis.log" 2>&1 &
pids+=($!)
wait_port "$nats_port" nats
wait_port "$redis_port" redis

nats_url=nats://127.0.0.1:$nats_port
"$B/nhplatform" --nats "$nats_url" --redis "127.0.0.1:$redis_port" --shared-secrets \
    --extensions health,geo > "$run/platform.log" 2>&1 &
pids+=($!)

cat <<MSG
nhgw dev stack (logs in $run/)
  nats-server   $nats_url
  redis-server  127.0.0.1:$redis_port   (session registry: nh:dev:<device>)
  platform      build/nhplatform, auto-registers devices whose certificate chains to the dev CA
  gateway       wss://localhost:$port/socket/websocket?vsn=2.0.0  (JSON; vsn=3.0.0 for msgpack)
  certificates  $certs  (device CA: device-ca.pem, server CA: server-ca.pem)

Connect a device (device-1) with the Phoenix JavaScript client, in another terminal:
  node ops/dev-device.mjs                    # joins 'device', heartbeats, prints what it receives
See it online and push it an update:
  build/nhctl devices
  build/nhctl deployment create --name demo --firmware-uuid 7b2b1e2a-0000-4000-8000-000000000001 \\
      --version 1.0.1 --url https://firmware.example/fw.fw
  build/nhctl events                         # watch device events
Shared-secret devices: build/nhctl product-key create, then build/nhctl sign-shared-secret --help.

MSG
"$B/nhgw" "${gateway_args[@]}" --link nats --nats-url "$nats_url" --redis "127.0.0.1:$redis_port" "$@" &
pids+=($!)
wait -n "${pids[@]}"
echo "run-dev: a component exited; stopping the stack" >&2
