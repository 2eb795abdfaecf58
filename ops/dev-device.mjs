// A development device: connects to the dev stack with the official Phoenix JavaScript client
// (installed for the integration tests), joins `device` with a nerves_hub_link-style payload,
// heartbeats, and prints every message it receives. Usage: node ops/dev-device.mjs [device-N] [port]
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(repo, 'tests/integration/package.json'));
const { Socket } = require('phoenix');
const WebSocket = require('ws');

const name = process.argv[2] || 'device-1';
const port = process.argv[3] || '4443';
const certs = join(repo, 'build/dev-certs');
const tlsOpts = {
  cert: readFileSync(join(certs, `${name}.pem`)),
  key: readFileSync(join(certs, `${name}.key`)),
  ca: readFileSync(join(certs, 'server-ca.pem')),
  perMessageDeflate: true,
};
class TlsWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, tlsOpts);
  }
}
const socket = new Socket(`wss://localhost:${port}/socket`, { transport: TlsWebSocket, heartbeatIntervalMs: 30000 });
socket.onOpen(() => console.log(`${name}: connected`));
socket.onError((e) => console.log(`${name}: socket error`, e?.message ?? ''));
socket.onMessage((m) => console.log(`${name}: <-`, JSON.stringify(m)));
socket.connect();
const channel = socket.channel('device', {
  nerves_fw_uuid: '8a8b902c-d1a9-58aa-6111-04ab57c2f2a8', nerves_fw_product: 'my_product',
  nerves_fw_version: '1.0.0', nerves_fw_architecture: 'arm', nerves_fw_platform: 'rpi4',
  device_api_version: '2.3.0', console_version: '2.0.0', currently_downloading_uuid: null,
  meta: { firmware_auto_revert_detected: false, firmware_validated: true },
});
channel.join()
  .receive('ok', (r) => console.log(`${name}: joined device`, JSON.stringify(r)))
  .receive('error', (r) => console.log(`${name}: join refused`, JSON.stringify(r)));
