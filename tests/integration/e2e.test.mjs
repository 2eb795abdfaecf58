// The whole stack, end to end: real nats-server and redis-server, the reference platform
// (build/nhplatform), two gateways (build/nhgw --link nats --redis), the operator CLI
// (build/nhctl), and devices driven by the official Phoenix JavaScript client and by the raw
// client. Issue 4's acceptance list: the firmware update flow, shared secrets, duplicates across
// gateways, platform / NATS / Redis outages, timers.
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from './lib/certs.mjs';
import { startGateway, gwTest, sleep, waitFor } from './lib/gateway.mjs';
import { connectPhx, DEVICE_JOIN, EXTENSIONS_JOIN } from './lib/phx.mjs';
import { attemptUpgrade } from './lib/rawws.mjs';
import { decode, encode } from '@msgpack/msgpack';
import { apiRequest, connectNats, startNats, startRedis, startPlatform } from './lib/stack.mjs';
import { nh1Headers } from './lib/nh1.mjs';

const NHCTL = process.env.NHCTL_BIN || join(REPO, 'build', 'nhctl');
const NEW_FW = '7b2b1e2a-0000-4000-8000-000000000001';

describe('end to end: devices, gateways, platform, registry, nhctl', () => {
  let nats, redis, rc, platform, gwA, gwB;
  const gateways = () => [gwA, gwB];
  const it = gwTest(() => gwA);

  /** Run nhctl with --json against the stack; resolves {code, out (parsed when JSON), stderr}. */
  const nhctl = (args) =>
    new Promise((resolve) => {
      execFile(NHCTL, [...args, '--nats', nats.url, '--json'], { timeout: 15000 }, (err, stdout, stderr) => {
        let out = stdout;
        try {
          out = JSON.parse(stdout);
        } catch {
          /* not JSON: keep the text */
        }
        resolve({ code: err ? err.code ?? 1 : 0, out, stderr });
      });
    });

  const gatewayArgs = (id) => [
    '--link', 'nats', '--nats-url', nats.url, '--redis', redis.addr, '--gateway-id', id,
    '--link-timeout', '2s', '--registry-ttl', '6s',
  ];

  before(async () => {
    nats = await startNats();
    redis = await startRedis();
    rc = await redis.client();
    platform = await startPlatform({
      nats: nats.url, redis: redis.addr,
      args: ['--shared-secrets', '--extensions', 'health,geo', '--health-interval', '300ms'],
    });
    gwA = await startGateway({ args: gatewayArgs('gw-a') });
    gwB = await startGateway({ args: gatewayArgs('gw-b') });
    for (const g of gateways()) await g.waitForLog(/event=nats_connected/, 10000);
  });
  after(async () => {
    for (const g of gateways()) await g?.stop({ strict: false });
    await platform?.stop();
    await redis?.stop();
    await nats?.stop();
  });

  const registry = (dev) => rc.hgetall(`nh:dev:${dev}`);
  const deviceRow = async (dev) => {
    const r = await nhctl(['device', 'show', dev]);
    assert.equal(r.code, 0, `nhctl device show ${dev}: ${r.stderr}`);
    return r.out.device;
  };

  it('firmware update: connect → online → deployment → update → fwup_progress → offline', async () => {
    const c = await connectPhx(gwA.port, { device: 'device-10' });
    let closed = false;
    try {
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok', JSON.stringify(j.response));
      // the firmware uuid is written after the join reply went out: wait for it
      const entry = await waitFor(async () => {
        const e = await registry('device-10');
        return e?.fw ? e : null;
      }, 5000, 'registry entry with the firmware uuid');
      assert.equal(entry.gw, 'gw-a');
      assert.equal(entry.w, '0');
      assert.match(entry.cref, /^\d+$/);
      assert.equal(entry.fw, DEVICE_JOIN.nerves_fw_uuid, 'firmware uuid from the join reply');
      const list = await nhctl(['devices']);
      assert.equal(list.code, 0, list.stderr);
      const row = list.out.devices.find((d) => d.id === 'device-10');
      assert.equal(row?.online, true, JSON.stringify(list.out));

      const created = await nhctl([
        'deployment', 'create', '--name', 'e2e', '--firmware-uuid', NEW_FW, '--version', '1.1.0',
        '--url', 'https://firmware.example/e2e.fw', '--size', '1048577',
        '--checksum', 'AB'.repeat(32), '--partial-checksum', 'CD'.repeat(32), '--partial-checksum', 'EF'.repeat(32),
        '--architecture', 'arm', '--platform', 'rpi4', '--product', 'my_product',
      ]);
      assert.equal(created.code, 0, created.stderr);
      const depId = created.out.deployment.id;
      const up = await c.waitMessage((m) => m.topic === 'device' && m.event === 'update', 5000);
      assert.ok(up, 'update pushed to the device');
      const p = up.payload;
      assert.deepEqual(Object.keys(p).sort(), [
        'checksum', 'deployment_id', 'firmware_meta', 'firmware_url', 'partials_checksums', 'size', 'update_available',
      ]);
      assert.equal(p.update_available, true);
      assert.equal(p.firmware_url, 'https://firmware.example/e2e.fw');
      assert.equal(p.size, 1048577);
      assert.equal(p.checksum, 'AB'.repeat(32));
      assert.deepEqual(p.partials_checksums, ['CD'.repeat(32), 'EF'.repeat(32)]);
      assert.equal(p.deployment_id, depId);
      assert.equal(p.firmware_meta.uuid, NEW_FW);
      assert.equal(p.firmware_meta.version, '1.1.0');
      assert.equal(p.firmware_meta.platform, 'rpi4');

      j.channel.push('status_update', { status: 'received' });
      j.channel.push('fwup_progress', { stage: 'updating', value: 42 });
      await waitFor(async () => (await deviceRow('device-10')).progress === 42, 5000, 'progress 42 recorded');

      await c.disconnect();
      closed = true;
      await waitFor(async () => (await registry('device-10')) === null, 5000, 'registry entry removed');
      await waitFor(async () => {
        const l = await nhctl(['devices']);
        return l.out.devices.find((d) => d.id === 'device-10')?.online === false;
      }, 5000, 'nhctl shows device-10 offline');
      await nhctl(['deployment', 'delete', String(depId)]);
    } finally {
      if (!closed) await c.disconnect();
    }
  });

  // Issue 4's fan-out defect: the scan and deployment.delete used to make every moved channel call
  // the platform (`notify` follow); at scale those calls timed out and their `subscribe` was lost.
  // Both now move channels through the worker inbox (LINK.md §6.1), so a move costs no call at all.
  it('deployment.create and .delete move online devices between topics with no notify call; topic pushes reach them once', async () => {
    const devs = [['device-11', gwA], ['device-12', gwA], ['device-13', gwB]];
    const nc = await connectNats(nats.url);
    const cs = {};
    const notifies = [];
    const fw = (uuid) => ({ uuid, version: '1.2.0', url: `https://firmware.example/${uuid}.fw` });
    // the devices join into a base deployment that runs their own firmware (nothing to push)
    const base = (await apiRequest(nc, 'nh', 'deployment.create', { name: 'e2e-base', firmware: fw(DEVICE_JOIN.nerves_fw_uuid) })).deployment;
    assert.ok(base?.id, 'base deployment');
    try {
      for (const [d, g] of devs) {
        cs[d] = await connectPhx(g.port, { device: d });
        assert.equal((await cs[d].join('device', DEVICE_JOIN)).status, 'ok');
      }
      // every device is online in the registry, and its after_join notify is done
      for (const [d] of devs) {
        await waitFor(async () => (await registry(d))?.fw, 5000, `${d} in the registry`);
        await waitFor(async () => (await deviceRow(d)).connection_status === 'connected', 5000, `${d} connected`);
      }
      // see every notify call from now on (a plain subscriber gets a copy besides the queue group)
      const sub = nc.subscribe('nh.link.notify', {
        callback: (e, m) => {
          if (!e) notifies.push(decode(m.data));
        },
      });
      await nc.flush();
      for (const [d] of devs) assert.equal((await deviceRow(d)).deployment_id, base.id);
      const created = await apiRequest(nc, 'nh', 'deployment.create', { name: 'e2e-move', firmware: fw(NEW_FW) });
      assert.ok(!created.error, created.error);
      assert.equal(created.fanout, 'scan');
      assert.equal(created.matched, devs.length);
      assert.equal(created.moved, devs.length, 'every channel moved by its worker');
      assert.equal(created.move_failed, 0);
      const id = created.deployment.id;
      for (const [d] of devs) assert.equal((await deviceRow(d)).deployment_id, id);
      // the next firmware of this deployment goes out on its topic only
      const FW_NEXT = '7b2b1e2a-0000-4000-8000-0000000000aa';
      const upd = await apiRequest(nc, 'nh', 'deployment.update', { id, firmware: fw(FW_NEXT) });
      assert.equal(upd.fanout, 'topic');
      for (const [d] of devs) {
        const m = await cs[d].waitMessage((x) => x.event === 'update' && x.payload.firmware_meta?.uuid === FW_NEXT, 5000);
        assert.ok(m, `${d} got the topic push`);
        assert.equal(m.payload.deployment_id, id);
      }
      await sleep(200);
      const ours = () => notifies.filter((n) => devs.some(([d]) => d === n.dev));
      assert.deepEqual(ours(), [], 'no notify call for the move');

      // deleting it sends its followers back to the deployment they match now, moved by their
      // workers the same way: no call per device (at scale those calls timed out, and a device
      // whose `subscribe` was lost missed its next deployment's pushes)
      const del = await apiRequest(nc, 'nh', 'deployment.delete', { id });
      assert.equal(del.ok, true, JSON.stringify(del));
      assert.equal(del.fanout, 'scan');
      assert.equal(del.matched, devs.length, 'every device was in it');
      assert.equal(del.moved, devs.length, 'every channel moved back by its worker');
      assert.equal(del.move_failed, 0);
      assert.equal(del.pushed, 0, 'the base deployment is the firmware they run');
      // the moves are done when the API answers: no waiting
      for (const [d] of devs) assert.equal((await deviceRow(d)).deployment_id, base.id);
      const FW_BACK = '7b2b1e2a-0000-4000-8000-0000000000bb';
      assert.equal((await apiRequest(nc, 'nh', 'deployment.update', { id: base.id, firmware: fw(FW_BACK) })).fanout, 'topic');
      const isBack = (x) => x.event === 'update' && x.payload.firmware_meta?.uuid === FW_BACK;
      for (const [d] of devs) assert.ok(await cs[d].waitMessage(isBack, 5000), `${d} got the base deployment's push`);
      await sleep(300);
      for (const [d] of devs) {
        assert.equal(cs[d].messages.filter(isBack).length, 1, `${d}: the base push exactly once`);
        assert.equal(cs[d].messages.filter((x) => x.event === 'update' && x.payload.firmware_meta?.uuid === FW_NEXT).length, 1);
      }
      assert.deepEqual(ours(), [], 'no notify call for the delete');

      // deleting the base too: they match nothing, so they are only unsubscribed
      const del2 = await apiRequest(nc, 'nh', 'deployment.delete', { id: base.id });
      assert.equal(del2.matched, devs.length);
      assert.equal(del2.moved, devs.length);
      assert.equal(del2.move_failed, 0);
      assert.equal(del2.pushed, 0);
      for (const [d] of devs) assert.equal((await deviceRow(d)).deployment_id, null);
      // a message on the old topic reaches nobody; an inbox push sent after it does (the channels
      // are alive, and the topic message would have arrived first)
      const FW_DEAD = '7b2b1e2a-0000-4000-8000-0000000000cc';
      nc.publish(`nh.topic.deployment:${base.id}`, encode({ v: 1, k: 'push', ev: 'update', p: { firmware_meta: { uuid: FW_DEAD } } }));
      await nc.flush();
      await sleep(200);
      for (const [d] of devs) {
        assert.equal((await apiRequest(nc, 'nh', 'device.identify', { id: d })).status, 'ok', d);
        assert.ok(await cs[d].waitMessage((x) => x.event === 'identify', 5000), `${d} identify`);
        assert.equal(cs[d].messages.filter((x) => x.payload?.firmware_meta?.uuid === FW_DEAD).length, 0, `${d} left the topic`);
      }
      assert.deepEqual(ours(), [], 'no notify call for the second delete');
      sub.unsubscribe();
    } finally {
      for (const [d] of devs) await cs[d]?.disconnect();
      await apiRequest(nc, 'nh', 'deployment.delete', { id: base.id });
      await nc.close();
    }
  });

  it('shared secret: a signed device connects; wrong secret, stale signature, unknown key → 401', async () => {
    const key = await nhctl(['product-key', 'create', '--name', 'e2e']);
    assert.equal(key.code, 0, key.stderr);
    const { key: k, secret } = key.out;
    assert.match(k, /^nhp_/);
    const c = await connectPhx(gwB.port, { device: null, headers: nh1Headers(k, secret, 'ss-device-1') });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const entry = await waitFor(() => registry('ss-device-1'), 5000, 'registry entry');
      assert.equal(entry.gw, 'gw-b');
    } finally {
      await c.disconnect();
    }
    const cases = [
      ['wrong secret', nh1Headers(k, secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A'), 'ss-device-2')],
      ['stale signature', nh1Headers(k, secret, 'ss-device-2', Math.floor(Date.now() / 1000) - 600)],
      ['unknown key', nh1Headers('nhp_doesnotexist', secret, 'ss-device-2')],
    ];
    for (const [what, headers] of cases) {
      const r = await attemptUpgrade(gwA.port, null, {}, { headers });
      assert.equal(r.outcome, 'http', what);
      assert.equal(r.res.status, 401, what);
      assert.equal(r.res.headers['nh-connection-error-reason'], undefined, `${what}: no reason told to the peer`);
      r.conn.destroy();
    }
    const none = await attemptUpgrade(gwA.port, null);
    assert.equal(none.res.status, 401);
    assert.match(none.res.headers['nh-connection-error-reason'], /no certificate pair or shared secrets/);
    none.conn.destroy();
  });

  it('a duplicate device across two gateways: the older is closed with 1001, one registry entry', async () => {
    const old = await connectPhx(gwA.port, { device: 'device-11' });
    try {
      assert.equal((await old.join('device', DEVICE_JOIN)).status, 'ok');
      await waitFor(async () => (await registry('device-11'))?.gw === 'gw-a', 5000, 'held by gw-a');
      const newer = await connectPhx(gwB.port, { device: 'device-11' });
      try {
        assert.equal((await newer.join('device', DEVICE_JOIN)).status, 'ok');
        const ev = await old.waitClose(5000);
        assert.equal(ev?.code, 1001, 'the older connection is closed with 1001');
        const entry = await registry('device-11');
        assert.equal(entry.gw, 'gw-b');
        assert.deepEqual(await rc.cmd('KEYS', 'nh:dev:device-11*'), ['nh:dev:device-11']);
        assert.equal(await rc.cmd('SISMEMBER', 'nh:gw:gw-a:devs', 'device-11'), 0);
        assert.deepEqual((await newer.heartbeat()).status, 'ok');
      } finally {
        await newer.disconnect();
      }
    } finally {
      await old.disconnect();
    }
  });

  it('two connections of one device at the same instant: exactly one survives', async () => {
    const [a, b] = await Promise.all([
      connectPhx(gwA.port, { device: 'device-12' }),
      connectPhx(gwB.port, { device: 'device-12' }),
    ]);
    try {
      await sleep(1500);
      const open = [a, b].filter((c) => !c.closed);
      assert.equal(open.length, 1, 'one connection left');
      const entry = await registry('device-12');
      assert.equal(entry.gw, open[0] === a ? 'gw-a' : 'gw-b');
    } finally {
      await a.disconnect();
      await b.disconnect();
    }
  });

  it('extension timers: health:check arrives repeatedly from start_timer effects', async () => {
    const c = await connectPhx(gwA.port, { device: 'device-13' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const ext = await c.join('extensions', EXTENSIONS_JOIN);
      assert.equal(ext.status, 'ok');
      assert.ok(ext.response.includes('health'), JSON.stringify(ext.response));
      ext.channel.push('health:attached', {});
      await waitFor(() => c.messages.filter((m) => m.topic === 'extensions' && m.event === 'health:check').length >= 3,
        5000, 'three health:check pushes (one on attach, then the timer)');
    } finally {
      await c.disconnect();
    }
  });

  it('platform stopped: new devices get 503, connected ones stay; platform back: devices join', async () => {
    const c = await connectPhx(gwA.port, { device: 'device-14' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      await platform.stop();
      const r = await attemptUpgrade(gwA.port, 'device-15');
      assert.equal(r.res.status, 503);
      assert.equal(r.res.headers['nh-connection-error-reason'], 'the platform could not be reached to authenticate this device');
      r.conn.destroy();
      assert.equal((await c.heartbeat()).status, 'ok');
      await platform.restart();
      const d = await connectPhx(gwA.port, { device: 'device-15' });
      assert.equal((await d.join('device', DEVICE_JOIN)).status, 'ok');
      await d.disconnect();
      assert.equal(c.closed, false);
    } finally {
      await c.disconnect();
    }
  });

  it('NATS restarted: sessions survive and platform calls resume', async () => {
    const c = await connectPhx(gwB.port, { device: 'device-16' });
    try {
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok');
      const mark = gwB.log().length;
      await nats.restart();
      await gwB.waitForLog(/event=nats_connected/, 10000, mark);
      await platform.waitReady(10000);
      assert.equal(c.closed, false);
      assert.equal((await c.heartbeat()).status, 'ok');
      j.channel.push('fwup_progress', { stage: 'updating', value: 7 });
      await waitFor(async () => (await deviceRow('device-16')).progress === 7, 8000, 'message reached the platform');
    } finally {
      await c.disconnect();
    }
  });

  it('Redis restarted with its data lost: the registry is rebuilt from the live sessions', async () => {
    const a = await connectPhx(gwA.port, { device: 'device-17' });
    const b = await connectPhx(gwB.port, { device: 'device-18' });
    try {
      assert.equal((await a.join('device', DEVICE_JOIN)).status, 'ok');
      assert.equal((await b.join('device', DEVICE_JOIN)).status, 'ok');
      await waitFor(() => registry('device-18'), 5000, 'entries written');
      await redis.restart();
      rc = await redis.client();
      assert.equal(await registry('device-17'), null, 'Redis came back empty');
      await waitFor(async () => (await registry('device-17'))?.gw === 'gw-a', 10000, 'device-17 re-registered');
      await waitFor(async () => (await registry('device-18'))?.gw === 'gw-b', 10000, 'device-18 re-registered');
      assert.equal(await rc.cmd('SISMEMBER', 'nh:gw:gw-a:devs', 'device-17'), 1);
      assert.ok((await rc.cmd('PTTL', 'nh:dev:device-17')) > 0, 'with a TTL');
      assert.equal(a.closed || b.closed, false);
    } finally {
      await a.disconnect();
      await b.disconnect();
    }
  });
});
