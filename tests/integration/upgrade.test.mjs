// The HTTP/1.1 upgrade request: paths, vsn selection, the order of checks and the exact
// responses of device-protocol.md §1.3/§1.6, permessage-deflate negotiation (§1.4), header
// limits, and the Date header on every non-101 response.
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { startGateway, gwTest } from './lib/gateway.mjs';
import { acceptKey, attemptUpgrade, upgrade, dateProblem } from './lib/rawws.mjs';
import { assertServes } from './lib/phx.mjs';

const NO_AUTH_REASON = 'no certificate pair or shared secrets connection settings were provided';
// A well-formed NH1 shared-secret header set (device-protocol §2.3) that cannot verify.
const NH_HEADERS = [
  ['x-nh-alg', 'NH1-HMAC-sha256-1000-32'],
  ['x-nh-key', 'nhp_ExampleProductKey00000000000000000000000000'],
  ['x-nh-time', String(Math.floor(Date.now() / 1000))],
  ['x-nh-signature', 'SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg'],
];

/** Assert a non-101 response: status, Date header, and optionally the exact body. */
function assertRejected(res, status, body) {
  assert.equal(res.status, status, `status (body: ${JSON.stringify(res.body.toString())})`);
  assert.equal(dateProblem(res), null);
  assert.equal(res.headers['sec-websocket-accept'], undefined, 'no Sec-WebSocket-Accept on a rejection');
  if (body !== undefined) assert.equal(res.body.toString('utf8'), body, 'body');
}

describe('upgrade', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ args: ['--max-header-bytes', '4KiB'] });
  });
  after(async () => {
    await gw?.stop();
  });

  async function expect(opts, status, body) {
    const { conn, res } = await upgrade(gw.port, opts);
    conn.destroy();
    if (status === 101) {
      assert.equal(res.status, 101, `want 101, got ${res.status} ${JSON.stringify(res.body.toString())}`);
    } else {
      assertRejected(res, status, body);
    }
    return res;
  }

  it('both socket paths upgrade with vsn 2.0.0 and 3.0.0', async () => {
    for (const path of ['/socket/websocket', '/device-socket/websocket']) {
      for (const vsn of ['2.0.0', '3.0.0']) {
        const { conn, res, key } = await upgrade(gw.port, { path: `${path}?vsn=${vsn}` });
        conn.destroy();
        assert.equal(res.status, 101, `${path} vsn ${vsn}`);
        assert.equal(res.headers.upgrade?.toLowerCase(), 'websocket');
        assert.match(res.headers.connection ?? '', /\bupgrade\b/i);
        assert.equal(res.headers['sec-websocket-accept'], acceptKey(key));
        assert.equal(res.headers['sec-websocket-protocol'], undefined, 'no subprotocol');
      }
    }
  });

  it('vsn matching ~> 2.0.0 / ~> 3.0.0 upgrades, wherever it is in the query', async () => {
    for (const q of ['vsn=2.0.5', 'vsn=3.0.1', 'vsn=2.0.0&foo=bar', 'foo=bar&vsn=2.0.0']) {
      await expect({ path: `/socket/websocket?${q}` }, 101);
    }
  });

  it('a missing, unsupported or garbage vsn is 403 with an empty body', async () => {
    const paths = [
      '/socket/websocket',
      '/socket/websocket?foo=bar',
      '/socket/websocket?vsn=',
      '/socket/websocket?vsn=1.0.0',
      '/socket/websocket?vsn=2.1.0',
      '/socket/websocket?vsn=3.1.0',
      '/socket/websocket?vsn=2.0',
      '/socket/websocket?vsn=garbage',
      '/device-socket/websocket?vsn=4.0.0',
    ];
    for (const path of paths) await expect({ path }, 403, '');
  });

  it('a method other than GET is 400 (checked first)', async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      await expect({ method }, 400);
      await expect({ method, device: null, path: '/socket/websocket?vsn=9' }, 400);
    }
  });

  it('the /status paths answer 200 "Hello, Friend!" to anyone, as NervesHub does for load balancers', async () => {
    for (const path of ['/status/alive', '/status/_health', '/status/health', '/status/healthy', '//status/alive/']) {
      for (const device of ['device-1', null]) {
        const { conn, res } = await upgrade(gw.port, { path, device });
        conn.destroy();
        assert.equal(res.status, 200, `${path} (${device ?? 'no certificate'}): ${res.status}`);
        assert.equal(res.body.toString(), 'Hello, Friend!');
        assert.ok(res.headers.date, 'Date');
        assert.equal(res.headers['nh-connection-error-reason'], undefined);
      }
    }
    for (const path of ['/status', '/status/alive/x', '/status/ready']) await expect({ path, device: null }, 404);
    await expect({ path: '/status/alive', method: 'POST', device: null }, 404);
    await assertServes(gw.port);
  });

  it('an unknown path is 404 with a short body', async () => {
    for (const path of ['/', '/foo', '/socket', '/socket/longpoll?vsn=2.0.0', '/socket/websocket/x?vsn=2.0.0']) {
      const res = await expect({ path }, 404);
      assert.ok(res.body.length <= 256, `short body, got ${res.body.length} bytes`);
      await expect({ path, device: null }, 404);
    }
  });

  it('no client certificate and no x-* header is 401 with the no-auth reason', async () => {
    const res = await expect({ device: null }, 401, NO_AUTH_REASON);
    assert.equal(res.headers['nh-connection-error-reason'], NO_AUTH_REASON);
    await expect({ device: null, path: '/device-socket/websocket?vsn=3.0.0' }, 401, NO_AUTH_REASON);
  });

  it('no client certificate but x-* headers is 401 with an empty body (shared secrets not accepted)', async () => {
    const res = await expect({ device: null, headers: NH_HEADERS }, 401, '');
    assert.equal(res.headers['nh-connection-error-reason'], undefined);
    // Any x-* header selects shared-secret mode (device-protocol §2.1), even an unrelated one.
    await expect({ device: null, headers: [['X-Forwarded-For', '10.0.0.1']] }, 401, '');
  });

  it('a client certificate wins over x-nh-* headers', async () => {
    await expect({ headers: NH_HEADERS }, 101);
  });

  it('checks run in the order of device-protocol §1.6', async () => {
    // vsn (3) before auth (4)
    await expect({ device: null, path: '/socket/websocket?vsn=2.1.0' }, 403, '');
    // method (1) before vsn (3)
    await expect({ method: 'POST', path: '/socket/websocket?vsn=2.1.0' }, 400);
    // auth (4) before upgrade validation (5)
    await expect({ device: null, omit: ['sec-websocket-key'] }, 401, NO_AUTH_REASON);
    await expect({ device: null, omit: ['upgrade', 'connection'] }, 401, NO_AUTH_REASON);
  });

  it('an invalid WebSocket upgrade with a valid certificate is 400', async () => {
    await expect({ omit: ['sec-websocket-key'] }, 400);
    await expect({ omit: ['upgrade'] }, 400);
    await expect({ omit: ['upgrade', 'connection'] }, 400);
    await expect({ omit: ['sec-websocket-version'] }, 400);
    await expect({ omit: ['sec-websocket-version'], headers: [['Sec-WebSocket-Version', '8']] }, 400);
  });

  it('accepts the header spellings real clients use', async () => {
    // Mint (nerves_hub_link) sends lower-case names; browsers send "keep-alive, Upgrade".
    await expect({ lowercase: true, extensions: 'permessage-deflate' }, 101);
    await expect({ omit: ['connection'], headers: [['Connection', 'keep-alive, Upgrade']] }, 101);
    await expect({ omit: ['upgrade'], headers: [['Upgrade', 'WebSocket']] }, 101);
  });

  it('permessage-deflate: accepted with both no_context_takeover parameters, absent when not offered', async () => {
    let res = await expect({ extensions: 'permessage-deflate' }, 101);
    assert.equal(
      res.headers['sec-websocket-extensions'],
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
    );
    res = await expect({ extensions: 'permessage-deflate; client_max_window_bits' }, 101);
    const ext = (res.headers['sec-websocket-extensions'] ?? '').split(';').map((s) => s.trim());
    assert.equal(ext[0], 'permessage-deflate');
    assert.ok(ext.includes('server_no_context_takeover') && ext.includes('client_no_context_takeover'), ext.join(';'));
    res = await expect({}, 101);
    assert.equal(res.headers['sec-websocket-extensions'], undefined);
    res = await expect({ extensions: 'x-webkit-deflate-frame' }, 101);
    assert.equal(res.headers['sec-websocket-extensions'], undefined);
  });

  it('a request head larger than --max-header-bytes is 431', async () => {
    await expect({ headers: [['X-Pad', 'a'.repeat(3000)]] }, 101); // under 4 KiB
    await expect({ headers: [['X-Pad', 'a'.repeat(5000)]] }, 431);
    const many = Array.from({ length: 200 }, (_, i) => [`X-Pad-${i}`, 'b'.repeat(20)]);
    await expect({ headers: many }, 431);
    // 100 KB: the server may close before reading it all (and the reset may then swallow the
    // 431), but it must never upgrade or hang.
    const r = await attemptUpgrade(gw.port, 'device-1', {}, { headers: [['X-Pad', 'c'.repeat(100000)]] });
    assert.notEqual(r.outcome, 'timeout', 'the server neither answered nor closed');
    if (r.outcome === 'http') {
      r.conn.destroy();
      assertRejected(r.res, 431);
    }
    await expect({ device: null, headers: [['X-Pad', 'a'.repeat(5000)]] }, 431);
  });

  it('after a 101 nothing is sent until the device speaks', async () => {
    const { conn, res } = await upgrade(gw.port, {});
    assert.equal(res.status, 101);
    assert.equal(await conn.silence(300), null);
    conn.destroy();
  });

  it('still serves a good Phoenix client after all of the above', async () => {
    await assertServes(gw.port);
  });
});
