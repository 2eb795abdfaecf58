// The reference platform (build/nhplatform) against real nats-server and redis-server, with this
// file acting as the gateway: link calls over NATS in msgpack (proto/LINK.md §4), a fake worker
// inbox (§6) whose registry entry (§8) the test writes into Redis, shared-topic subscriptions
// (§7), and the operator API (ops/README.md "Operator API").
import { decode, encode } from '@msgpack/msgpack';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { b64url, etfMsg, nh1Headers, nh1Sign } from './lib/nh1.mjs';
import { after, before, describe, test } from 'node:test';
import {
  apiRequest,
  connectNats,
  sleep,
  startNats,
  startPlatform,
  startRedis,
  waitFor,
} from './lib/stack.mjs';

const P = 'nh';
const GW = 'gw-test';
const HEALTH_MS = 500;
const SCRIPT_MS = 300;

let nats;
let redis;
let platform;
let nc; // the test's own NATS connection (gateway + operator)
let rc; // Redis client
let crefSeq = 1000;

// ---- the gateway side of the link ----

async function call(name, body, prefix = P) {
  const req = { v: 1, gw: GW, w: 0, cref: body.cref ?? crefSeq++, ...body };
  const m = await nc.request(`${prefix}.link.${name}`, encode(req), { timeout: 5000 });
  return decode(m.data);
}

const fp = () => randomBytes(20).toString('hex').toUpperCase();
const api = (verb, body = {}, prefix = P) => apiRequest(nc, prefix, verb, body);
const bytes = (s) => new Uint8Array(Buffer.from(s));

/** A device channel's life as the gateway drives it: auth → connect → join → after_join notify. */
async function joinDevice(dev, s, payload, cref) {
  const j = await call('join', { dev, topic: 'device', s, p: payload, cref });
  assert.equal(j.st, 'ok', `join ${dev}: ${j.reason}`);
  const self = j.fx.find((e) => e[0] === 'send_self');
  assert.ok(self, 'join ends with send_self after_join');
  const n = await call('notify', { dev, topic: 'device', s: j.s, msg: self[1], cref });
  assert.equal(n.st, 'ok');
  return { join: j, after: n, session: n.s ?? j.s };
}

function linkPayload(over = {}) {
  // what nerves_hub_link 2.x sends (device-protocol.md §3.3.1)
  return {
    nerves_fw_uuid: 'aaaaaaaa-0000-4000-8000-000000000001',
    nerves_fw_product: 'demo',
    nerves_fw_version: '1.0.0',
    nerves_fw_architecture: 'arm',
    nerves_fw_platform: 'rpi4',
    nerves_fw_author: 'ACME',
    nerves_fw_description: 'demo firmware',
    nerves_fw_vcs_identifier: 'abc123',
    nerves_fw_misc: '',
    nerves_fw_devpath: '/dev/mmcblk0',
    fwup_version: '1.10.2',
    device_api_version: '2.3.0',
    console_version: '2.0.0',
    currently_downloading_uuid: null,
    meta: { firmware_validated: true, firmware_auto_revert_detected: false },
    fwup_public_keys: 'on_connect',
    ...over,
  };
}

/** Writes a registry entry (LINK.md §8) as a gateway's claim would. */
async function register(dev, { gw = GW, w = 7, cref = 42, alive = true } = {}) {
  await rc.cmd('HSET', `${P}:dev:${dev}`, 'gw', gw, 'w', String(w), 'cref', String(cref), 'at', String(Date.now()),
    'peer', '127.0.0.1:5000');
  await rc.cmd('PEXPIRE', `${P}:dev:${dev}`, '600000');
  await rc.cmd('SADD', `${P}:gw:${gw}:devs`, dev);
  await rc.cmd('SADD', `${P}:gws`, gw);
  if (alive) await rc.cmd('SET', `${P}:gw:${gw}:alive`, String(Date.now()), 'PX', '600000');
}

/** A fake worker inbox: collects decoded messages; answers requests with `status()`. */
function fakeInbox(gw, w, status = () => 'ok') {
  const got = [];
  const sub = nc.subscribe(`${P}.gw.${gw}.${w}`, {
    callback: (err, m) => {
      if (err) return;
      const d = decode(m.data);
      got.push(d);
      // the reply to `topics` (LINK.md §6.1) counts the entries applied: all of them here
      if (m.reply) m.respond(encode(d.k === 'topics' ? { v: 1, st: 'ok', n: d.devs.length } : { v: 1, st: status(d) }));
    },
  });
  return {
    got,
    sub,
    next: (pred, what) => waitFor(() => got.find(pred), 5000, what),
  };
}

/** Collects JSON events on <prefix>.events.<dev>. */
function watchEvents(dev) {
  const got = [];
  const sub = nc.subscribe(`${P}.events.${dev}`, {
    callback: (err, m) => {
      if (!err) got.push(JSON.parse(Buffer.from(m.data).toString()));
    },
  });
  return { got, sub, next: (event) => waitFor(() => got.find((e) => e.event === event), 5000, `event ${event}`) };
}

// ---- lifecycle ----

before(async () => {
  nats = await startNats();
  redis = await startRedis();
  platform = await startPlatform({
    nats: nats.url,
    redis: redis.addr,
    prefix: P,
    args: ['--shared-secrets', '--extensions', 'health,geo', '--health-interval', `${HEALTH_MS}ms`,
      '--script-timeout', `${SCRIPT_MS}ms`, '--fwup-public-key', 'fwup-key-1', '--fwup-public-key', 'fwup-key-2',
      '--reap-interval', '300ms', '--inbox-timeout', '1s', '--threads', '2', '--log-level', 'debug'],
  });
  nc = await connectNats(nats.url);
  rc = await redis.client();
});

after(async () => {
  await nc?.close().catch(() => {});
  await platform?.stop();
  await redis?.stop();
  await nats?.stop();
});

// ---- tests ----

describe('auth', () => {
  test('a known certificate fingerprint authenticates as its device', async () => {
    const f = fp();
    const c = await api('devices.create', { identifier: 'known-1', fingerprint: f.toLowerCase(), tags: ['a'] });
    assert.equal(c.device.id, 'known-1');
    assert.deepEqual(c.device.fingerprints, [f]);
    const r = await call('auth', { peer: '127.0.0.1:1', fp: f, der: bytes('der'), cn: 'some-other-cn' });
    assert.equal(r.st, 'ok');
    assert.equal(r.dev, 'known-1');
    assert.ok(r.s instanceof Uint8Array && r.s.length > 0, 'socket info is a bin');
  });

  test('an unknown certificate is auto-registered under its CN, then known by fingerprint', async () => {
    const f = fp();
    const ev = watchEvents('auto-1');
    const r = await call('auth', { peer: '127.0.0.1:2', fp: f, der: bytes('der'), cn: 'auto-1' });
    assert.equal(r.st, 'ok');
    assert.equal(r.dev, 'auto-1');
    await ev.next('registered');
    ev.sub.unsubscribe();
    const again = await call('auth', { peer: '127.0.0.1:2', fp: f, der: bytes('der'), cn: 'ignored-now' });
    assert.equal(again.dev, 'auto-1');
    const show = await api('devices.show', { id: 'auto-1' });
    assert.deepEqual(show.device.fingerprints, [f]);
  });

  test('refusals carry a reason', async () => {
    // CN taken by a device with another certificate
    let r = await call('auth', { peer: '127.0.0.1:3', fp: fp(), der: bytes('d'), cn: 'known-1' });
    assert.equal(r.st, 'refused');
    assert.match(r.reason, /another certificate/);
    // no CN
    r = await call('auth', { peer: '127.0.0.1:3', fp: fp(), der: bytes('d'), cn: '' });
    assert.equal(r.st, 'refused');
    assert.match(r.reason, /common name/);
    // a CN that cannot be a device id
    r = await call('auth', { peer: '127.0.0.1:3', fp: fp(), der: bytes('d'), cn: 'a.b' });
    assert.equal(r.st, 'refused');
    // neither certificate nor headers
    r = await call('auth', { peer: '127.0.0.1:3' });
    assert.equal(r.st, 'refused');
    assert.match(r.reason, /no certificate pair or shared secrets/);
  });

  test('a pre-registered device without certificate takes its first certificate', async () => {
    await api('devices.create', { identifier: 'pre-1' });
    const f = fp();
    const r = await call('auth', { peer: '127.0.0.1:4', fp: f, der: bytes('d'), cn: 'pre-1' });
    assert.equal(r.st, 'ok');
    assert.equal(r.dev, 'pre-1');
    assert.deepEqual((await api('devices.show', { id: 'pre-1' })).device.fingerprints, [f]);
  });
});

describe('shared secrets (NH1)', () => {
  test('the JS signer reproduces the device-protocol.md §2.4 test vector', () => {
    const sig = nh1Sign({
      key: 'nhp_ExampleProductKey00000000000000000000000000',
      secret: 'ExampleProductSecret00000000000000000000000',
      identifier: 'nerves-abcd',
      time: 1767225600,
    });
    assert.equal(sig, 'SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg');
  });

  test('a product key registers the signed identifier; bad signatures are refused with reasons', async () => {
    const k = await api('product_key.create', { name: 'prod-a' });
    assert.match(k.key, /^nhp_[A-Za-z0-9+/]{43}$/);
    assert.match(k.secret, /^[A-Za-z0-9+/]{43}$/);
    const ok = await call('auth', { peer: '127.0.0.1:9', x: nh1Headers(k.key, k.secret, 'psk-1') });
    assert.equal(ok.st, 'ok', ok.reason);
    assert.equal(ok.dev, 'psk-1');
    assert.equal((await api('devices.show', { id: 'psk-1' })).device.product, 'prod-a');
    // the same key again: the device exists in this product
    assert.equal((await call('auth', { peer: '127.0.0.1:9', x: nh1Headers(k.key, k.secret, 'psk-1') })).st, 'ok');

    const refused = async (x, re) => {
      const r = await call('auth', { peer: '127.0.0.1:9', x });
      assert.equal(r.st, 'refused', JSON.stringify(x));
      assert.ok(r.reason && r.reason.length > 0, 'a reason');
      if (re) assert.match(r.reason, re);
      return r.reason;
    };
    const wrong = await refused(nh1Headers(k.key, 'x'.repeat(43), 'psk-1'));
    const stale = await refused(nh1Headers(k.key, k.secret, 'psk-1', Math.floor(Date.now() / 1000) - 200));
    assert.notEqual(wrong, stale, 'wrong secret and stale signature have different reasons');
    const future = await refused(nh1Headers(k.key, k.secret, 'psk-1', Math.floor(Date.now() / 1000) + 120));
    assert.ok(future);
    await refused(nh1Headers(`nhp_${'Z'.repeat(43)}`, k.secret, 'psk-1'), /unknown/);
    const full = nh1Headers(k.key, k.secret, 'psk-1');
    await refused({ 'x-nh-key': k.key }, /signature/);
    await refused({ 'x-nh-key': k.key, 'x-nh-signature': full['x-nh-signature'], 'x-nh-time': full['x-nh-time'] });
    await refused({ 'x-nh-alg': full['x-nh-alg'], 'x-nh-key': k.key, 'x-nh-signature': full['x-nh-signature'] });
    await refused({ 'x-forwarded-for': '10.0.0.1' });
    // tampered signature (identifier swapped in the token without re-signing)
    const [h, , mac] = full['x-nh-signature'].split('.');
    await refused({ ...full, 'x-nh-signature': `${h}.${b64url(etfMsg('other', Date.now()))}.${mac}` });
  });

  test('a product key cannot claim an identifier of another product', async () => {
    const k = await api('product_key.create', { name: 'prod-b' });
    const r = await call('auth', { peer: '127.0.0.1:9', x: nh1Headers(k.key, k.secret, 'psk-1') });
    assert.equal(r.st, 'refused');
    assert.match(r.reason, /another product/);
  });

  test('a device key authenticates only its own identifier', async () => {
    const k = await api('device_key.create', { id: 'known-1' });
    assert.match(k.key, /^nhd_/);
    const ok = await call('auth', { peer: '127.0.0.1:9', x: nh1Headers(k.key, k.secret, 'known-1') });
    assert.equal(ok.st, 'ok', ok.reason);
    assert.equal(ok.dev, 'known-1');
    const bad = await call('auth', { peer: '127.0.0.1:9', x: nh1Headers(k.key, k.secret, 'auto-1') });
    assert.equal(bad.st, 'refused');
    assert.match(bad.reason, /does not match/);
    const nf = await api('device_key.create', { id: 'nobody' });
    assert.equal(nf.code, 'not_found');
  });
});

describe('device channel', () => {
  test('connect, join with a nerves_hub_link payload, after_join effects, disconnect', async () => {
    const f = fp();
    const a = await call('auth', { peer: '127.0.0.1:10', fp: f, der: bytes('d'), cn: 'join-1' });
    const cref = 5001;
    const ev = watchEvents('join-1');
    const c = await call('connect', { dev: 'join-1', s: a.s, peer: '127.0.0.1:10', cref });
    assert.equal(c.st, 'ok');
    await ev.next('connect');
    assert.equal((await api('devices.show', { id: 'join-1' })).device.connection_status, 'connecting');

    const { join, after } = await joinDevice('join-1', a.s, linkPayload(), cref);
    assert.deepEqual(join.r, {});
    assert.equal(join.fw, 'aaaaaaaa-0000-4000-8000-000000000001');
    assert.ok(join.s instanceof Uint8Array);
    assert.deepEqual(join.fx.map((e) => e[0]), ['send_self'], 'no deployment yet: only after_join');
    assert.deepEqual(after.fx, [
      ['push', 'fwup_public_keys', { keys: ['fwup-key-1', 'fwup-key-2'] }],
      ['push', 'extensions:get', {}],
    ]);
    const show = (await api('devices.show', { id: 'join-1' })).device;
    assert.equal(show.connection_status, 'connected');
    assert.equal(show.firmware_uuid, 'aaaaaaaa-0000-4000-8000-000000000001');
    assert.equal(show.firmware_version, '1.0.0');
    assert.equal(show.device_api_version, '2.3.0');
    assert.equal(show.validated, true);
    await ev.next('join');

    // an old API version gets neither extensions:get nor (without on_connect) keys
    const old = await joinDevice('join-1', a.s, linkPayload({ device_api_version: '2.0.0', fwup_public_keys: undefined }), cref);
    assert.deepEqual(old.after.fx ?? [], []);

    // a stale disconnect (another connection) does not touch the current one
    await nc.publish(`${P}.link.disconnect`, encode({ v: 1, gw: GW, w: 0, cref: 1, dev: 'join-1', s: a.s, reason: 'kicked' }));
    await waitFor(() => ev.got.find((e) => e.event === 'disconnect' && e.stale === true), 5000, 'stale disconnect');
    assert.equal((await api('devices.show', { id: 'join-1' })).device.connection_status, 'connected');
    await nc.publish(`${P}.link.disconnect`, encode({ v: 1, gw: GW, w: 0, cref, dev: 'join-1', s: a.s, reason: 'closed' }));
    await waitFor(() => ev.got.find((e) => e.event === 'disconnect' && e.stale === false), 5000, 'disconnect');
    const d = (await api('devices.show', { id: 'join-1' })).device;
    assert.equal(d.connection_status, 'disconnected');
    assert.equal(d.disconnect_reason, 'closed');
    ev.sub.unsubscribe();
  });

  test('a batched heartbeat refreshes last_seen of every device in it', async () => {
    const before1 = (await api('devices.show', { id: 'known-1' })).device.last_seen ?? 0;
    const before2 = (await api('devices.show', { id: 'auto-1' })).device.last_seen ?? 0;
    await sleep(5);
    nc.publish(`${P}.link.heartbeat`, encode({ v: 1, gw: GW, w: 0, devs: [['known-1', bytes('s')], ['auto-1', bytes('s')]] }));
    await waitFor(async () => (await api('devices.show', { id: 'known-1' })).device.last_seen > before1, 5000, 'last_seen');
    assert.ok((await api('devices.show', { id: 'auto-1' })).device.last_seen > before2);
  });

  test('device messages: progress, status, validation, interface, unknown', async () => {
    const a = await call('auth', { peer: '127.0.0.1:11', fp: fp(), der: bytes('d'), cn: 'msg-1' });
    const { session } = await joinDevice('msg-1', a.s, linkPayload({ meta: { firmware_validated: false } }), 1);
    const ev = watchEvents('msg-1');
    const msg = (event, p) => call('message', { dev: 'msg-1', topic: 'device', s: session, ev: event, p });
    assert.equal((await api('devices.show', { id: 'msg-1' })).device.validated, false);

    let r = await msg('fwup_progress', { stage: 'updating', value: 42 });
    assert.equal(r.st, 'ok');
    assert.deepEqual(r.fx ?? [], [], 'device pushes get no effects');
    let d = (await api('devices.show', { id: 'msg-1' })).device;
    assert.equal(d.status, 'updating');
    assert.equal(d.progress, 42);
    const e = await ev.next('fwup_progress');
    assert.equal(e.value, 42);
    assert.equal(e.dev, 'msg-1');
    assert.equal(typeof e.ts, 'number');

    await msg('fwup_progress', { value: 100 });
    d = (await api('devices.show', { id: 'msg-1' })).device;
    assert.equal(d.status, 'completed');
    assert.equal(d.progress, null);

    await msg('status_update', { status: 'FWUP ERROR: bad', reason: 'x' });
    d = (await api('devices.show', { id: 'msg-1' })).device;
    assert.equal(d.status, 'failed');
    assert.equal(d.last_status.payload.reason, 'x');

    await msg('firmware_validated', {});
    assert.equal((await api('devices.show', { id: 'msg-1' })).device.validated, true);
    await msg('report_network_interface', { interface: 'wlan0' });
    assert.equal((await api('devices.show', { id: 'msg-1' })).device.network_interface, 'wifi');
    await msg('connection_types', { values: ['ethernet', 'wifi'] });
    assert.deepEqual((await api('devices.show', { id: 'msg-1' })).device.connection_types, ['ethernet', 'wifi']);
    r = await msg('no_such_event', {});
    assert.equal(r.st, 'ok');
    await msg('status_update', { no_status: 1 });
    assert.equal((await api('devices.show', { id: 'msg-1' })).device.unhandled_messages, 2);
    ev.sub.unsubscribe();
  });
});

describe('deployments', () => {
  const FW2 = {
    uuid: 'bbbbbbbb-0000-4000-8000-000000000002',
    version: '1.1.0',
    url: 'https://firmware.example/demo-1.1.0.fw',
    size: 1048577,
    checksum: 'ab'.repeat(32),
    partials_checksums: ['cd'.repeat(32), 'ef'.repeat(32)],
    architecture: 'arm',
    platform: 'rpi4',
    product: 'demo',
    author: 'ACME',
    description: 'demo 1.1.0',
    vcs_identifier: 'def456',
  };
  const expectedPayload = (fw, id) => ({
    update_available: true,
    firmware_url: fw.url,
    firmware_meta: {
      architecture: fw.architecture ?? null,
      author: fw.author ?? null,
      description: fw.description ?? null,
      misc: fw.misc ?? null,
      platform: fw.platform ?? null,
      product: fw.product ?? null,
      uuid: fw.uuid,
      vcs_identifier: fw.vcs_identifier ?? null,
      version: fw.version,
    },
    size: fw.size ?? null,
    checksum: fw.checksum ? fw.checksum.toUpperCase() : null,
    partials_checksums: (fw.partials_checksums ?? []).map((c) => c.toUpperCase()),
    deployment_id: id,
  });
  let depId;
  let tagged; // {session, cref}

  test('a new deployment pushes `update` through the inbox of matching online devices', async () => {
    // three devices: tagged+1.0.0 (matches), untagged (no), tagged+0.9.0 (version excluded)
    const devs = {};
    for (const [id, tags, version] of [['dep-a', ['beta'], '1.0.0'], ['dep-b', [], '1.0.0'], ['dep-c', ['beta'], '0.9.0']]) {
      await api('devices.create', { identifier: id, fingerprint: fp(), tags });
      await call('connect', { dev: id, s: bytes('x'), peer: '127.0.0.1:1', cref: 42 });
      const j = await joinDevice(id, bytes('x'), linkPayload({ nerves_fw_version: version }), 42);
      assert.ok(!j.join.fx.some((e) => e[0] === 'subscribe'), 'no deployment yet');
      devs[id] = j.session;
      await register(id, { w: 7, cref: 42 });
    }
    const inbox = fakeInbox(GW, 7);
    const ev = watchEvents('dep-a');
    const c = await api('deployment.create', {
      name: 'beta-rollout',
      firmware: FW2,
      conditions: { tags: ['beta'], version: '~> 1.0' },
    });
    assert.ok(!c.error, c.error);
    depId = c.deployment.id;
    assert.equal(typeof depId, 'number');
    assert.equal(c.matched, 1);
    assert.equal(c.pushed, 1);
    const push = await inbox.next((m) => m.k === 'push' && m.dev === 'dep-a', 'inbox push to dep-a');
    assert.equal(push.v, 1);
    assert.equal(push.cref, 42);
    assert.equal(push.topic, 'device');
    assert.equal(push.ev, 'update');
    assert.deepEqual(push.p, expectedPayload(FW2, depId));
    assert.equal(Object.keys(push.p).length, 7);
    await ev.next('update_sent');
    // the worker moves the channel onto the deployment's topic itself: no notify call
    const move = await inbox.next((m) => m.k === 'topics', 'topics move');
    assert.deepEqual(move, { v: 1, k: 'topics', topic: 'device', devs: [['dep-a', 42, null, `deployment:${depId}`]] });
    assert.equal(c.moved, 1);
    assert.equal(c.move_failed, 0);
    await sleep(300);
    assert.equal(inbox.got.filter((m) => m.k === 'notify').length, 0, 'no follow notify');
    const named = inbox.got.flatMap((m) => (m.k === 'topics' ? m.devs.map((e) => e[0]) : [m.dev]));
    assert.deepEqual(named.filter((d) => d !== 'dep-a'), [], 'non-matching devices got nothing');
    const shown = (await api('devices.show', { id: 'dep-a' })).device;
    assert.equal(shown.deployment_id, depId);
    assert.equal(shown.inflight_update.uuid, FW2.uuid);
    inbox.sub.unsubscribe();
    ev.sub.unsubscribe();
    // re-create with the same name: conflict
    assert.equal((await api('deployment.create', { name: 'beta-rollout', firmware: FW2 })).code, 'conflict');
  });

  test('a device joining later gets subscribe on join and `update` after join', async () => {
    await api('devices.create', { identifier: 'dep-d', fingerprint: fp(), tags: ['beta', 'x'] });
    const j = await joinDevice('dep-d', bytes('x'), linkPayload({ nerves_fw_version: '1.2.3' }), 9);
    assert.deepEqual(j.join.fx[0], ['subscribe', `deployment:${depId}`]);
    assert.equal(j.join.fx[1][0], 'send_self');
    const upd = j.after.fx.find((e) => e[0] === 'push' && e[1] === 'update');
    assert.ok(upd, 'update pushed after join');
    assert.deepEqual(upd[2], expectedPayload(FW2, depId));
    tagged = { session: j.session, cref: 9 };
    // rejoin while downloading the target: no second update
    const again = await joinDevice('dep-d', bytes('x'), linkPayload({ nerves_fw_version: '1.2.3', currently_downloading_uuid: FW2.uuid }), 9);
    assert.ok(!again.after.fx?.some((e) => e[1] === 'update'));
    // running the target firmware: nothing to do
    const done = await joinDevice('dep-d', bytes('x'), linkPayload({ nerves_fw_uuid: FW2.uuid, nerves_fw_version: '1.1.0' }), 9);
    assert.ok(!done.after.fx?.some((e) => e[1] === 'update'));
  });

  test('status failed clears the in-flight update and puts the device in the penalty box', async () => {
    const j = await joinDevice('dep-d', bytes('x'), linkPayload({ nerves_fw_version: '1.2.3' }), 9);
    assert.ok(j.after.fx.some((e) => e[1] === 'update'));
    await call('message', { dev: 'dep-d', topic: 'device', s: j.session, ev: 'status_update', p: { status: 'failed', reason: 'Update failed : x' } });
    const d = (await api('devices.show', { id: 'dep-d' })).device;
    assert.equal(d.inflight_update, null);
    assert.ok(d.blocked_until > Date.now());
    const j2 = await joinDevice('dep-d', bytes('x'), linkPayload({ nerves_fw_version: '1.2.3' }), 9);
    assert.ok(!j2.after.fx?.some((e) => e[1] === 'update'), 'blocked: no update');
  });

  test('changing only the firmware is one shared-topic push with skip_fw', async () => {
    const got = [];
    const sub = nc.subscribe(`${P}.topic.deployment:${depId}`, { callback: (e, m) => !e && got.push(decode(m.data)) });
    await nc.flush();
    const FW3 = { ...FW2, uuid: 'cccccccc-0000-4000-8000-000000000003', version: '1.2.0', url: 'https://firmware.example/1.2.0.fw' };
    const r = await api('deployment.update', { id: depId, firmware: FW3 });
    assert.equal(r.fanout, 'topic');
    await waitFor(() => got.length === 1, 5000, 'topic push');
    assert.deepEqual(got[0], { v: 1, k: 'push', ev: 'update', p: expectedPayload(FW3, depId), skip_fw: FW3.uuid });
    sub.unsubscribe();
    const list = await api('deployment.list');
    assert.equal(list.deployments.find((d) => d.id === depId).firmware.uuid, FW3.uuid);
  });

  test('deleting a deployment moves its online devices off its topic; a follow notify covers the rest', async () => {
    // dep-a (online, recorded in depId) is moved by its worker; dep-d joined into depId but has no
    // registry entry, so only the follow notify on the dead topic can reach it
    const got = [];
    const sub = nc.subscribe(`${P}.topic.deployment:${depId}`, { callback: (e, m) => !e && got.push(decode(m.data)) });
    const inbox = fakeInbox(GW, 7);
    await nc.flush();
    const del = await api('deployment.delete', { id: depId });
    assert.equal(del.ok, true);
    assert.equal(del.deployment.id, depId);
    assert.equal(del.fanout, 'scan');
    assert.equal(del.matched, 1, 'dep-a was in it');
    assert.equal(del.pushed, 0, 'dep-a matches nothing else');
    assert.equal(del.moved, 1);
    assert.equal(del.move_failed, 0);
    const moves = inbox.got.filter((m) => m.k === 'topics');
    assert.deepEqual(moves, [{ v: 1, k: 'topics', topic: 'device', devs: [['dep-a', 42, `deployment:${depId}`, null]] }]);
    assert.equal(inbox.got.filter((m) => m.k !== 'topics').length, 0, 'no push, no notify through the inbox');
    assert.equal((await api('devices.show', { id: 'dep-a' })).device.deployment_id, null);
    await waitFor(() => got.length === 1, 5000, 'topic notify');
    assert.equal(got[0].k, 'notify');
    const n = await call('notify', { dev: 'dep-d', topic: 'device', s: tagged.session, msg: got[0].msg, from: `deployment:${depId}`, cref: 9 });
    assert.deepEqual(n.fx, [['unsubscribe', `deployment:${depId}`]]);
    sub.unsubscribe();
    inbox.sub.unsubscribe();
    assert.equal((await api('deployment.delete', { id: depId })).code, 'not_found');
    assert.equal((await api('deployment.delete', { id: 'x' })).code, 'bad_request');
    assert.equal((await api('deployment.create', { name: 'bad', firmware: { ...FW2, version: '1.0' } })).code, 'bad_request');
    assert.equal((await api('deployment.create', { name: 'bad', firmware: FW2, conditions: { version: '>= 1.0' } })).code, 'bad_request');
  });

  test('deleting a deployment sends its devices to the next matching one, with its update', async () => {
    // del-x matches `low` and `high` (the higher id wins); del-y matches only `high`
    for (const [id, tags, cref] of [['del-x', ['lo', 'del'], 55], ['del-y', ['del'], 56]]) {
      await api('devices.create', { identifier: id, fingerprint: fp(), tags });
      await call('connect', { dev: id, s: bytes('x'), peer: '127.0.0.1:1', cref });
      await joinDevice(id, bytes('x'), linkPayload(), cref);
      await register(id, { w: 5, cref });
    }
    const inbox = fakeInbox(GW, 5);
    const ev = watchEvents('del-x');
    await nc.flush();
    const FW_LOW = { ...FW2, uuid: 'dddddddd-0000-4000-8000-000000000004', url: 'https://firmware.example/low.fw' };
    const FW_HIGH = { ...FW2, uuid: 'eeeeeeee-0000-4000-8000-000000000005', url: 'https://firmware.example/high.fw' };
    const low = await api('deployment.create', { name: 'del-low', firmware: FW_LOW, conditions: { tags: ['lo'] } });
    assert.equal(low.moved, 1);
    // as if del-x had given the low update up: only an in-flight update blocks the next one
    await rc.cmd('HDEL', `${P}:pf:dev:del-x`, 'inflight');
    const high = await api('deployment.create', { name: 'del-high', firmware: FW_HIGH, conditions: { tags: ['del'] } });
    assert.equal(high.matched, 2);
    assert.equal(high.moved, 2);
    const hid = high.deployment.id;
    const lid = low.deployment.id;
    assert.equal((await api('devices.show', { id: 'del-x' })).device.deployment_id, hid);
    assert.equal((await api('devices.show', { id: 'del-y' })).device.deployment_id, hid);
    await rc.cmd('HDEL', `${P}:pf:dev:del-x`, 'inflight');
    inbox.got.length = 0;
    ev.got.length = 0;

    const del = await api('deployment.delete', { id: hid });
    assert.equal(del.fanout, 'scan');
    assert.equal(del.matched, 2, 'both were in it');
    assert.equal(del.moved, 2);
    assert.equal(del.move_failed, 0);
    const moves = inbox.got.filter((m) => m.k === 'topics').flatMap((m) => m.devs);
    const byDev = Object.fromEntries(moves.map((e) => [e[0], e]));
    assert.deepEqual(byDev['del-x'], ['del-x', 55, `deployment:${hid}`, `deployment:${lid}`]);
    assert.deepEqual(byDev['del-y'], ['del-y', 56, `deployment:${hid}`, null]);
    const push = inbox.got.filter((m) => m.k === 'push');
    assert.deepEqual(push.map((m) => m.dev), ['del-x'], 'only del-x gets an update: low\'s');
    assert.equal(push[0].cref, 55);
    assert.deepEqual(push[0].p, expectedPayload(FW_LOW, lid));
    assert.equal(del.pushed, 1);
    assert.equal(inbox.got.filter((m) => m.k === 'notify').length, 0, 'no notify');
    const sent = await ev.next('update_sent');
    assert.equal(sent.deployment_id, lid);
    assert.equal(sent.via, 'inbox');
    assert.equal((await api('devices.show', { id: 'del-x' })).device.deployment_id, lid);
    assert.equal((await api('devices.show', { id: 'del-y' })).device.deployment_id, null);

    // the worker does not answer: the move is reported failed
    inbox.sub.unsubscribe();
    const silent = nc.subscribe(`${P}.gw.${GW}.5`, { callback: () => {} });
    await nc.flush();
    const del2 = await api('deployment.delete', { id: lid });
    assert.equal(del2.matched, 1);
    assert.equal(del2.moved, 0);
    assert.equal(del2.move_failed, 1);
    silent.unsubscribe();
    ev.sub.unsubscribe();
  });

  test('manual update, reboot and identify report ok / offline / gone / not_found', async () => {
    await api('devices.create', { identifier: 'man-1', fingerprint: fp() });
    await api('devices.create', { identifier: 'man-2', fingerprint: fp() });
    await register('man-1', { w: 3, cref: 77 });
    await register('man-2', { w: 4, cref: 78 });
    const inbox = fakeInbox(GW, 3);
    const gone = fakeInbox(GW, 4, () => 'gone');
    await nc.flush();
    const u = await api('device.update', { id: 'man-1', firmware: { ...FW2, checksum: undefined, partials_checksums: undefined, size: undefined } });
    assert.deepEqual(u, { status: 'ok' });
    const m = inbox.got.find((x) => x.ev === 'update');
    assert.equal(m.cref, 77);
    assert.deepEqual(m.p, expectedPayload({ ...FW2, checksum: undefined, partials_checksums: undefined, size: undefined }, null));
    assert.deepEqual(await api('device.reboot', { id: 'man-1' }), { status: 'ok' });
    assert.deepEqual(inbox.got.at(-1).p, {});
    assert.equal(inbox.got.at(-1).ev, 'reboot');
    assert.deepEqual(await api('device.identify', { id: 'man-1' }), { status: 'ok' });
    assert.equal(inbox.got.at(-1).ev, 'identify');
    assert.deepEqual(await api('device.reboot', { id: 'man-2' }), { status: 'gone' });
    assert.deepEqual(await api('device.reboot', { id: 'known-1' }), { status: 'offline' });
    const nf = await api('device.reboot', { id: 'nobody' });
    assert.equal(nf.code, 'not_found');
    assert.match(nf.error, /unknown device nobody/);
    inbox.sub.unsubscribe();
    gone.sub.unsubscribe();
  });
});

describe('timers and send_after', () => {
  test('extensions: attach list, health timer, detach, unknown keys answered "detach"', async () => {
    const s = bytes('x');
    const j = await call('join', { dev: 'auto-1', topic: 'extensions', s, p: { health: '0.0.1', geo: '0.0.2', local_shell: '0.0.1', network_identity: '0.0.1', bogus: '0.0.1' } });
    assert.equal(j.st, 'ok');
    assert.deepEqual(j.r, ['geo', 'health'], 'allowed (health,geo) and ~> 0.0.1');
    const old = await call('join', { dev: 'auto-1', topic: 'extensions', s, p: { health: '0.1.0', geo: 'x' } });
    assert.deepEqual(old.r, []);

    const msg = (sess, ev, p = {}) => call('message', { dev: 'auto-1', topic: 'extensions', s: sess, ev, p });
    const att = await msg(j.s, 'health:attached');
    assert.equal(att.fx.length, 2);
    assert.deepEqual(att.fx[0], ['push', 'health:check', {}]);
    const [kind, key, tmsg, ms] = att.fx[1];
    assert.equal(kind, 'start_timer');
    assert.ok(key instanceof Uint8Array && tmsg instanceof Uint8Array);
    assert.equal(ms, HEALTH_MS);
    // the timer fires: the gateway sends its message back
    const tick = await call('notify', { dev: 'auto-1', topic: 'extensions', s: att.s, msg: tmsg });
    assert.deepEqual(tick.fx, [['push', 'health:check', {}]]);
    const rep = await msg(att.s, 'health:report', { value: { metrics: { cpu_temp: 41.5 }, checks: {} } });
    assert.equal(rep.st, 'ok');
    assert.deepEqual((await api('devices.show', { id: 'auto-1' })).device.health, { value: { metrics: { cpu_temp: 41.5 }, checks: {} } });
    // not allowed / unknown: reply error "detach"
    assert.deepEqual((await msg(att.s, 'local_shell:attached')).fx, [['reply', 'error', 'detach']]);
    assert.deepEqual((await msg(att.s, 'nope:x')).fx, [['reply', 'error', 'detach']]);
    // allowed but not attached: dropped
    assert.deepEqual((await msg(att.s, 'geo:location:update', { latitude: 1 })).fx ?? [], []);
    const det = await msg(att.s, 'health:detached');
    assert.equal(det.fx.length, 1);
    assert.equal(det.fx[0][0], 'cancel_timer');
    assert.deepEqual(det.fx[0][1], key, 'cancels the key it started');
    // a late tick after detach does nothing
    assert.deepEqual((await call('notify', { dev: 'auto-1', topic: 'extensions', s: det.s, msg: tmsg })).fx ?? [], []);
  });

  test('scripts/run: push with a send_after that clears the ref, or a result that cancels it', async () => {
    await register('auto-1', { w: 5, cref: 55 });
    const inbox = fakeInbox(GW, 5);
    await nc.flush();
    const ev = watchEvents('auto-1');
    const { session } = await joinDevice('auto-1', bytes('x'), linkPayload(), 55);
    assert.deepEqual(await api('device.script', { id: 'auto-1', text: 'Nerves.Runtime.revert()' }), { status: 'ok' });
    const n = inbox.got.find((m) => m.k === 'notify');
    assert.equal(n.topic, 'device');
    const run = await call('notify', { dev: 'auto-1', topic: 'device', s: session, msg: n.msg, cref: 55 });
    assert.equal(run.fx.length, 2);
    const [, ev1, pl] = run.fx[0];
    assert.equal(ev1, 'scripts/run');
    assert.equal(pl.text, 'Nerves.Runtime.revert()');
    assert.match(pl.ref, /^[A-Za-z0-9+/]{6}$/);
    const [kind, key, tmsg, ms] = run.fx[1];
    assert.equal(kind, 'send_after');
    assert.equal(ms, SCRIPT_MS);
    // the timer fires: bookkeeping cleared, its timer entry released
    const fired = await call('notify', { dev: 'auto-1', topic: 'device', s: run.s, msg: tmsg, cref: 55 });
    assert.deepEqual(fired.fx, [['cancel_timer', key]]);
    await ev.next('script_timeout');
    // a second script answered in time
    const run2 = await call('notify', { dev: 'auto-1', topic: 'device', s: fired.s, msg: n.msg, cref: 55 });
    const ref2 = run2.fx[0][2].ref;
    const res = await call('message', { dev: 'auto-1', topic: 'device', s: run2.s, ev: 'scripts/run', p: { ref: ref2, result: 'completed', output: 'ok', return: ':ok' } });
    assert.deepEqual(res.fx, [['cancel_timer', run2.fx[1][1]]]);
    const r = await ev.next('script_result');
    assert.equal(r.output, 'ok');
    // the timer message arriving late finds nothing to clear
    const late = await call('notify', { dev: 'auto-1', topic: 'device', s: res.s, msg: run2.fx[1][2], cref: 55 });
    assert.deepEqual(late.fx ?? [], []);
    inbox.sub.unsubscribe();
    ev.sub.unsubscribe();
  });
});

describe('registry', () => {
  test('devices.list reads online state from the registry', async () => {
    await register('known-1', { w: 1, cref: 1 });
    let l = await api('devices.list', { online: true });
    const k = l.devices.find((d) => d.id === 'known-1');
    assert.ok(k);
    assert.equal(k.online, true);
    assert.equal(k.gateway, GW);
    assert.equal(k.worker, 1);
    assert.equal(typeof k.connected_at, 'number');
    assert.deepEqual(k.tags, ['a']);
    await rc.cmd('DEL', `${P}:dev:known-1`);
    l = await api('devices.list', {});
    assert.equal(l.devices.find((d) => d.id === 'known-1').online, false);
    assert.ok(!(await api('devices.list', { online: true })).devices.some((d) => d.id === 'known-1'));
    assert.equal((await api('devices.list', { limit: 2 })).devices.length, 2);
    assert.equal((await api('devices.list', { limit: 2 })).truncated, true);
    assert.equal((await api('devices.show', { id: 'nobody' })).code, 'not_found');
    assert.equal((await api('devices.create', { identifier: 'known-1' })).code, 'conflict');
    assert.equal((await api('devices.create', { identifier: 'bad id' })).code, 'bad_request');
    assert.equal((await api('no.such.verb')).code, 'bad_request');
  });

  test('entries of a dead gateway are reaped', async () => {
    await register('auto-1', { gw: 'gw-dead', w: 0, cref: 9, alive: false });
    await register('known-1', { gw: 'gw-live', w: 0, cref: 9, alive: true });
    await waitFor(async () => (await rc.cmd('EXISTS', `${P}:dev:auto-1`)) === 0, 5000, 'reaped');
    assert.equal(await rc.cmd('SISMEMBER', `${P}:gws`, 'gw-dead'), 0);
    assert.equal(await rc.cmd('EXISTS', `${P}:dev:known-1`), 1, 'a live gateway is left alone');
    await waitFor(() => platform.events('gateway_reaped').some((e) => e.gw === 'gw-dead'), 5000, 'reap logged');
  });
});

describe('replicas and restarts', () => {
  test('two replicas in the queue group both serve', async () => {
    const second = await startPlatform({ nats: nats.url, redis: redis.addr, prefix: P, args: ['--threads', '1'] });
    try {
      await sleep(200);
      const before1 = platform.events('auth_ok').length;
      for (let i = 0; i < 60; i++) {
        const r = await call('auth', { peer: '127.0.0.1:7', fp: fp(), der: bytes('d'), cn: `rep-${i}` });
        assert.equal(r.st, 'ok');
      }
      const a = platform.events('auth_ok').length - before1;
      const b = second.events('auth_ok').length;
      assert.equal(a + b, 60);
      assert.ok(a > 0 && b > 0, `both replicas served (${a}, ${b})`);
    } finally {
      await second.stop();
    }
  });

  test('another prefix is another fleet; --no-auto-register refuses unknown certificates', async () => {
    const other = await startPlatform({ nats: nats.url, redis: redis.addr, prefix: 'nh2', args: ['--no-auto-register'] });
    try {
      const r = await call('auth', { peer: '127.0.0.1:7', fp: fp(), der: bytes('d'), cn: 'whoever' }, 'nh2');
      assert.equal(r.st, 'refused');
      assert.match(r.reason, /unknown device certificate/);
      const x = await call('auth', { peer: '127.0.0.1:7', x: { 'x-nh-key': 'nhp_x' } }, 'nh2');
      assert.equal(x.st, 'refused');
      assert.match(x.reason, /not enabled/);
      assert.equal((await api('devices.show', { id: 'known-1' }, 'nh2')).code, 'not_found');
    } finally {
      await other.stop();
    }
  });

  test('the platform rides out a Redis restart and a NATS restart', async () => {
    await redis.restart();
    rc = await redis.client();
    // data is gone; the platform reconnects on its next command
    await waitFor(async () => (await api('ping')).store === true, 10000, 'store back');
    const c = await api('devices.create', { identifier: 'after-redis', fingerprint: fp() });
    assert.equal(c.device.id, 'after-redis');

    await nc.close();
    await nats.restart();
    nc = await connectNats(nats.url);
    await waitFor(async () => {
      try {
        return (await api('ping')).ok === true;
      } catch {
        return false;
      }
    }, 15000, 'platform back on NATS');
    const r = await call('auth', { peer: '127.0.0.1:7', fp: fp(), der: bytes('d'), cn: 'after-nats' });
    assert.equal(r.st, 'ok', `${r.reason}\n${platform.log().split('\n').slice(-15).join('\n')}`);
  });
});
