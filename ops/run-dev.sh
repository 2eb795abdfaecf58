#!/usr/bin/env bash
# `make run`: start the gateway on loopback with the generated development certificates and the
# in-process default link policy, and print how to connect a test device. Ctrl-C stops it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${BUILD:-$repo/build}
certs=$B/dev-certs
listen=${NHGW_LISTEN:-127.0.0.1:4443}
port=${listen##*:}

# the example device below uses the Phoenix client installed for the integration tests
if [ ! -d "$repo/tests/integration/node_modules/phoenix" ]; then
    (cd "$repo/tests/integration" && npm ci --no-audit --no-fund --loglevel=error) || true
fi

cat <<MSG
nhgw dev stack
  device port   wss://localhost:$port/socket/websocket?vsn=2.0.0  (JSON; vsn=3.0.0 for msgpack)
  certificates  $certs  (device CA: device-ca.pem, server CA: server-ca.pem)
  link policy   in-process default: any device whose certificate chains to the device CA

Connect a test device (device-1) by hand:
  openssl s_client -quiet -connect localhost:$port -cert $certs/device-1.pem \\
      -key $certs/device-1.key -CAfile $certs/server-ca.pem
  then type:  GET /socket/websocket?vsn=2.0.0 HTTP/1.1
              Host: localhost
              Upgrade: websocket
              Connection: Upgrade
              Sec-WebSocket-Version: 13
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
              (empty line)
Or with the Phoenix JavaScript client: node ops/dev-device.mjs (joins 'device', heartbeats).

MSG
exec "$B/nhgw" --listen "$listen" --cert "$certs/server.pem" --key "$certs/server.key" \
    --cert "$certs/server-rsa.pem" --key "$certs/server-rsa.key" \
    --device-ca "$certs/device-cas.pem" --ticket-key-file "$certs/ticket.key" "$@"
