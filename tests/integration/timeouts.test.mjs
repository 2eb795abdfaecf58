// Timeouts with small values: TLS handshake (--handshake-timeout 1s), upgrade request
// (--upgrade-timeout 1s, a deadline for the whole head, so a slow drip does not extend it) and
// idle (--idle-timeout 2s: no inbound frame → close 1002, device-protocol §1.5; any frame,
// heartbeat or ping, keeps the socket open).
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { startGateway, gwTest, sleep } from './lib/gateway.mjs';
import { connectTcp, connectTls, wsConnect, rawHeartbeat, upgradeRequest } from './lib/rawws.mjs';
import { assertServes, connectPhx, DEVICE_JOIN } from './lib/phx.mjs';

describe('timeouts', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({
      args: ['--handshake-timeout', '1s', '--upgrade-timeout', '1s', '--idle-timeout', '2s'],
    });
  });
  after(async () => {
    await gw?.stop();
  });

  /** Time until the server closes `conn` (ms), asserting it is within [minMs, maxMs]. */
  async function closedWithin(conn, minMs, maxMs, t0 = Date.now()) {
    const ended = await conn.waitEnd(maxMs + 500);
    const dt = Date.now() - t0;
    conn.destroy();
    assert.ok(ended, `still open after ${dt} ms`);
    assert.ok(dt >= minMs, `closed after ${dt} ms, before the timeout (${minMs} ms)`);
    assert.ok(dt <= maxMs, `closed after ${dt} ms, want ≤ ${maxMs} ms`);
    return dt;
  }

  it('a TCP connection that sends nothing is closed by the handshake timeout', async () => {
    const t0 = Date.now();
    const conn = await connectTcp(gw.port);
    await closedWithin(conn, 700, 3000, t0);
  });

  it('a TLS handshake that stalls after a partial ClientHello is closed', async () => {
    const t0 = Date.now();
    const conn = await connectTcp(gw.port);
    conn.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])); // record + handshake header only
    await closedWithin(conn, 700, 3000, t0);
  });

  it('TLS done but no request at all is closed by the upgrade timeout', async () => {
    const conn = await connectTls(gw.port, 'device-1');
    await closedWithin(conn, 700, 3000);
  });

  it('a partial request head that is never finished is closed by the upgrade timeout', async () => {
    const conn = await connectTls(gw.port, 'device-1');
    const t0 = Date.now();
    conn.write('GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: localhost\r\n');
    await closedWithin(conn, 700, 3000, t0);
  });

  it('a head dripped byte by byte does not extend the upgrade deadline', async () => {
    const conn = await connectTls(gw.port, 'device-1');
    const t0 = Date.now();
    const text = upgradeRequest({ headers: [['X-Pad', 'p'.repeat(200)]] }).text;
    let i = 0;
    const drip = setInterval(() => {
      if (conn.ended || i >= text.length - 2) return;
      conn.write(text[i++]);
    }, 100);
    try {
      await closedWithin(conn, 700, 3000, t0);
    } finally {
      clearInterval(drip);
    }
  });

  it('a complete request just before the deadline is still served', async () => {
    const conn = await connectTls(gw.port, 'device-1');
    await sleep(500);
    conn.write(upgradeRequest({}).text);
    const res = await conn.readResponse(3000);
    assert.equal(res.status, 101);
    // Once upgraded, the upgrade timeout no longer applies (the idle timeout is 2 s).
    await sleep(1000);
    assert.equal(conn.ended, false);
    assert.deepEqual(await rawHeartbeat(conn, '1'), [null, '1', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
    conn.destroy();
  });

  it('an upgraded socket that sends nothing is closed with 1002 by the idle timeout', async () => {
    const conn = await wsConnect(gw.port);
    const t0 = Date.now();
    const c = await conn.expectClose(4500);
    const dt = Date.now() - t0;
    conn.destroy();
    assert.equal(c.code, 1002);
    assert.ok(dt >= 1500 && dt <= 4000, `closed after ${dt} ms, want about 2000`);
  });

  it('a joined but silent device is closed with 1002 too', async () => {
    const conn = await wsConnect(gw.port);
    conn.sendJson(['1', '1', 'device', 'phx_join', DEVICE_JOIN]);
    assert.equal((await conn.recvJson())[4].status, 'ok');
    const c = await conn.expectClose(4500);
    conn.destroy();
    assert.equal(c.code, 1002);
  });

  it('heartbeats every 500 ms keep a socket open; so do WebSocket pings', async () => {
    // distinct devices: a device's newer connection would close its older one
    const hb = await wsConnect(gw.port, { device: 'device-1' });
    const pinger = await wsConnect(gw.port, { device: 'device-2' });
    const idle = await wsConnect(gw.port, { device: 'device-3' });
    try {
      for (let i = 0; i < 9; i++) {
        await sleep(500);
        assert.deepEqual(await rawHeartbeat(hb, String(i)), [null, String(i), 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
        pinger.ping(Buffer.from(String(i)));
        const pong = await pinger.readMessage(1000);
        assert.equal(pong.type, 'pong');
      }
      // 4.5 s: well past the idle timeout for the one that stayed silent.
      const m = await idle.readMessage(500);
      assert.equal(m.type, 'close', 'the silent socket was closed');
      assert.equal(m.code, 1002);
      assert.equal(hb.ended, false);
      assert.equal(pinger.ended, false);
    } finally {
      hb.destroy();
      pinger.destroy();
      idle.destroy();
    }
  });

  it('the official client with its heartbeat below the idle timeout stays connected', async () => {
    const c = await connectPhx(gw.port, { heartbeatIntervalMs: 500 });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      await sleep(3500);
      assert.equal(c.closed, false);
    } finally {
      await c.disconnect();
    }
  });

  it('still serves a good Phoenix client after all of the above', async () => {
    await assertServes(gw.port);
  });
});
