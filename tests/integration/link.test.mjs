// The NATS link (proto/LINK.md) against a real nats-server and a scriptable platform written in
// JavaScript (lib/fakeplatform.mjs), with real devices (the official Phoenix client and the raw
// client): auth/connect/join/message/notify/disconnect/heartbeat, every effect, the worker inbox,
// shared topics, ordering and back-pressure, and platform/NATS outages.
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { encode } from '@msgpack/msgpack';
import { HOST, freePort, startGateway, gwTest, sleep, waitFor } from './lib/gateway.mjs';
import { connectPhx, DEVICE_JOIN, EXTENSIONS_JOIN } from './lib/phx.mjs';
import { attemptUpgrade, wsConnect } from './lib/rawws.mjs';
import { FakePlatform, bin, str } from './lib/fakeplatform.mjs';
import { startNats } from './lib/stack.mjs';
import { fetchMetrics, metric, waitMetric } from './lib/metrics.mjs';

const GW_ID = 'gw-link-test';

describe('NATS link with a scripted platform', () => {
  let nats, gw, plat;
  const it = gwTest(() => gw);

  before(async () => {
    nats = await startNats();
    plat = await new FakePlatform(nats.url).start();
    gw = await startGateway({
      args: ['--link', 'nats', '--nats-url', nats.url, '--gateway-id', GW_ID, '--link-timeout', '1500ms',
        '--link-heartbeat', '1s'],
    });
    await gw.waitForLog(/event=nats_connected/, 10000);
  });
  after(async () => {
    await gw?.stop();
    await plat?.stop();
    await nats?.stop();
  });

  it('auth carries the certificate identity; connect and join follow with the platform blobs', async () => {
    plat.calls = [];
    const c = await connectPhx(gw.port, { device: 'device-1' });
    try {
      const auth = plat.of('auth')[0].req;
      assert.equal(auth.v, 1);
      assert.equal(auth.gw, GW_ID);
      assert.equal(auth.w, 0);
      assert.match(auth.fp, /^[0-9A-F]{40}$/);
      assert.ok(auth.der instanceof Uint8Array && auth.der.length > 100, 'DER as bin');
      assert.equal(auth.cn, 'device-1');
      assert.match(auth.peer, /^127\.0\.0\.1:\d+$/);
      const conn = plat.of('connect')[0].req;
      assert.equal(conn.dev, 'device-1');
      assert.equal(str(conn.s), 'info:device-1');
      assert.equal(conn.cref, auth.cref);
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok');
      const join = plat.of('join')[0].req;
      assert.equal(join.topic, 'device');
      assert.equal(str(join.s), 'info:device-1+connected', 'join gets the info connect returned');
      assert.deepEqual(join.p, DEVICE_JOIN, 'join payload carried as sent');
    } finally {
      await c.disconnect();
    }
    const d = await plat.waitCall('disconnect', (r) => r.dev === 'device-1');
    assert.equal(d.req.reason, 'closed');
    assert.equal(str(d.req.s), 'info:device-1+connected');
  });

  it('a refusal is a bare 401, its reason logged; no certificate and no secret never reaches it', async () => {
    plat.handlers.auth = () => ({ v: 1, st: 'refused', reason: 'unknown "device" certificate' });
    try {
      const r = await attemptUpgrade(gw.port, 'device-2');
      assert.equal(r.outcome, 'http');
      assert.equal(r.res.status, 401);
      // device-protocol §1.6: :invalid_auth is a 401 with an empty body and no reason header
      assert.equal(r.res.headers['nh-connection-error-reason'], undefined);
      assert.equal(r.res.body.length, 0);
      assert.ok(r.res.headers.date, 'Date, for the device clock');
      await gw.waitForLog(/event=auth_refused .*reason="unknown  device  certificate"/, 3000);
      r.conn.destroy();
      const before = plat.of('auth').length;
      const none = await attemptUpgrade(gw.port, null);
      assert.equal(none.res.status, 401);
      assert.match(none.res.headers['nh-connection-error-reason'], /no certificate pair or shared secrets/);
      none.conn.destroy();
      assert.equal(plat.of('auth').length, before);
    } finally {
      delete plat.handlers.auth;
    }
  });

  it('shared-secret headers go to the platform whole, names lower-cased', async () => {
    let seen;
    plat.handlers.auth = (req) => {
      seen = req;
      return { v: 1, st: 'refused', reason: 'bad signature' };
    };
    try {
      const headers = {
        'X-NH-Alg': 'NH1-HMAC-sha256-1000-32', 'x-nh-key': 'nhp_k', 'x-nh-time': '1767225600',
        'x-nh-signature': 'SFMyNTY.abc.def', 'X-Other': 'kept',
      };
      const r = await attemptUpgrade(gw.port, null, {}, { headers });
      assert.equal(r.res.status, 401);
      assert.equal(r.res.headers['nh-connection-error-reason'], undefined);
      await gw.waitForLog(/event=auth_refused .*reason="bad signature"/, 3000);
      r.conn.destroy();
      assert.equal(seen.fp, undefined, 'no certificate fields without a certificate');
      assert.deepEqual(seen.x, {
        'x-nh-alg': 'NH1-HMAC-sha256-1000-32', 'x-nh-key': 'nhp_k', 'x-nh-time': '1767225600',
        'x-nh-signature': 'SFMyNTY.abc.def', 'x-other': 'kept',
      });
    } finally {
      delete plat.handlers.auth;
    }
  });

  it('a payload nested as deep as the device codec allows reaches the platform; a repeated x- header counts once', async () => {
    const c = await connectPhx(gw.port, { device: 'device-2' });
    try {
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok');
      let deep = {};
      for (let i = 0; i < 60; i++) deep = { d: deep };
      j.channel.push('status_update', { status: 'x', deep });
      const m = await plat.waitCall('message', (r) => r.dev === 'device-2' && r.ev === 'status_update' && r.p.deep);
      let depth = 0;
      for (let v = m.req.p.deep; v.d; v = v.d) depth++;
      assert.equal(depth, 60); // with the outer map and the innermost {}: 62 containers, phx allows 63
    } finally {
      await c.disconnect();
    }
    let seen;
    plat.handlers.auth = (req) => {
      seen = req;
      return { v: 1, st: 'refused', reason: 'no' };
    };
    try {
      const r = await attemptUpgrade(gw.port, null, {}, { headers: [['x-nh-key', 'first'], ['X-NH-Key', 'second']] });
      assert.equal(r.res.status, 401);
      r.conn.destroy();
      assert.deepEqual(seen.x, { 'x-nh-key': 'first' });
    } finally {
      delete plat.handlers.auth;
    }
  });

  it('device messages reach the platform one at a time, in order, each with the previous session', async () => {
    const c = await connectPhx(gw.port, { device: 'device-3' });
    try {
      let n = 0;
      plat.handlers.message = async () => {
        await sleep(60);
        n += 1;
        return { v: 1, st: 'ok', s: bin(`s${n}`) };
      };
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok');
      const from = plat.of('message').length;
      for (let i = 0; i < 8; i++) j.channel.push('status_update', { status: 'updating', seq: i });
      await waitFor(() => plat.of('message').length >= from + 8, 10000, '8 messages at the platform');
      const msgs = plat.of('message').slice(from);
      assert.deepEqual(msgs.map((m) => m.req.p.seq), [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.equal(str(msgs[0].req.s), 's0', 'first message carries the join session');
      for (let i = 1; i < msgs.length; i++) {
        assert.equal(str(msgs[i].req.s), `s${i}`, 'each call carries the session the previous returned');
        assert.ok(msgs[i].at >= msgs[i - 1].answeredAt, 'never two calls in flight');
      }
    } finally {
      delete plat.handlers.message;
      await c.disconnect();
    }
  });

  it('effects: push, reply, send_self, send_after, start_timer, cancel_timer, close', async () => {
    const c = await connectPhx(gw.port, { device: 'device-4' });
    try {
      plat.handlers.join = (req) =>
        req.topic === 'extensions'
          ? { v: 1, st: 'ok', r: ['health'], s: bin('x0'), fx: [['push', 'health:check', {}], ['send_self', bin('self-1')]] }
          : undefined;
      const ext = await c.join('extensions', EXTENSIONS_JOIN);
      assert.equal(ext.status, 'ok');
      assert.deepEqual(ext.response, ['health']);
      assert.ok(await c.waitMessage((m) => m.topic === 'extensions' && m.event === 'health:check'));
      const self = await plat.waitCall('notify', (r) => r.topic === 'extensions' && str(r.msg) === 'self-1');
      assert.equal(str(self.req.s), 'x0');

      // reply to the push that caused the call (extensions' "detach")
      plat.handlers.message = () => ({ v: 1, st: 'ok', fx: [['reply', 'error', 'detach']] });
      const got = await new Promise((resolve) => {
        ext.channel.push('geo:location:update', {}).receive('error', (r) => resolve(r)).receive('ok', () => resolve('ok'));
      });
      assert.equal(got, 'detach');

      // timers: a one-shot after 300 ms and a repeating one every 100 ms, then cancelled
      const t0 = Date.now();
      plat.handlers.message = () => ({
        v: 1, st: 'ok',
        fx: [['send_after', bin('k1'), bin('once'), 300], ['start_timer', bin('k2'), bin('tick'), 100]],
      });
      ext.channel.push('health:attached', {});
      const once = await plat.waitCall('notify', (r) => str(r.msg) === 'once', 3000);
      assert.ok(once.at - t0 >= 280, `send_after fired after ${once.at - t0} ms`);
      await waitFor(() => plat.of('notify').filter((x) => str(x.req.msg) === 'tick').length >= 3, 3000, '3 ticks');
      plat.handlers.message = () => ({ v: 1, st: 'ok', fx: [['cancel_timer', bin('k2')]] });
      ext.channel.push('health:detached', {});
      await plat.waitCall('message', (r) => r.ev === 'health:detached');
      await sleep(150);
      const ticks = plat.of('notify').filter((x) => str(x.req.msg) === 'tick').length;
      await sleep(400);
      assert.equal(plat.of('notify').filter((x) => str(x.req.msg) === 'tick').length, ticks, 'cancelled');

      // close
      plat.handlers.message = () => ({ v: 1, st: 'ok', fx: [['close', 4001, 'go away']] });
      ext.channel.push('health:report', {});
      const ev = await c.waitClose(3000);
      assert.equal(ev?.code, 4001);
      const d = await plat.waitCall('disconnect', (r) => r.dev === 'device-4');
      assert.equal(d.req.reason, 'platform_close');
    } finally {
      delete plat.handlers.join;
      delete plat.handlers.message;
      await c.disconnect();
    }
  });

  it('the worker inbox pushes, notifies and kicks by device id and connection ref', async () => {
    const c = await connectPhx(gw.port, { device: 'device-1' });
    try {
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok');
      const cref = plat.of('connect').filter((x) => x.req.dev === 'device-1').pop().req.cref;
      const inbox = `nh.gw.${GW_ID}.0`;
      const ok = await plat.send(inbox, { v: 1, k: 'push', dev: 'device-1', topic: 'device', ev: 'identify', p: {} }, { request: true });
      assert.equal(ok.st, 'ok');
      const m = await c.waitMessage((x) => x.topic === 'device' && x.event === 'identify');
      assert.ok(m, 'identify pushed');
      assert.equal(m.ref, null);
      const gone = await plat.send(inbox, { v: 1, k: 'push', dev: 'nobody', topic: 'device', ev: 'identify', p: {} }, { request: true });
      assert.equal(gone.st, 'gone');
      const stale = await plat.send(inbox, { v: 1, k: 'push', dev: 'device-1', cref: cref + 1, topic: 'device', ev: 'x', p: {} }, { request: true });
      assert.equal(stale.st, 'gone', 'a message for another connection of the device');
      const nj = await plat.send(inbox, { v: 1, k: 'push', dev: 'device-1', topic: 'extensions', ev: 'x', p: {} }, { request: true });
      assert.equal(nj.st, 'not_joined');
      const nt = await plat.send(inbox, { v: 1, k: 'notify', dev: 'device-1', topic: 'device', msg: bin('poke') }, { request: true });
      assert.equal(nt.st, 'ok');
      await plat.waitCall('notify', (r) => r.dev === 'device-1' && str(r.msg) === 'poke');
      const kick = await plat.send(inbox, { v: 1, k: 'kick', dev: 'device-1', cref }, { request: true });
      assert.equal(kick.st, 'ok');
      const ev = await c.waitClose(3000);
      assert.equal(ev?.code, 1001);
      const d = await plat.waitCall('disconnect', (r) => r.dev === 'device-1' && r.cref === cref);
      assert.equal(d.req.reason, 'kicked');
    } finally {
      await c.disconnect();
    }
  });

  it('server messages carry the join_ref NervesHub gives them: null on device except scripts/run, the join\'s on extensions', async () => {
    // device-protocol §3.1, §3.3.3: broadcasts on `device` (endpoint fastlane) have a null
    // join_ref; `scripts/run` and everything on console/extensions are channel pushes
    const conn = await wsConnect(gw.port, { device: 'device-6' });
    try {
      plat.handlers.join = (req) =>
        req.topic === 'device'
          ? {
              v: 1, st: 'ok', r: {}, s: bin('d0'),
              fx: [['push', 'fwup_public_keys', { keys: ['k'] }], ['push', 'scripts/run', { text: 't', ref: 'r1' }],
                ['subscribe', 'deployment:61']],
            }
          : { v: 1, st: 'ok', r: ['health'], s: bin('x0'), fx: [['push', 'health:check', {}]] };
      conn.sendJson(['1', '1', 'device', 'phx_join', DEVICE_JOIN]);
      assert.deepEqual(await conn.recvJson(), ['1', '1', 'device', 'phx_reply', { status: 'ok', response: {} }]);
      assert.deepEqual(await conn.recvJson(), [null, null, 'device', 'fwup_public_keys', { keys: ['k'] }]);
      assert.deepEqual(await conn.recvJson(), ['1', null, 'device', 'scripts/run', { text: 't', ref: 'r1' }]);
      conn.sendJson(['3', '3', 'extensions', 'phx_join', EXTENSIONS_JOIN]);
      assert.deepEqual(await conn.recvJson(), ['3', '3', 'extensions', 'phx_reply', { status: 'ok', response: ['health'] }]);
      assert.deepEqual(await conn.recvJson(), ['3', null, 'extensions', 'health:check', {}]);

      const inbox = `nh.gw.${GW_ID}.0`;
      const push = (topic, ev) => plat.send(inbox, { v: 1, k: 'push', dev: 'device-6', topic, ev, p: {} }, { request: true });
      assert.equal((await push('device', 'reboot')).st, 'ok');
      assert.deepEqual(await conn.recvJson(), [null, null, 'device', 'reboot', {}]);
      assert.equal((await push('device', 'scripts/run')).st, 'ok');
      assert.deepEqual(await conn.recvJson(), ['1', null, 'device', 'scripts/run', {}]);
      assert.equal((await push('extensions', 'geo:location:request')).st, 'ok');
      assert.deepEqual(await conn.recvJson(), ['3', null, 'extensions', 'geo:location:request', {}]);
      await plat.send('nh.topic.deployment:61', { v: 1, k: 'push', ev: 'update', p: { n: 61 } });
      assert.deepEqual(await conn.recvJson(), [null, null, 'device', 'update', { n: 61 }]);

      // answered by the socket itself, as Phoenix's does: no join_ref
      conn.sendJson(['1', '7', 'phoenix', 'heartbeat', {}]);
      assert.deepEqual(await conn.recvJson(), [null, '7', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
      conn.sendJson(['5', '8', 'console', 'up', { data: 'x' }]);
      assert.deepEqual(await conn.recvJson(),
        [null, '8', 'console', 'phx_reply', { status: 'error', response: { reason: 'unmatched topic' } }]);
    } finally {
      delete plat.handlers.join;
      conn.close();
    }
  });

  it('shared topics: subscribe effect, fastlane push with skip_fw, notify with from, unsubscribe', async () => {
    const a = await connectPhx(gw.port, { device: 'device-1' });
    const b = await connectPhx(gw.port, { device: 'device-2' });
    try {
      plat.handlers.join = (req) =>
        req.topic === 'device'
          ? { v: 1, st: 'ok', r: {}, s: bin('d0'), fw: req.dev === 'device-1' ? 'fw-A' : 'fw-B', fx: [['subscribe', 'deployment:7']] }
          : undefined;
      assert.equal((await a.join('device', DEVICE_JOIN)).status, 'ok');
      const jb = await b.join('device', DEVICE_JOIN);
      assert.equal(jb.status, 'ok');
      await sleep(200); // the subscription reaches nats-server
      await plat.send('nh.topic.deployment:7', { v: 1, k: 'push', ev: 'update', p: { n: 1 }, skip_fw: 'fw-A' });
      const ub = await b.waitMessage((m) => m.event === 'update' && m.payload.n === 1);
      assert.ok(ub, 'device-2 (fw-B) gets the update');
      await plat.send('nh.topic.deployment:7', { v: 1, k: 'push', ev: 'update', p: { n: 2 } });
      assert.ok(await a.waitMessage((m) => m.event === 'update' && m.payload.n === 2));
      assert.equal(a.messages.filter((m) => m.event === 'update' && m.payload.n === 1).length, 0, 'skip_fw skipped device-1');
      await plat.send('nh.topic.deployment:7', { v: 1, k: 'notify', msg: bin('changed') });
      const n1 = await plat.waitCall('notify', (r) => r.dev === 'device-1' && r.from === 'deployment:7');
      assert.equal(str(n1.req.msg), 'changed');
      await plat.waitCall('notify', (r) => r.dev === 'device-2' && r.from === 'deployment:7');
      // device-2 unsubscribes: only device-1 gets the next one
      plat.handlers.message = () => ({ v: 1, st: 'ok', fx: [['unsubscribe', 'deployment:7']] });
      jb.channel.push('rebooting', {});
      await plat.waitCall('message', (r) => r.dev === 'device-2' && r.ev === 'rebooting');
      await sleep(100);
      await plat.send('nh.topic.deployment:7', { v: 1, k: 'push', ev: 'update', p: { n: 3 } });
      assert.ok(await a.waitMessage((m) => m.event === 'update' && m.payload.n === 3));
      await sleep(200);
      assert.equal(b.messages.filter((m) => m.event === 'update' && m.payload.n === 3).length, 0);
    } finally {
      delete plat.handlers.join;
      delete plat.handlers.message;
      await a.disconnect();
      await b.disconnect();
    }
  });

  it('inbox topics: the gateway moves channels between shared topics itself, with no notify call', async () => {
    const devs = ['device-1', 'device-2', 'device-3', 'device-5'];
    const cs = {};
    for (const d of devs) cs[d] = await connectPhx(gw.port, { device: d });
    try {
      for (const d of devs.slice(0, 3)) assert.equal((await cs[d].join('device', DEVICE_JOIN)).status, 'ok');
      // device-5 is connected but has not joined `device`
      const cref = {};
      for (const d of devs) cref[d] = plat.of('connect').filter((x) => x.req.dev === d).pop().req.cref;
      const inbox = `nh.gw.${GW_ID}.0`;
      const notifies = plat.of('notify').length;
      const topics = (entries, topic = 'device') =>
        plat.send(inbox, { v: 1, k: 'topics', topic, devs: entries }, { request: true });
      const got = (d, n) => cs[d].messages.filter((m) => m.topic === 'device' && m.event === 'update' && m.payload.n === n);
      const pushOn = (t, n) => plat.send(`nh.topic.${t}`, { v: 1, k: 'push', ev: 'update', p: { n } });

      let r = await topics([
        ['device-1', cref['device-1'], null, 'deployment:8'],
        ['device-2', cref['device-2'], null, 'deployment:8'],
        ['nobody', 1, null, 'deployment:8'], // not on this worker
        ['device-3', cref['device-3'] + 1, null, 'deployment:8'], // another connection of the device
        ['device-5', cref['device-5'], null, 'deployment:8'], // channel not joined
        ['device-3', cref['device-3'], null, 'deployment:8'],
      ]);
      assert.deepEqual(r, { v: 1, st: 'ok', n: 3 }, 'three entries applied, three skipped');
      // the reply comes after the subscription was sent: a publish right now reaches the channels
      await pushOn('deployment:8', 1);
      for (const d of ['device-1', 'device-2', 'device-3']) assert.ok(await cs[d].waitMessage((m) => m.event === 'update' && m.payload.n === 1), d);
      await sleep(200);
      assert.equal(got('device-5', 1).length, 0, 'not joined: nothing');
      for (const d of ['device-1', 'device-2', 'device-3']) assert.equal(got(d, 1).length, 1, `${d} got the push exactly once`);

      // device-2 moves 8 → 9 (unsubscribe, then subscribe), device-3 leaves 8; idempotent repeats
      r = await topics([
        ['device-2', cref['device-2'], 'deployment:8', 'deployment:9'],
        ['device-3', cref['device-3'], 'deployment:8', null],
        ['device-3', cref['device-3'], 'deployment:8', null],
        ['device-1', cref['device-1'], null, 'deployment:8'],
      ]);
      assert.equal(r.n, 4);
      await pushOn('deployment:8', 2);
      await pushOn('deployment:9', 3);
      assert.ok(await cs['device-1'].waitMessage((m) => m.event === 'update' && m.payload.n === 2));
      assert.ok(await cs['device-2'].waitMessage((m) => m.event === 'update' && m.payload.n === 3));
      await sleep(300);
      assert.equal(got('device-1', 2).length, 1);
      assert.equal(got('device-1', 3).length, 0);
      assert.equal(got('device-2', 2).length, 0, 'device-2 left deployment:8');
      assert.equal(got('device-3', 2).length + got('device-3', 3).length, 0, 'device-3 follows nothing');

      // the extensions channel is addressed separately: device-1 has not joined it
      r = await topics([['device-1', cref['device-1'], null, 'deployment:10']], 'extensions');
      assert.equal(r.n, 0);

      // a move is worker-local and platform-free: no notify call was made for any of it
      assert.equal(plat.of('notify').length, notifies, 'no notify call');
      // the topic's NATS subscription goes with its last follower on the worker
      await topics([['device-1', cref['device-1'], 'deployment:8', null], ['device-2', cref['device-2'], 'deployment:9', null]]);
      await pushOn('deployment:8', 4);
      await pushOn('deployment:9', 4);
      await sleep(300);
      for (const d of devs) assert.equal(got(d, 4).length, 0, `${d} follows nothing any more`);
    } finally {
      for (const d of devs) await cs[d].disconnect();
    }
  });

  it('inbox topics: malformed messages are refused whole and harm no session', async () => {
    const a = await connectPhx(gw.port, { device: 'device-1' });
    const b = await connectPhx(gw.port, { device: 'device-2' });
    try {
      assert.equal((await a.join('device', DEVICE_JOIN)).status, 'ok');
      assert.equal((await b.join('device', DEVICE_JOIN)).status, 'ok');
      const crefA = plat.of('connect').filter((x) => x.req.dev === 'device-1').pop().req.cref;
      const crefB = plat.of('connect').filter((x) => x.req.dev === 'device-2').pop().req.cref;
      const inbox = `nh.gw.${GW_ID}.0`;
      const good = ['device-1', crefA, null, 'bad:1'];
      const many = Array.from({ length: 1025 }, (_, i) => [`d${i}`, i, null, 'bad:1']);
      many[0] = good;
      const bad = [
        { v: 1, k: 'topics', topic: 'device', devs: [good, ['device-2', crefB, null, null]] }, // a no-op entry
        { v: 1, k: 'topics', topic: 'device', devs: [good, ['device-2', crefB, null, 'a.b']] }, // not a topic
        { v: 1, k: 'topics', topic: 'device', devs: [good, ['device-2', -1, null, 'bad:1']] }, // negative cref
        { v: 1, k: 'topics', topic: 'device', devs: [good, ['device-2', crefB, 'bad:1']] }, // 3 elements
        { v: 1, k: 'topics', topic: 'device', devs: many }, // 1025 entries
        { v: 1, k: 'topics', topic: 'device', devs: [] },
        { v: 1, k: 'topics', topic: 'console', devs: [good] },
        { v: 1, k: 'topics', devs: [good] },
        { v: 2, k: 'topics', topic: 'device', devs: [good] },
      ];
      const since = gw.log().length;
      for (const m of bad) await plat.send(inbox, m);
      await plat.send(inbox, new Uint8Array([0x81, 0xa1, 0x76])); // truncated msgpack
      await waitFor(() => gw.events('inbox_message_invalid').length >= bad.length + 1, 3000, 'every bad message refused');
      await gw.waitForLog(/event=inbox_message_invalid .*devs/, 1000, since);
      // nothing of a refused message was applied, and both sessions still work
      await plat.send('nh.topic.bad:1', { v: 1, k: 'push', ev: 'update', p: { n: 'bad' } });
      const r = await plat.send(inbox, { v: 1, k: 'topics', topic: 'device', devs: [['device-2', crefB, null, 'ok:1']] }, { request: true });
      assert.equal(r.n, 1);
      await plat.send('nh.topic.ok:1', { v: 1, k: 'push', ev: 'update', p: { n: 'ok' } });
      assert.ok(await b.waitMessage((m) => m.event === 'update' && m.payload.n === 'ok'));
      await sleep(200);
      assert.equal(a.messages.filter((m) => m.event === 'update').length, 0, 'device-1 never followed bad:1');
      assert.deepEqual(await a.heartbeat(), { status: 'ok', response: {} });
      assert.deepEqual(await b.heartbeat(), { status: 'ok', response: {} });
    } finally {
      await a.disconnect();
      await b.disconnect();
    }
  });

  it('last-seen heartbeats are batched per worker for devices that sent something', async () => {
    const c = await connectPhx(gw.port, { device: 'device-3', heartbeatIntervalMs: 200 });
    try {
      const hb = await plat.waitCall('heartbeat', (r) => r.devs.some(([d]) => d === 'device-3'), 5000);
      assert.equal(hb.req.gw, GW_ID);
      const entry = hb.req.devs.find(([d]) => d === 'device-3');
      assert.equal(str(entry[1]), 'info:device-3+connected');
    } finally {
      await c.disconnect();
    }
  });

  it('a platform that does not answer: join error, message dropped, the device stays connected', async () => {
    const c = await connectPhx(gw.port, { device: 'device-2' });
    try {
      plat.handlers.join = () => new Promise(() => {}); // never answers
      const j = await c.join('device', DEVICE_JOIN, 5000);
      assert.equal(j.status, 'error');
      assert.deepEqual(j.response, { error: 'could not connect' });
      delete plat.handlers.join;
      const j2 = await c.join('device', DEVICE_JOIN);
      assert.equal(j2.status, 'ok');
      assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
    } finally {
      delete plat.handlers.join;
      await c.disconnect();
    }
  });

  it('back-pressure: a device that outpaces the platform is not read; others are served', async () => {
    const c = await connectPhx(gw.port, { device: 'device-3' });
    let release;
    const gate = new Promise((r) => (release = r));
    try {
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok');
      let inflight = 0;
      let maxInflight = 0;
      plat.handlers.message = async () => {
        inflight++;
        maxInflight = Math.max(maxInflight, inflight);
        await gate;
        inflight--;
        return { v: 1, st: 'ok' };
      };
      const from = plat.of('message').length;
      const big = 'x'.repeat(4000);
      for (let i = 0; i < 300; i++) j.channel.push('connection_types', { values: [big], seq: i });
      await sleep(500);
      assert.equal(plat.of('message').length - from, 1, 'one call waits; nothing else was read');
      const other = await connectPhx(gw.port, { device: 'device-1' });
      assert.deepEqual(await other.heartbeat(), { status: 'ok', response: {} });
      await other.disconnect();
      release();
      // later calls time out individually only if the platform is slow; here it answers at once
      await waitFor(() => plat.of('message').length - from >= 300, 20000, 'all 300 messages');
      const seqs = plat.of('message').slice(from).map((m) => m.req.p.seq);
      assert.deepEqual(seqs, [...Array(300).keys()]);
      assert.equal(maxInflight, 1);
    } finally {
      release();
      delete plat.handlers.message;
      await c.disconnect();
    }
  });

  it('invalid platform replies are counted as failures, not applied', async () => {
    const c = await connectPhx(gw.port, { device: 'device-2' });
    try {
      plat.handlers.join = () => encode({ v: 2, st: 'ok', r: {}, s: bin('z') });
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'error');
      plat.handlers.join = () => new Uint8Array([0xc1]);
      const j2 = await c.join('device', DEVICE_JOIN);
      assert.equal(j2.status, 'error');
      assert.ok(gw.events('platform_reply_invalid').length >= 2);
      assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
    } finally {
      delete plat.handlers.join;
      await c.disconnect();
    }
  });

  it('platform gone: new devices get 503 with the reason header, connected devices stay', async () => {
    const c = await connectPhx(gw.port, { device: 'device-1' });
    try {
      await plat.pause();
      const t0 = Date.now();
      const r = await attemptUpgrade(gw.port, 'device-2');
      assert.equal(r.res.status, 503);
      assert.equal(r.res.headers['nh-connection-error-reason'], 'the platform could not be reached to authenticate this device');
      assert.ok(Date.now() - t0 < 1400, 'no responders is answered before the call timeout');
      r.conn.destroy();
      assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
      assert.equal(c.closed, false);
      await plat.stop();
      plat = await new FakePlatform(nats.url).start();
      const again = await connectPhx(gw.port, { device: 'device-2' });
      assert.equal((await again.join('device', DEVICE_JOIN)).status, 'ok');
      await again.disconnect();
    } finally {
      await c.disconnect();
    }
  });

  it('NATS restarted: sessions survive, calls and the inbox work again, queued disconnects arrive', async () => {
    const c = await connectPhx(gw.port, { device: 'device-1' });
    const d = await connectPhx(gw.port, { device: 'device-4' });
    try {
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok');
      const since = gw.log().length;
      await nats.stop();
      await gw.waitForLog(/event=nats_disconnected/, 5000, since);
      await d.disconnect(); // its disconnect is queued while NATS is away
      assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
      await nats.restart();
      await gw.waitForLog(/event=nats_connected/, 10000, since);
      await waitFor(() => !plat.nc.isClosed() && plat.nc.protocol.connected, 10000, 'platform reconnected');
      await plat.waitCall('disconnect', (r) => r.dev === 'device-4', 10000);
      const from = plat.of('message').length;
      j.channel.push('rebooting', {});
      await waitFor(() => plat.of('message').length > from, 5000, 'message after reconnect');
      const ok = await plat.send(`nh.gw.${GW_ID}.0`, { v: 1, k: 'push', dev: 'device-1', topic: 'device', ev: 'reboot', p: {} }, { request: true });
      assert.equal(ok.st, 'ok');
      assert.ok(await c.waitMessage((m) => m.event === 'reboot'));
    } finally {
      await c.disconnect();
      await d.disconnect();
    }
  });
});

// Per-channel limits on what the platform may ask for, each at its maximum and one beyond:
// --max-follows, --max-timers (one more cancels the oldest), --max-queued-notifies (beyond it
// self-messages are dropped and counted).
describe('NATS link: per-channel limits on platform effects', () => {
  let nats, gw, plat;
  const it = gwTest(() => gw);

  before(async () => {
    nats = await startNats();
    plat = await new FakePlatform(nats.url).start();
    gw = await startGateway({
      args: ['--link', 'nats', '--nats-url', nats.url, '--gateway-id', 'gw-limits',
        '--max-follows', '2', '--max-timers', '2', '--max-queued-notifies', '2'],
    });
    await gw.waitForLog(/event=nats_connected/, 10000);
  });
  after(async () => {
    await gw?.stop();
    await plat?.stop();
    await nats?.stop();
  });

  it('follows: two topics are followed, a third is refused', async () => {
    const c = await connectPhx(gw.port, { device: 'device-6' });
    try {
      plat.handlers.join = () => ({
        v: 1, st: 'ok', r: {}, s: bin('d'),
        fx: [['subscribe', 'lim:a'], ['subscribe', 'lim:b'], ['subscribe', 'lim:c']],
      });
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      await gw.waitForLog(/event=follow_limit .*topic=lim:c/, 3000);
      await sleep(200);
      for (const t of ['a', 'b', 'c']) await plat.send(`nh.topic.lim:${t}`, { v: 1, k: 'push', ev: `on-${t}`, p: {} });
      assert.ok(await c.waitMessage((m) => m.event === 'on-a'));
      assert.ok(await c.waitMessage((m) => m.event === 'on-b'));
      await sleep(300);
      assert.equal(c.messages.filter((m) => m.event === 'on-c').length, 0);
    } finally {
      delete plat.handlers.join;
      await c.disconnect();
    }
  });

  it('inbox topics obey --max-follows; an unsubscribe in the same entry frees the slot first', async () => {
    const c = await connectPhx(gw.port, { device: 'device-9' });
    try {
      plat.handlers.join = () => ({ v: 1, st: 'ok', r: {}, s: bin('d'), fx: [['subscribe', 'lim:a'], ['subscribe', 'lim:b']] });
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const cref = plat.of('connect').filter((x) => x.req.dev === 'device-9').pop().req.cref;
      const inbox = 'nh.gw.gw-limits.0';
      const send = (e) => plat.send(inbox, { v: 1, k: 'topics', topic: 'device', devs: [e] }, { request: true });
      assert.equal((await send(['device-9', cref, null, 'lim:d'])).n, 0, 'a third topic is refused');
      await gw.waitForLog(/event=follow_limit .*device=device-9 .*topic=lim:d/, 3000);
      assert.equal((await send(['device-9', cref, 'lim:a', 'lim:d'])).n, 1);
      for (const t of ['a', 'b', 'd']) await plat.send(`nh.topic.lim:${t}`, { v: 1, k: 'push', ev: `x-${t}`, p: {} });
      assert.ok(await c.waitMessage((m) => m.event === 'x-b'));
      assert.ok(await c.waitMessage((m) => m.event === 'x-d'));
      await sleep(300);
      assert.equal(c.messages.filter((m) => m.event === 'x-a').length, 0);
    } finally {
      delete plat.handlers.join;
      await c.disconnect();
    }
  });

  it('timers: two are filed; a third cancels the oldest', async () => {
    const c = await connectPhx(gw.port, { device: 'device-7' });
    try {
      plat.handlers.join = () => ({
        v: 1, st: 'ok', r: {}, s: bin('d'),
        fx: [['send_after', bin('k1'), bin('t1'), 200], ['send_after', bin('k2'), bin('t2'), 200],
          ['send_after', bin('k3'), bin('t3'), 200]],
      });
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      await plat.waitCall('notify', (r) => r.dev === 'device-7' && str(r.msg) === 't2');
      await plat.waitCall('notify', (r) => r.dev === 'device-7' && str(r.msg) === 't3');
      await sleep(300);
      assert.equal(plat.of('notify').filter((x) => x.req.dev === 'device-7' && str(x.req.msg) === 't1').length, 0);
    } finally {
      delete plat.handlers.join;
      await c.disconnect();
    }
  });

  it('queued notifies: two wait behind the call; a third is dropped', async () => {
    const c = await connectPhx(gw.port, { device: 'device-8' });
    try {
      plat.handlers.join = () => ({
        v: 1, st: 'ok', r: {}, s: bin('d'),
        fx: [['send_self', bin('q1')], ['send_self', bin('q2')], ['send_self', bin('q3')]],
      });
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      await plat.waitCall('notify', (r) => r.dev === 'device-8' && str(r.msg) === 'q2');
      await gw.waitForLog(/event=notify_dropped .*queued=2/, 3000);
      await sleep(300);
      const got = plat.of('notify').filter((x) => x.req.dev === 'device-8').map((x) => str(x.req.msg));
      assert.deepEqual(got, ['q1', 'q2']);
    } finally {
      delete plat.handlers.join;
      await c.disconnect();
    }
  });
});

// Inbox `topics` addressed to the wrong worker of a gateway: the entries name devices that worker
// does not hold, so nothing is applied there, and the right worker still applies them.
describe('NATS link: inbox topics across workers', () => {
  let nats, gw, plat;
  const it = gwTest(() => gw);

  before(async () => {
    nats = await startNats();
    plat = await new FakePlatform(nats.url).start();
    gw = await startGateway({
      workers: 2,
      args: ['--link', 'nats', '--nats-url', nats.url, '--gateway-id', 'gw-two'],
    });
    await waitFor(() => gw.events('nats_connected').length >= 2, 10000, 'both workers on NATS');
  });
  after(async () => {
    await gw?.stop();
    await plat?.stop();
    await nats?.stop();
  });

  it('the wrong worker skips the entry; the right one applies it', async () => {
    const c = await connectPhx(gw.port, { device: 'device-4' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const conn = plat.of('connect').filter((x) => x.req.dev === 'device-4').pop().req;
      const entry = ['device-4', conn.cref, null, 'deployment:3'];
      const other = await plat.send(`nh.gw.gw-two.${1 - conn.w}`, { v: 1, k: 'topics', topic: 'device', devs: [entry] }, { request: true });
      assert.deepEqual(other, { v: 1, st: 'ok', n: 0 });
      await plat.send('nh.topic.deployment:3', { v: 1, k: 'push', ev: 'update', p: { n: 1 } });
      await sleep(300);
      assert.equal(c.messages.filter((m) => m.event === 'update').length, 0);
      const own = await plat.send(`nh.gw.gw-two.${conn.w}`, { v: 1, k: 'topics', topic: 'device', devs: [entry] }, { request: true });
      assert.equal(own.n, 1);
      await plat.send('nh.topic.deployment:3', { v: 1, k: 'push', ev: 'update', p: { n: 2 } });
      assert.ok(await c.waitMessage((m) => m.event === 'update' && m.payload.n === 2));
    } finally {
      await c.disconnect();
    }
  });
});

// The local shell's scrollback effects (LINK.md §4.8, §9.1): the platform appends device output,
// clears and replays it; the gateway holds it per connection, bounded by
// --console-scrollback-bytes, and publishes a replay as {v, ev: "scrollback", p: {data}}.
describe('NATS link: local shell scrollback effects', () => {
  let nats, gw, plat;
  const it = gwTest(() => gw);
  const CAP = 1024; // the smallest --console-scrollback-bytes
  const inbox = 'nh.gw.gw-xshell.0';
  const scripted = new Map(); // notify msg → answer
  const scriptedEv = new Map(); // device event → answer
  let admin;
  const metrics = () => fetchMetrics(admin);
  const metricIs = (series, want) => waitMetric(admin, series, want);
  const OK = 'nhgw_local_shell_replays_total{result="ok"}';
  const FAILED = 'nhgw_local_shell_replays_total{result="failed"}';

  before(async () => {
    nats = await startNats();
    plat = await new FakePlatform(nats.url).start();
    admin = await freePort();
    gw = await startGateway({
      args: [
        '--link', 'nats', '--nats-url', nats.url, '--gateway-id', 'gw-xshell', '--console-scrollback-bytes', `${CAP}`,
        '--admin-listen', `${HOST}:${admin}`,
      ],
    });
    await gw.waitForLog(/event=nats_connected/, 10000);
    // device output → scrollback_append; notifies "replay:<subject>" and "clear", or an answer
    // a test scripted for a notify message / a device event
    plat.handlers.message = (req) => {
      if (scriptedEv.has(req.ev)) return scriptedEv.get(req.ev);
      return req.ev === 'local_shell:shell_output'
        ? { v: 1, st: 'ok', fx: [['scrollback_append', bin(req.p.data)]] }
        : undefined;
    };
    plat.handlers.notify = (req) => {
      const m = str(req.msg);
      if (scripted.has(m)) return scripted.get(m);
      if (m.startsWith('replay:')) return { v: 1, st: 'ok', fx: [['scrollback_replay', m.slice(7)]] };
      if (m === 'clear') return { v: 1, st: 'ok', fx: [['scrollback_clear']] };
      return undefined;
    };
  });
  after(async () => {
    await gw?.stop();
    await plat?.stop();
    await nats?.stop();
  });

  /** A device with `extensions` joined; out(data) sends local_shell:shell_output. */
  const shellDevice = async (device) => {
    const c = await connectPhx(gw.port, { device });
    const ext = await c.join('extensions', { local_shell: '0.0.1' });
    assert.equal(ext.status, 'ok');
    return {
      c,
      ext,
      out: (data) => ext.channel.push('local_shell:shell_output', { data }),
      notify: (msg, dev = device) =>
        plat.send(inbox, { v: 1, k: 'notify', dev, topic: 'extensions', msg: bin(msg) }, { request: true }),
    };
  };
  let seq = 0;
  /** Asks for a replay on a fresh subject; resolves the scrollback text (or null when none came). */
  const replay = async (d, { ms = 3000 } = {}) => {
    const subject = `test.replay.${++seq}`;
    const col = await plat.collect(subject);
    try {
      assert.equal((await d.notify(`replay:${subject}`)).st, 'ok');
      try {
        const [m] = await col.wait(1, ms);
        assert.equal(m.v, 1);
        assert.equal(m.ev, 'scrollback');
        assert.ok(m.p.data instanceof Uint8Array, 'the scrollback is a bin');
        return Buffer.from(m.p.data).toString('latin1');
      } catch {
        return null;
      }
    } finally {
      col.stop();
    }
  };
  const outputsHandled = (dev, n) =>
    waitFor(
      () => plat.of('message').filter((x) => x.req.dev === dev && x.req.ev === 'local_shell:shell_output').length >= n,
      5000,
      `${n} shell outputs of ${dev} handled`,
    );

  it('append, replay (empty too), clear; effects apply in order within one reply', async () => {
    const d = await shellDevice('device-10');
    try {
      assert.equal(await replay(d), '', 'replay of an empty scrollback: published, empty');
      d.out('$ uname\r\n');
      d.out('Linux\r\n$ ');
      await outputsHandled('device-10', 2);
      assert.equal(await replay(d), '$ uname\r\nLinux\r\n$ ');
      assert.equal(await replay(d), '$ uname\r\nLinux\r\n$ ', 'a replay does not consume the scrollback');

      // order within one reply: clear, append a, replay, append b, replay
      const s1 = await plat.collect('test.order.1');
      const s2 = await plat.collect('test.order.2');
      scripted.set('order', {
        v: 1,
        st: 'ok',
        fx: [
          ['scrollback_clear'],
          ['scrollback_append', bin('a\n')],
          ['scrollback_replay', 'test.order.1'],
          ['scrollback_append', bin('b')],
          ['scrollback_replay', 'test.order.2'],
        ],
      });
      assert.equal((await d.notify('order')).st, 'ok');
      const [m1] = await s1.wait(1);
      const [m2] = await s2.wait(1);
      assert.equal(str(m1.p.data), 'a\n');
      assert.equal(str(m2.p.data), 'a\nb');
      s1.stop();
      s2.stop();

      assert.equal((await d.notify('clear')).st, 'ok');
      assert.equal(await replay(d), '', 'cleared');
      assert.equal((await d.notify('clear')).st, 'ok');
      assert.equal(await replay(d), '', 'clearing an empty scrollback is harmless');
    } finally {
      await d.c.disconnect();
    }
  });

  it('the byte cap holds: a line without end, and one reply of 64 appends of 16 KiB', async () => {
    const d = await shellDevice('device-11');
    try {
      d.out('x'.repeat(CAP - 1)); // at the cap (with the next byte)
      d.out('y');
      await outputsHandled('device-11', 2);
      assert.equal(await replay(d), 'x'.repeat(CAP - 1) + 'y', 'exactly the cap is kept whole');
      d.out('z'); // one beyond
      await outputsHandled('device-11', 3);
      assert.equal(await replay(d), 'x'.repeat(CAP - 2) + 'yz', 'cap + 1: the oldest byte goes');

      // a hostile reply: as much as LINK.md lets one reply carry, never more than the cap kept
      const chunk = 16 * 1024 - 64;
      scriptedEv.set('flood', {
        v: 1,
        st: 'ok',
        fx: Array.from({ length: 64 }, (_, i) => ['scrollback_append', bin(String.fromCharCode(97 + (i % 26)).repeat(chunk))]),
      });
      d.ext.channel.push('flood', {});
      await plat.waitCall('message', (r) => r.dev === 'device-11' && r.ev === 'flood');
      await d.c.heartbeat();
      const text = await replay(d);
      assert.equal(text, String.fromCharCode(97 + (63 % 26)).repeat(CAP), 'the newest cap bytes, no more');
      await metricIs('nhgw_local_shell_scrollbacks', 1);
      await metricIs('nhgw_local_shell_scrollback_bytes', CAP); // the ring stops growing at the cap
    } finally {
      await d.c.disconnect();
    }
  });

  it('leaving or rejoining extensions, and reconnecting, start an empty scrollback', async () => {
    let d = await shellDevice('device-12');
    try {
      d.out('before leave\n');
      await outputsHandled('device-12', 1);
      assert.equal(await replay(d), 'before leave\n');
      assert.equal(await d.c.leave(d.ext.channel), 'ok');
      await d.c.heartbeat(); // Phoenix resolves a leave at once: wait until the gateway had it
      assert.equal((await d.notify('replay:test.nobody')).st, 'not_joined');
      const ext = await d.c.join('extensions', { local_shell: '0.0.1' });
      assert.equal(ext.status, 'ok');
      d = { ...d, ext, out: (data) => ext.channel.push('local_shell:shell_output', { data }) };
      assert.equal(await replay(d), '', 'left: the scrollback went with the channel');
      d.out('again\n');
      await outputsHandled('device-12', 2);
      assert.equal(await replay(d), 'again\n');
      await d.c.disconnect();
      d = await shellDevice('device-12');
      assert.equal(await replay(d), '', 'a new connection: a new scrollback');
    } finally {
      await d.c.disconnect();
    }
  });

  it('scrollback effects on the device channel are ignored', async () => {
    const c = await connectPhx(gw.port, { device: 'device-13' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const col = await plat.collect('test.device.replay');
      const r = await plat.send(inbox, { v: 1, k: 'notify', dev: 'device-13', topic: 'device', msg: bin('replay:test.device.replay') }, { request: true });
      assert.equal(r.st, 'ok');
      await plat.waitCall('notify', (q) => q.dev === 'device-13' && q.topic === 'device');
      await c.heartbeat();
      await sleep(300);
      assert.equal(col.msgs.length, 0, 'no replay from the device channel');
      col.stop();
    } finally {
      await c.disconnect();
    }
  });

  it('malformed scrollback effects are refused whole; other sessions and this one go on', async () => {
    const a = await shellDevice('device-14');
    const b = await shellDevice('device-15');
    try {
      a.out('a-held\n');
      b.out('b-held\n');
      await outputsHandled('device-14', 1);
      await outputsHandled('device-15', 1);
      await metricIs('nhgw_local_shell_scrollbacks', 2);
      const m0 = await metrics();
      const ok0 = metric(m0, OK);
      const failed0 = metric(m0, FAILED);
      assert.equal(typeof ok0, 'number');
      assert.equal(typeof failed0, 'number');
      const invalid0 = gw.events('platform_reply_invalid').length;
      const bad = [
        [['scrollback_clear'], ['scrollback_append', 'not a bin']],
        [['scrollback_clear'], ['scrollback_replay', 'a..b']],
        [['scrollback_clear'], ['scrollback_replay', 'test.*']],
        [['scrollback_clear'], ['scrollback_replay', 'test.>']],
        [['scrollback_clear'], ['scrollback_replay', 'has space']],
        [['scrollback_clear'], ['scrollback_replay', '']],
        [['scrollback_clear'], ['scrollback_replay', 'x'.repeat(4097)]],
        [['scrollback_clear', 1]],
        [['scrollback_clear'], ['scrollback_append']],
        [['scrollback_clear'], ['scrollback_replay', 42]],
      ];
      for (const [i, fx] of bad.entries()) {
        scripted.set(`bad-${i}`, { v: 1, st: 'ok', fx });
        assert.equal((await a.notify(`bad-${i}`)).st, 'ok');
      }
      await waitFor(() => gw.events('platform_reply_invalid').length >= invalid0 + bad.length, 5000, 'every bad reply refused');
      assert.equal(await replay(a), 'a-held\n', 'nothing of a refused reply applied (its clear neither)');
      assert.equal(await replay(b), 'b-held\n', 'another session untouched');
      assert.deepEqual(await a.c.heartbeat(), { status: 'ok', response: {} });
      await metricIs(OK, ok0 + 2);
      assert.equal(metric(await metrics(), FAILED), failed0, 'a refused reply applies no replay: none failed');

      // the gateway's own limit on replay subjects: 256 bytes published, 257 not (nats-server
      // would close the worker's connection over a control line beyond 4 KiB)
      const at = `test.${'y'.repeat(251)}`;
      const over = `test.${'y'.repeat(252)}`;
      const col = await plat.collect(at);
      const colOver = await plat.collect(over);
      scripted.set('at-limit', { v: 1, st: 'ok', fx: [['scrollback_replay', at]] });
      scripted.set('over-limit', { v: 1, st: 'ok', fx: [['scrollback_replay', over], ['scrollback_replay', 'test.after']] });
      const after = await plat.collect('test.after');
      assert.equal((await a.notify('at-limit')).st, 'ok');
      const [m] = await col.wait(1);
      assert.equal(str(m.p.data), 'a-held\n');
      assert.equal((await a.notify('over-limit')).st, 'ok');
      await after.wait(1); // the next effect of the same reply still applies
      assert.equal(colOver.msgs.length, 0, 'a subject over 256 bytes is not published');
      assert.ok(gw.events('local_shell_replay_failed').length >= 1, 'and logged');
      await metricIs(FAILED, failed0 + 1);
      await metricIs(OK, ok0 + 4); // at-limit and test.after
      for (const x of [col, colOver, after]) x.stop();
      assert.deepEqual(await b.c.heartbeat(), { status: 'ok', response: {} });
    } finally {
      await a.c.disconnect();
      await b.c.disconnect();
    }
    await metricIs('nhgw_local_shell_scrollbacks', 0);
    await metricIs('nhgw_local_shell_scrollback_bytes', 0);
  });
});
