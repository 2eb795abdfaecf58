// The extensions channel end to end (issue 5, devicelink-contract.md §6): real nats-server,
// redis-server and nhplatform, the gateway with --link nats --redis, devices on the official
// Phoenix JavaScript client, and nhctl. The join with versions gives the attach list; health's
// periodic platform timer runs as a gateway timer and comes back as `notify`; the platform stores
// the latest health report, the location and the last log lines (bounded) and nhctl shows them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { REPO } from './lib/certs.mjs';
import { gwTest, startGateway, waitFor } from './lib/gateway.mjs';
import { DEVICE_JOIN, connectPhx } from './lib/phx.mjs';
import { NHPLATFORM_BIN, startNats, startPlatform, startRedis } from './lib/stack.mjs';

const NHCTL = process.env.NHCTL_BIN || join(REPO, 'build', 'nhctl');
const HEALTH_MS = 300;

const HEALTH_REPORT = {
  value: {
    timestamp: '2026-01-01T00:00:00.000000Z',
    metadata: { serial: 'ABC123' },
    alarms: { 'Elixir.DiskAlarm': 'disk almost full' },
    metrics: { cpu_temp: 41.5, mem_used_percent: 33 },
    checks: { ntp: { pass: true, note: '' } },
    connectivity: { wlan0: { type: 'wifi', present: true, state: 'up', connection_status: 'internet' } },
  },
};

describe('extensions: attach list, timers, health / geo / logging stored and shown', () => {
  let nats, redis, platform, gw;
  const it = gwTest(() => gw);

  before(async () => {
    nats = await startNats();
    redis = await startRedis();
    platform = await startPlatform({
      nats: nats.url,
      redis: redis.addr,
      // this suite's log test sends 108 lines at once: lift NervesHub's 5/s limit (tested below)
      args: ['--extensions', 'health,geo,logging', '--health-interval', `${HEALTH_MS}ms`, '--log-rate', '1000/500'],
    });
    gw = await startGateway({
      args: [
        '--link', 'nats', '--nats-url', nats.url, '--redis', redis.addr, '--gateway-id', 'gw-ext',
      ],
    });
    await gw.waitForLog(/event=nats_connected/, 10000);
  });
  after(async () => {
    await gw?.stop({ strict: false });
    await platform?.stop();
    await redis?.stop();
    await nats?.stop();
  });

  const nhctl = (args, { json = false } = {}) => {
    const r = spawnSync(NHCTL, [...args, '--nats', nats.url, ...(json ? ['--json'] : [])], {
      encoding: 'utf8',
      timeout: 15000,
    });
    return { code: r.status, out: json && r.status === 0 ? JSON.parse(r.stdout) : r.stdout, stderr: r.stderr };
  };
  const show = (dev) => {
    const r = nhctl(['device', 'show', dev], { json: true });
    assert.equal(r.code, 0, r.stderr);
    return r.out.device;
  };
  const count = (c, event) => c.messages.filter((m) => m.topic === 'extensions' && m.event === event).length;

  it('join with versions → attach list; health:check on attach and from the platform timer', async () => {
    const c = await connectPhx(gw.port, { device: 'device-30' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      // extensions:get is pushed after the device join (API ≥ 2.2.0)
      assert.ok(await c.waitMessage((m) => m.topic === 'device' && m.event === 'extensions:get', 5000));
      const ext = await c.join('extensions', {
        health: '0.0.1',
        geo: '0.0.2',
        logging: '0.0.1',
        local_shell: '0.1.0', // outside ~> 0.0.1
        network_identity: '0.0.1', // not enabled on this platform
        teleport: '1.0.0', // unknown
      });
      assert.equal(ext.status, 'ok');
      assert.deepEqual(ext.response, ['geo', 'health', 'logging'], 'sorted attach list');

      ext.channel.push('health:attached', {});
      await waitFor(() => count(c, 'health:check') >= 1, 5000, 'health:check on attach');
      // the repeating timer is filed at the gateway and fires as notify: more checks follow
      await waitFor(() => count(c, 'health:check') >= 3, 5000, 'periodic health:check (gateway timer → notify)');

      // an extension that did not attach is told to detach
      const ref = c.push('extensions', 'local_shell:attached', {}, { joinRef: ext.channel.joinRef() });
      const rep = await c.reply(ref);
      assert.deepEqual(rep?.payload, { status: 'error', response: 'detach' });

      // detaching health stops the timer
      ext.channel.push('health:detached', {});
      await waitFor(() => show('device-30').online === true, 5000, 'online');
      await new Promise((r) => setTimeout(r, 2 * HEALTH_MS));
      const n = count(c, 'health:check');
      await new Promise((r) => setTimeout(r, 3 * HEALTH_MS));
      assert.equal(count(c, 'health:check'), n, 'no health:check after health:detached');
    } finally {
      await c.disconnect();
    }
  });

  it('health report and location are stored and shown by nhctl device show', async () => {
    const c = await connectPhx(gw.port, { device: 'device-31', msgpack: true });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const ext = await c.join('extensions', { health: '0.0.1', geo: '0.0.1' });
      assert.deepEqual(ext.response, ['geo', 'health']);
      ext.channel.push('health:attached', {});
      ext.channel.push('geo:attached', {});
      await waitFor(() => count(c, 'geo:location:request') >= 1, 5000, 'geo:location:request on attach');
      ext.channel.push('health:report', HEALTH_REPORT);
      ext.channel.push('geo:location:update', { source: 'gps', latitude: 60.1699, longitude: 24.9384, accuracy: 12 });
      const d = await waitFor(
        () => {
          const x = show('device-31');
          return x.health && x.location ? x : null;
        },
        5000,
        'health and location stored',
      );
      assert.deepEqual(d.health, HEALTH_REPORT);
      assert.ok(Number.isInteger(d.health_at) && d.health_at > 0, 'health_at');
      assert.deepEqual(d.location, { source: 'gps', latitude: 60.1699, longitude: 24.9384, accuracy: 12 });

      const text = nhctl(['device', 'show', 'device-31']);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.out, /^health: +reported \d{4}-\d\d-\d\dT[\d:.]+Z; metrics: cpu_temp=41\.5, mem_used_percent=33; alarms: Elixir\.DiskAlarm=disk almost full; checks: ntp=\{"pass":true,"note":""\}; metadata: serial=ABC123$/m);
      assert.match(text.out, /^location: +60\.169900, 24\.938400 \(gps, ±12 m\)$/m);

      // the latest report replaces the previous one; a location error is shown as such
      ext.channel.push('health:report', { value: { metrics: { cpu_temp: 50 } } });
      ext.channel.push('geo:location:update', { error_code: 'no_fix', error_description: 'no GPS fix' });
      await waitFor(() => show('device-31').location?.error_code === 'no_fix', 5000, 'location replaced');
      assert.deepEqual(show('device-31').health, { value: { metrics: { cpu_temp: 50 } } });
      assert.match(nhctl(['device', 'show', 'device-31']).out, /^location: +error no_fix: no GPS fix$/m);
    } finally {
      await c.disconnect();
    }
  });

  it('log lines: the last 100 kept, long messages cut, charlists read, nhctl prints them', async () => {
    const c = await connectPhx(gw.port, { device: 'device-32' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const ext = await c.join('extensions', { logging: '0.0.1' });
      assert.deepEqual(ext.response, ['logging']);
      ext.channel.push('logging:attached', {});
      for (let i = 0; i < 105; i++) {
        ext.channel.push('logging:send', {
          level: i % 2 ? 'info' : 'warning',
          message: `line ${i}`,
          meta: { time: `${1700000000000000 + i}`, mfa: 'Elixir.Foo.bar/1' },
        });
      }
      ext.channel.push('logging:send', { level: 'error', message: 'é'.repeat(1000) }); // 2000 bytes
      ext.channel.push('logging:send', { level: 'debug', message: [104, 105, 0x20ac] }); // charlist "hi€"
      ext.channel.push('logging:send', { level: 'info' }); // no message: dropped
      const logs = await waitFor(
        () => {
          const l = show('device-32').logs;
          return l.length && l[l.length - 1].message === 'hi€' ? l : null;
        },
        10000,
        'log lines stored',
      );
      assert.equal(logs.length, 100, 'bounded to the last 100');
      assert.equal(logs[0].message, 'line 7', 'oldest first; the first 7 of 107 lines were dropped');
      assert.equal(logs[97].message, 'line 104');
      assert.equal(logs[97].level, 'warning');
      assert.deepEqual(logs[97].meta, { time: '1700000000000104', mfa: 'Elixir.Foo.bar/1' });
      const long = logs[98];
      assert.equal(long.truncated, true);
      assert.equal(Buffer.byteLength(long.message), 1024, 'cut to 1024 bytes on a character boundary');
      assert.equal(long.message, 'é'.repeat(512));
      assert.equal(logs[99].level, 'debug');
      for (const l of logs) assert.ok(Number.isInteger(l.at));

      const text = nhctl(['device', 'show', 'device-32']);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.out, /^logs \(last 100\):$/m);
      assert.match(text.out, /^ {2}\d{4}-\d\d-\d\dT[\d:.]+Z warning line 104$/m);
      assert.match(text.out, /^ {2}\S+ error (é){512} \[truncated\]$/m);
      assert.match(text.out, /^ {2}\S+ debug hi€$/m);
      assert.doesNotMatch(text.out, /line 6$/m);
    } finally {
      await c.disconnect();
    }
  });
});

// NervesHub drops log lines beyond a per-device token bucket (5/s, capacity 10, cost 1); the
// reference platform applies the same limit by default, carried in the channel's session.
describe('extensions: logging rate limit (5 lines/s, burst 10, excess dropped)', () => {
  let nats, redis, platform, gw;
  const it = gwTest(() => gw);

  before(async () => {
    nats = await startNats();
    redis = await startRedis();
    platform = await startPlatform({ nats: nats.url, redis: redis.addr, args: ['--extensions', 'health,logging'] });
    gw = await startGateway({
      args: ['--link', 'nats', '--nats-url', nats.url, '--redis', redis.addr, '--gateway-id', 'gw-lograte'],
    });
    await gw.waitForLog(/event=nats_connected/, 10000);
  });
  after(async () => {
    await gw?.stop({ strict: false });
    await platform?.stop();
    await redis?.stop();
    await nats?.stop();
  });

  const show = (dev) => {
    const r = spawnSync(NHCTL, ['device', 'show', dev, '--nats', nats.url, '--json'], { encoding: 'utf8', timeout: 15000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout).device;
  };

  it('--log-rate: RATE/BURST each at most 100000 (100001 refused), 0 turns it off, nothing else', () => {
    // options are read in order: a refused value exits 2 before --help would exit 0
    const status = (v) => spawnSync(NHPLATFORM_BIN, ['--log-rate', v, '--help'], { encoding: 'utf8' }).status;
    for (const ok of ['5/10', '100000/100000', '1/1', '0']) assert.equal(status(ok), 0, `${ok} accepted`);
    for (const bad of ['100001/10', '5/100001', '0/5', '5/0', '5', '5/10x', '-1/10', ''])
      assert.equal(status(bad), 2, `${bad} refused`);
  });

  it('a burst of 30 keeps the first 10 or so; after a pause the bucket has refilled', async () => {
    const c = await connectPhx(gw.port, { device: 'device-33' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const ext = await c.join('extensions', { logging: '0.0.1', health: '0.0.1' });
      assert.deepEqual(ext.response, ['health', 'logging']);
      ext.channel.push('logging:attached', {});
      ext.channel.push('health:attached', {});
      // Calls of one connection reach the platform in order, so once the health report that
      // follows a burst is stored, every line of the burst has been counted or dropped.
      const burst = async (tag, n, marker) => {
        for (let i = 0; i < n; i++) ext.channel.push('logging:send', { level: 'info', message: `${tag} ${i}` });
        ext.channel.push('health:report', { value: { metrics: { marker } } });
        await waitFor(() => show('device-33').health?.value?.metrics?.marker === marker, 10000, `burst ${tag} done`);
        return show('device-33').logs.filter((l) => l.message.startsWith(`${tag} `)).map((l) => l.message);
      };
      const first = await burst('a', 30, 1);
      assert.ok(first.length >= 10 && first.length < 30, `a full bucket lets 10 through, plus what refilled: ${first.length}`);
      assert.deepEqual(first, Array.from({ length: first.length }, (_, i) => `a ${i}`), 'the excess is dropped, in order');

      await new Promise((r) => setTimeout(r, 2200)); // 5/s for 2 s refills the bucket to its 10
      const second = await burst('b', 30, 2);
      assert.ok(second.length >= 10 && second.length < 30, `refilled after the pause: ${second.length}`);
      assert.deepEqual(second, Array.from({ length: second.length }, (_, i) => `b ${i}`));
    } finally {
      await c.disconnect();
    }
  });
});
