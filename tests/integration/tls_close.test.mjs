// How a TLS session ends, seen on the wire: the client's TLS stack runs over a tap that parses
// the TLS records the gateway sends. A device that closes (close_notify, then TCP FIN) gets no
// close_notify back, and in TLS 1.3 no session tickets either (BoringSSL holds them until the
// server's first write, and a departing peer has no use for them); nginx behaves the same
// (no_send_shutdown once the peer has closed). When the gateway is the one that closes, it still
// sends its close_notify before the FIN.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { after, before, describe } from 'node:test';
import { device } from './lib/certs.mjs';
import { HOST, sleep, startGateway, gwTest, withTimeout } from './lib/gateway.mjs';
import { upgradeRequest } from './lib/rawws.mjs';
import { assertServes } from './lib/phx.mjs';

const ALERT = 21;

/**
 * A TLS client over a tapped TCP connection. `records` lists every TLS record the server sent
 * ({type, len, at}: `at` counts the client's marks before it arrived); `ended` resolves on the
 * server's FIN or a reset.
 */
async function tappedTls(port, tlsOpts) {
  const tcp = net.connect({ host: HOST, port });
  await withTimeout(new Promise((res, rej) => tcp.once('connect', res).once('error', rej)), 5000, 'TCP connect');
  const tap = { records: [], marks: 0, pending: Buffer.alloc(0) };
  const duplex = new Duplex({
    read() {},
    write(chunk, _enc, cb) {
      tcp.write(chunk, cb);
    },
    final(cb) {
      tcp.end();
      cb();
    },
  });
  tap.ended = new Promise((resolve) => {
    tcp.on('data', (d) => {
      tap.pending = Buffer.concat([tap.pending, d]);
      while (tap.pending.length >= 5) {
        const len = tap.pending.readUInt16BE(3);
        if (tap.pending.length < 5 + len) break;
        tap.records.push({ type: tap.pending[0], len, at: tap.marks });
        tap.pending = tap.pending.subarray(5 + len);
      }
      duplex.push(d);
    });
    tcp.on('end', () => {
      duplex.push(null);
      resolve('fin');
    });
    tcp.on('error', () => resolve('error'));
    tcp.on('close', () => resolve('close'));
  });
  const sock = tls.connect({ socket: duplex, servername: 'localhost', ...device('device-1'), ...tlsOpts });
  sock.on('error', () => {});
  await withTimeout(new Promise((res, rej) => sock.once('secureConnect', res).once('error', rej)), 5000, 'TLS handshake');
  return { tap, sock, tcp };
}

const VERSIONS = [
  ['TLS 1.2', { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }],
  ['TLS 1.3', { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' }],
];

describe('tls close', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    await gw?.stop();
  });

  for (const [name, v] of VERSIONS) {
    it(`${name}: a client that closes gets nothing back, only the FIN`, async () => {
      const { tap, sock } = await tappedTls(gw.port, v);
      await sleep(150); // whatever the server sent after the handshake has arrived
      const handshakeRecords = tap.records.length;
      tap.marks++;
      sock.end(); // close_notify, then the tap's final() sends the FIN
      const how = await withTimeout(tap.ended, 5000, 'the gateway closing');
      assert.equal(how, 'fin', 'an orderly close, not a reset');
      const late = tap.records.filter((r) => r.at === 1);
      assert.deepEqual(late, [], `records sent after the client's close_notify: ${JSON.stringify(late)}`);
      assert.ok(handshakeRecords >= 2, 'the handshake flights were seen by the tap');
      await assertServes(gw.port);
    });
  }

  it('TLS 1.2: when the gateway closes (a refused upgrade), its close_notify precedes the FIN', async () => {
    const { tap, sock } = await tappedTls(gw.port, VERSIONS[0][1]);
    await sleep(50);
    tap.marks++;
    sock.write(upgradeRequest({ path: '/socket/websocket?vsn=9.9.9' }).text);
    let body = '';
    sock.on('data', (d) => (body += d));
    const how = await withTimeout(tap.ended, 5000, 'the gateway closing');
    assert.equal(how, 'fin');
    assert.match(body, /^HTTP\/1\.1 403 /);
    const late = tap.records.filter((r) => r.at === 1);
    assert.ok(late.length >= 2, `the response and an alert: ${JSON.stringify(late)}`);
    const last = late[late.length - 1];
    // an encrypted close_notify: 2 bytes of alert sealed with AES-GCM (explicit nonce + tag) or ChaCha20
    assert.equal(last.type, ALERT, `last record before the FIN is an alert: ${JSON.stringify(late)}`);
    assert.ok(last.len === 26 || last.len === 18, `alert record length ${last.len}`);
  });
});
