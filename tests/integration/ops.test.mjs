// Operating nhgw (issue 6, architecture §9): the master's admin port (/metrics checked by promtool
// and scraped by a real Prometheus server, /healthz, /readyz against a real nats-server), the
// graceful drain on SIGTERM (1012 at --drain-rate, registry emptied, exit 0) and the SIGHUP reload
// of the server certificate and the device CA bundle under live sessions.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { certPath, certFile } from './lib/certs.mjs';
import { Gateway, HOST, NHGW_BIN, freePort, gwTest, sleep, startGateway, waitFor } from './lib/gateway.mjs';
import { connectPhx, DEVICE_JOIN } from './lib/phx.mjs';
import { attemptUpgrade } from './lib/rawws.mjs';
import { startNats, startPlatform, startRedis } from './lib/stack.mjs';

const device = (i) => `device-${i}`; // device-1 .. device-40: distinct identities (device-5: CA 2)

/** GET on the admin port: {status, body, headers}. */
function adminGet(port, path, { method = 'GET', timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, path, method, timeout, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error(`admin ${path}: timeout`)));
    req.on('error', reject);
    req.end();
  });
}

/** A raw exchange with the admin port: sends `text`, resolves with everything read until close. */
function adminRaw(port, text, ms = 7000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port });
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('admin raw exchange: no close'));
    }, ms);
    s.on('connect', () => (text === null ? null : s.write(text)));
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** The value of one sample, labels matched exactly; undefined when absent. */
function sample(text, name, labels = {}) {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = (m[2] ?? '')
      .split(/,(?=[a-zA-Z_]+=")/)
      .filter((x) => x)
      .sort()
      .join(',');
    if (got === want) return Number(m[3]);
  }
  return undefined;
}

/** Sum of a metric over every series carrying the given labels (others free). */
function total(text, name, labels = {}) {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

async function metrics(port) {
  const r = await adminGet(port, '/metrics');
  assert.equal(r.status, 200, r.body);
  return r.body;
}

function promtoolCheck(text) {
  // exit status 0 and no lint output: promtool accepts the exposition as it is
  return execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

async function session(port, dev, opts = {}) {
  const c = await connectPhx(port, { device: dev, ...opts });
  const j = await c.join('device', DEVICE_JOIN);
  assert.equal(j.status, 'ok', `${dev} join: ${JSON.stringify(j.response)}`);
  return c;
}

describe('admin port: /metrics', () => {
  let gw, admin;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ workers: 2 });
    admin = gw.admin;
  });
  after(async () => {
    await gw?.stop();
  });

  it('promtool accepts the exposition; sessions, upgrades and handshakes move with what the test does', async () => {
    const m0 = await metrics(admin);
    promtoolCheck(m0);
    assert.equal(sample(m0, 'nhgw_workers'), 2);
    assert.equal(sample(m0, 'nhgw_ready'), 1);
    assert.equal(sample(m0, 'nhgw_draining'), 0);
    assert.equal(total(m0, 'nhgw_sessions'), 0);
    assert.equal(sample(m0, 'nhgw_build_info', { version: '0.1.0', commit: /commit="([^"]*)"/.exec(m0)[1] }), 1);
    const up101 = sample(m0, 'nhgw_upgrades_total', { status: '101' });
    const up401 = sample(m0, 'nhgw_upgrades_total', { status: '401' });
    const hsCount = sample(m0, 'nhgw_tls_handshake_duration_seconds_count');

    const clients = [];
    try {
      for (let i = 1; i <= 3; i++) clients.push(await session(gw.port, device(i)));
      await waitFor(async () => total(await metrics(admin), 'nhgw_sessions') === 3, 3000, 'nhgw_sessions = 3');
      // a device without certificate or secret is refused with 401
      const r = await attemptUpgrade(gw.port, null);
      assert.equal(r.res?.status, 401);
      r.conn.destroy();
      const m1 = await waitFor(async () => {
        const t = await metrics(admin);
        return sample(t, 'nhgw_upgrades_total', { status: '401' }) === up401 + 1 ? t : null;
      }, 3000, 'upgrades_total{status="401"} + 1');
      promtoolCheck(m1);
      assert.equal(sample(m1, 'nhgw_upgrades_total', { status: '101' }), up101 + 3);
      // every TLS connection of the test (3 devices, the refused one, start-up probes) was timed
      assert.ok(sample(m1, 'nhgw_tls_handshake_duration_seconds_count') >= hsCount + 4);
      assert.equal(
        sample(m1, 'nhgw_tls_handshake_duration_seconds_count'),
        sample(m1, 'nhgw_tls_handshake_duration_seconds_bucket', { le: '+Inf' }),
      );
      assert.ok(sample(m1, 'nhgw_phoenix_messages_total', { direction: 'in', topic: 'device' }) >= 3, 'joins counted');
      assert.ok(sample(m1, 'nhgw_phoenix_messages_total', { direction: 'out', topic: 'device' }) >= 3, 'replies counted');
      assert.ok(total(m1, 'nhgw_connections_accepted_total') >= 4);
      assert.ok(sample(m1, 'nhgw_ws_frames_total', { direction: 'in' }) >= 3);
      assert.ok(sample(m1, 'nhgw_ws_bytes_total', { direction: 'out' }) > 0);
      // per-worker sessions add up to what the test holds
      assert.equal(sample(m1, 'nhgw_sessions', { worker: '0' }) + sample(m1, 'nhgw_sessions', { worker: '1' }), 3);

      await clients.pop().disconnect();
      await waitFor(async () => total(await metrics(admin), 'nhgw_sessions') === 2, 3000, 'nhgw_sessions = 2');
    } finally {
      await Promise.all(clients.map((c) => c.disconnect()));
    }
    await waitFor(async () => total(await metrics(admin), 'nhgw_sessions') === 0, 3000, 'nhgw_sessions = 0');
  });

  it('counters survive a worker restart (monotonic); nhgw_worker_restarts_total counts it', async () => {
    gw.opts.allowRespawn = true;
    const c = await session(gw.port, device(7));
    await c.disconnect();
    const before = await waitFor(async () => {
      const t = await metrics(admin);
      return total(t, 'nhgw_upgrades_total') > 0 && total(t, 'nhgw_sessions') === 0 ? t : null;
    }, 3000, 'settled');
    const accepted = total(before, 'nhgw_connections_accepted_total');
    const upgrades = total(before, 'nhgw_upgrades_total');
    const [victim] = [...gw.workerPids().values()];
    process.kill(victim, 'SIGKILL');
    await waitFor(() => gw.events('worker_started').length >= 3, 10000, 'worker respawned');
    const after = await waitFor(async () => {
      const t = await metrics(admin);
      return sample(t, 'nhgw_workers') === 2 ? t : null;
    }, 5000, 'two workers again');
    assert.equal(sample(after, 'nhgw_worker_restarts_total'), 1);
    assert.ok(total(after, 'nhgw_connections_accepted_total') >= accepted, 'accepted did not go back');
    assert.ok(total(after, 'nhgw_upgrades_total') >= upgrades, 'upgrades did not go back');
    promtoolCheck(after);
  });

  it('a hostile admin client: oversized head (431), unknown path (404), POST (405), a silent one does not block', async () => {
    const silent = net.connect({ host: HOST, port: admin }); // sends nothing, holds a slot
    try {
      const big = await adminRaw(admin, `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(5000)}\r\n\r\n`);
      assert.match(big, /^HTTP\/1\.1 431 /);
      const nf = await adminGet(admin, '/nope');
      assert.equal(nf.status, 404);
      const post = await adminGet(admin, '/metrics', { method: 'POST' });
      assert.equal(post.status, 405);
      const garbage = await adminRaw(admin, 'hello\r\n\r\n');
      assert.match(garbage, /^HTTP\/1\.1 400 /);
      const t0 = performance.now();
      const h = await adminGet(admin, '/healthz');
      assert.equal(h.status, 200);
      assert.ok(performance.now() - t0 < 1000, 'answered while a silent client is connected');
      assert.match(h.headers['content-type'], /text\/plain/);
      // a head that stops half-way is dropped at the deadline (5 s), not kept forever
      const t1 = performance.now();
      const partial = await adminRaw(admin, 'GET /metrics HTTP/1.1\r\nHost: x\r\n', 9000);
      assert.equal(partial, '');
      const waited = performance.now() - t1;
      assert.ok(waited > 4000 && waited < 8000, `dropped after ${waited} ms`);
    } finally {
      silent.destroy();
    }
  });
});

describe('admin port: a real Prometheus server scrapes it', () => {
  let gw, admin, prom, promDir;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ workers: 2 });
    admin = gw.admin;
  });
  after(async () => {
    if (prom && prom.exitCode === null) {
      prom.kill('SIGTERM');
      await Promise.race([new Promise((r) => prom.once('exit', r)), sleep(5000)]);
      if (prom.exitCode === null) prom.kill('SIGKILL');
    }
    if (promDir) rmSync(promDir, { recursive: true, force: true });
    await gw?.stop();
  });

  it('the query API returns the session count the test created', async () => {
    const clients = [];
    try {
      for (let i = 11; i <= 14; i++) clients.push(await session(gw.port, device(i)));
      promDir = mkdtempSync(join(tmpdir(), 'nhgw-prom-'));
      const promPort = await freePort();
      writeFileSync(
        join(promDir, 'prometheus.yml'),
        `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n` +
          `  - job_name: nhgw\n    static_configs:\n      - targets: ['${HOST}:${admin}']\n`,
      );
      const fd = openSync(join(promDir, 'prometheus.log'), 'a');
      prom = spawn(
        'prometheus',
        [
          `--config.file=${join(promDir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(promDir, 'data')}`,
          `--web.listen-address=${HOST}:${promPort}`, '--log.level=warn',
        ],
        { stdio: ['ignore', fd, fd] },
      );
      closeSync(fd);
      const query = async (q) => {
        try {
          const r = await adminGet(promPort, `/api/v1/query?query=${encodeURIComponent(q)}`, { timeout: 2000 });
          if (r.status !== 200) return null;
          const j = JSON.parse(r.body);
          return j.data.result.length ? Number(j.data.result[0].value[1]) : null;
        } catch {
          return null;
        }
      };
      // Prometheus 2.42 waits about 5 s before its first scrape, whatever the interval
      await waitFor(async () => {
        if (prom.exitCode !== null) throw new Error(`prometheus exited with ${prom.exitCode}`);
        return (await query('sum(nhgw_sessions)')) === 4;
      }, 45000, 'Prometheus reports sum(nhgw_sessions) = 4', 500);
      assert.equal(await query('up{job="nhgw"}'), 1, 'the scrape is healthy');
      assert.equal(await query('nhgw_workers'), 2);
      assert.ok((await query('sum(nhgw_upgrades_total{status="101"})')) >= 4);
      assert.ok((await query('scrape_samples_scraped{job="nhgw"}')) > 100, 'the whole exposition was ingested');
    } finally {
      await Promise.all(clients.map((c) => c.disconnect()));
    }
  }, { timeout: 90000 });
});

describe('admin port: /healthz and /readyz follow NATS and the drain', () => {
  let gw, admin, nats, natsPort;
  const it = gwTest(() => gw);
  before(async () => {
    admin = await freePort();
    natsPort = await freePort(); // no server there yet
    gw = await startGateway({
      workers: 2,
      args: ['--admin-listen', `${HOST}:${admin}`, '--link', 'nats', '--nats-url', `nats://${HOST}:${natsPort}`],
    });
  });
  after(async () => {
    await gw?.stop({ strict: false });
    await nats?.stop();
  });

  it('readyz is 503 while NATS is down and 200 once it is up; healthz stays 200', async () => {
    const r0 = await adminGet(admin, '/readyz');
    assert.equal(r0.status, 503);
    assert.match(r0.body, /NATS disconnected/);
    assert.equal((await adminGet(admin, '/healthz')).status, 200);
    const m0 = await metrics(admin);
    assert.equal(sample(m0, 'nhgw_nats_connected', { worker: '0' }), 0);
    assert.equal(sample(m0, 'nhgw_ready'), 0);
    assert.equal(sample(m0, 'nhgw_redis_connected', { worker: '0' }), undefined, 'no Redis configured: no series');

    nats = await startNats({ port: natsPort });
    await waitFor(async () => (await adminGet(admin, '/readyz')).status === 200, 15000, 'readyz 200 with NATS up');
    const m1 = await metrics(admin);
    assert.equal(sample(m1, 'nhgw_nats_connected', { worker: '0' }), 1);
    assert.equal(sample(m1, 'nhgw_nats_connected', { worker: '1' }), 1);
    assert.equal(sample(m1, 'nhgw_ready'), 1);

    await nats.proc.stop();
    await waitFor(async () => (await adminGet(admin, '/readyz')).status === 503, 10000, 'readyz 503 after NATS went away');
    await nats.restart();
    await waitFor(async () => (await adminGet(admin, '/readyz')).status === 200, 15000, 'readyz 200 after NATS is back');
  });

  it('healthz is 503 while a worker is missing', async () => {
    gw.opts.allowRespawn = true;
    const [victim] = [...gw.workerPids().values()];
    process.kill(victim, 'SIGKILL'); // reported from its death until the respawn (≥ 100 ms backoff)
    const seen = await waitFor(async () => {
      const h = await adminGet(admin, '/healthz');
      return h.status === 503 ? h : null;
    }, 3000, 'healthz 503 with a worker missing', 5);
    assert.match(seen.body, /workers=1\/2/);
    await waitFor(async () => (await adminGet(admin, '/healthz')).status === 200, 10000, 'healthz 200 after respawn');
    await waitFor(async () => (await adminGet(admin, '/readyz')).status === 200, 15000, 'readyz 200 after respawn');
  });
});

describe('graceful drain (SIGTERM)', () => {
  let gw, admin;
  const it = gwTest(() => gw);
  const N = 20;
  before(async () => {
    admin = await freePort();
    // 2 workers × ~10 sessions at 5 per second: about 2 s of closing
    gw = await startGateway({
      workers: 2,
      logLevel: 'info',
      args: ['--admin-listen', `${HOST}:${admin}`, '--drain-rate', '5', '--drain-timeout', '20s'],
    });
  });
  after(async () => {
    await gw?.stop({ strict: false });
  });

  it('every session sees 1012, spread over the drain; unready at once; no new connections; exit 0', async () => {
    const clients = [];
    for (let i = 1; i <= N; i++) clients.push(await session(gw.port, device(i)));
    await waitFor(async () => total(await metrics(admin), 'nhgw_sessions') === N, 3000, `nhgw_sessions = ${N}`);
    const closes = clients.map((c) =>
      c.waitClose(15000).then((ev) => ({ code: ev?.code ?? null, at: performance.now() })),
    );
    const t0 = performance.now();
    gw.proc.kill('SIGTERM');
    await waitFor(async () => (await adminGet(admin, '/readyz')).status === 503, 1000, 'readyz 503 at once', 10);
    const m = await metrics(admin);
    assert.equal(sample(m, 'nhgw_draining'), 1);
    assert.equal(sample(m, 'nhgw_ready'), 0);
    assert.equal((await adminGet(admin, '/healthz')).status, 200, 'a drain is not a failure');
    // the listeners are closed: a new device cannot connect
    const fresh = await attemptUpgrade(gw.port, device(30), { timeout: 2000 });
    assert.notEqual(fresh.outcome, 'http', 'no new session during a drain');
    const results = await Promise.all(closes);
    for (const r of results) assert.equal(r.code, 1012);
    const times = results.map((r) => r.at - t0).sort((a, b) => a - b);
    const spread = times[times.length - 1] - times[0];
    assert.ok(spread > 1000, `closes spread over ${spread.toFixed(0)} ms (want about 2 s, not all at once)`);
    assert.ok(times[Math.floor(N / 2)] - times[0] > 300, `the middle close came ${times[N / 2] - times[0]} ms after the first`);
    // within a 100 ms window there are never more than a few (5/s per worker, 2 workers)
    for (let i = 0; i < times.length; i++) {
      const inWindow = times.filter((t) => t >= times[i] && t < times[i] + 100).length;
      assert.ok(inWindow <= 4, `${inWindow} closes within 100 ms from ${times[i].toFixed(0)} ms`);
    }
    const exit = await Promise.race([gw.exited, sleep(10000).then(() => null)]);
    assert.deepEqual(exit && { code: exit.code, signal: exit.signal }, { code: 0, signal: null });
    assert.ok(performance.now() - t0 < 8000, 'exited soon after the last session');
    assert.equal(gw.events('drain_done').length, 2, 'both workers drained');
    assert.equal(gw.events('drain_timeout').length, 0);
    await Promise.all(clients.map((c) => c.disconnect()));
  });
});

describe('graceful drain: deadline and a second SIGTERM', () => {
  const it = (name, fn) => test(name, { timeout: 30000 }, fn);
  it('--drain-timeout closes the rest at once and exits 0', async () => {
    const gw = await startGateway({
      args: ['--drain-rate', '1', '--drain-timeout', '1500ms'],
    });
    const clients = [];
    try {
      for (let i = 1; i <= 6; i++) clients.push(await session(gw.port, device(i)));
      const closes = clients.map((c) => c.waitClose(10000));
      const t0 = performance.now();
      gw.proc.kill('SIGTERM');
      const exit = await Promise.race([gw.exited, sleep(8000).then(() => null)]);
      const took = performance.now() - t0;
      assert.deepEqual(exit && { code: exit.code, signal: exit.signal }, { code: 0, signal: null });
      assert.ok(took > 1300 && took < 4000, `exited after ${took.toFixed(0)} ms (deadline 1.5 s)`);
      for (const ev of await Promise.all(closes)) assert.equal(ev?.code, 1012);
      assert.equal(gw.events('drain_timeout').length, 1);
    } finally {
      await Promise.all(clients.map((c) => c.disconnect()));
      await gw.stop({ strict: false });
    }
  });

  it('a second SIGTERM exits at once', async () => {
    const gw = await startGateway({
      args: ['--drain-rate', '0.5', '--drain-timeout', '60s'],
    });
    const clients = [];
    try {
      for (let i = 1; i <= 4; i++) clients.push(await session(gw.port, device(i)));
      gw.proc.kill('SIGTERM');
      await gw.waitForLog(/event=worker_stopping/, 3000);
      await sleep(300);
      assert.equal(gw.exit, null, 'still draining (1 session every 2 s)');
      const t0 = performance.now();
      gw.proc.kill('SIGTERM');
      const exit = await Promise.race([gw.exited, sleep(5000).then(() => null)]);
      assert.ok(exit, 'exited');
      assert.equal(exit.code, 0);
      assert.ok(performance.now() - t0 < 2000);
    } finally {
      await Promise.all(clients.map((c) => c.disconnect()));
      await gw.stop({ strict: false });
    }
  });
});

describe('graceful drain with the platform and the registry', () => {
  let nats, redis, rc, platform, gw, admin;
  const it = gwTest(() => gw);
  const GW_ID = 'gw-drain';
  before(async () => {
    nats = await startNats();
    redis = await startRedis();
    rc = await redis.client();
    platform = await startPlatform({ nats: nats.url, redis: redis.addr });
    admin = await freePort();
    gw = await startGateway({
      workers: 2,
      args: [
        '--admin-listen', `${HOST}:${admin}`, '--link', 'nats', '--nats-url', nats.url, '--redis', redis.addr,
        '--gateway-id', GW_ID, '--drain-rate', '10',
      ],
    });
    await waitFor(async () => (await adminGet(admin, '/readyz')).status === 200, 15000, 'ready (NATS and Redis)');
  });
  after(async () => {
    await gw?.stop({ strict: false });
    await platform?.stop();
    await redis?.stop();
    await nats?.stop();
  });

  it('all sessions see 1012 and the registry holds none of them afterwards', async () => {
    const devs = Array.from({ length: 8 }, (_, i) => device(21 + i));
    const clients = [];
    try {
      for (const d of devs) clients.push(await session(gw.port, d));
      for (const d of devs) {
        const e = await waitFor(() => rc.hgetall(`nh:dev:${d}`), 5000, `registry entry of ${d}`);
        assert.equal(e.gw, GW_ID);
      }
      const m = await waitFor(async () => {
        const t = await metrics(admin);
        return sample(t, 'nhgw_platform_call_duration_seconds_count', { call: 'join' }) >= 8 ? t : null;
      }, 3000, 'the joins in the metrics');
      promtoolCheck(m);
      assert.equal(sample(m, 'nhgw_redis_connected', { worker: '0' }), 1);
      assert.equal(sample(m, 'nhgw_nats_connected', { worker: '1' }), 1);
      assert.ok(sample(m, 'nhgw_platform_calls_total', { call: 'auth', result: 'ok' }) >= 8);
      assert.ok(sample(m, 'nhgw_platform_calls_total', { call: 'join', result: 'ok' }) >= 8);
      assert.ok(sample(m, 'nhgw_platform_call_duration_seconds_count', { call: 'join' }) >= 8);
      assert.ok(sample(m, 'nhgw_registry_operations_total', { op: 'claim', result: 'ok' }) >= 8);
      assert.equal(await rc.cmd('SCARD', `nh:gw:${GW_ID}:devs`), 8);

      const closes = clients.map((c) => c.waitClose(15000));
      gw.proc.kill('SIGTERM');
      for (const ev of await Promise.all(closes)) assert.equal(ev?.code, 1012);
      const exit = await Promise.race([gw.exited, sleep(10000).then(() => null)]);
      assert.deepEqual(exit && { code: exit.code, signal: exit.signal }, { code: 0, signal: null });
      for (const d of devs) assert.equal(await rc.cmd('EXISTS', `nh:dev:${d}`), 0, `${d} released`);
      assert.equal(await rc.cmd('SCARD', `nh:gw:${GW_ID}:devs`), 0, "the gateway's set is empty");
    } finally {
      await Promise.all(clients.map((c) => c.disconnect()));
    }
  });
});

/** A gateway started with certificate files of the test's choosing (startGateway always passes
 * the PKI's server.pem and device-cas.pem), for the reload test. */
class FileGateway extends Gateway {
  constructor(files, extra) {
    super({ workers: 2 });
    this.files = files;
    this.extra = extra;
  }

  async start() {
    this.port = await freePort();
    const args = ['--listen', `${HOST}:${this.port}`, '--workers', '2', '--cert', this.files.cert, '--key',
      this.files.key, '--device-ca', this.files.ca, '--log-level', 'info', ...this.extra];
    this.args = args;
    const fd = openSync(this.logFile, 'a');
    this.proc = spawn(NHGW_BIN, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    await waitFor(() => {
      if (this.exit) throw new Error(`nhgw exited during start-up: ${this.log()}`);
      return this.events('listening').length >= 2;
    }, 10000, 'nhgw listening');
    return this;
  }
}

/** The CN of the certificate the gateway presents to a new connection. */
function serverCn(port) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: HOST, port, servername: 'localhost', ca: certFile('server-ca.pem'), cert: certFile('device-1.pem'),
      key: certFile('device-1.key'),
    });
    s.setTimeout(5000, () => s.destroy(new Error('TLS timeout')));
    s.once('secureConnect', () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.destroy();
      resolve(cn);
    });
    s.once('error', reject);
  });
}

describe('hot reload (SIGHUP)', () => {
  let gw, dir, admin;
  const it = gwTest(() => gw);
  const files = {};
  const put = (dst, src) => copyFileSync(certPath(src), dst);
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nhgw-reload-'));
    files.cert = join(dir, 'server.pem');
    files.key = join(dir, 'server.key');
    files.ca = join(dir, 'devices.pem');
    put(files.cert, 'server.pem');
    put(files.key, 'server.key');
    put(files.ca, 'device-cas.pem');
    admin = await freePort();
    gw = await new FileGateway(files, ['--admin-listen', `${HOST}:${admin}`]).start();
  });
  after(async () => {
    await gw?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function reload(expect) {
    const since = gw.log().length;
    gw.proc.kill('SIGHUP');
    return gw.waitForLog(expect === 'ok' ? /event=reload_done/ : /event=reload_failed/, 10000, since);
  }

  it('rotates the server certificate and the CA bundle under live sessions', async () => {
    assert.equal(await serverCn(gw.port), 'localhost');
    const old1 = await session(gw.port, device(1));
    const old5 = await session(gw.port, device(5)); // its CA (device-ca2) is about to be removed
    // accepted before the reload, handshake after it: it keeps the context it was accepted with
    const pending = await new Promise((resolve, reject) => {
      const s = net.connect({ host: HOST, port: gw.port }, () => resolve(s));
      s.once('error', reject);
    });
    await sleep(200); // accepted by now (the gateway creates the TLS state at accept)
    try {
      put(files.cert, 'server2.pem');
      put(files.key, 'server2.key');
      put(files.ca, 'device-ca.pem');
      await reload('ok');
      assert.equal(gw.events('tls_reloaded').length, 2, 'both workers rebuilt their context');
      const lateCn = await new Promise((resolve, reject) => {
        const s = tls.connect({ socket: pending, servername: 'localhost', ca: certFile('server-ca.pem'),
          cert: certFile('device-1.pem'), key: certFile('device-1.key') });
        s.once('secureConnect', () => {
          resolve(s.getPeerCertificate().subject.CN);
          s.destroy();
        });
        s.once('error', reject);
      });
      assert.equal(lateCn, 'localhost', 'the handshake in progress finished with the old context');
      // new connections (both workers: several tries) see the new certificate
      for (let i = 0; i < 6; i++) assert.equal(await serverCn(gw.port), 'nhgw-rotated');
      const fresh = await session(gw.port, device(2));
      assert.equal((await fresh.heartbeat()).status, 'ok');
      await fresh.disconnect();
      // a device whose CA was removed can no longer connect
      for (let i = 0; i < 4; i++) {
        const r = await attemptUpgrade(gw.port, device(5));
        assert.notEqual(r.outcome, 'http', `device-5 refused after the reload (try ${i})`);
      }
      // existing sessions are untouched, including device-5's
      assert.equal(old1.closed, false);
      assert.equal(old5.closed, false);
      assert.equal((await old1.heartbeat()).status, 'ok');
      assert.equal((await old5.heartbeat()).status, 'ok');
      assert.equal(sample(await metrics(admin), 'nhgw_config_reloads_total', { result: 'ok' }), 1);
    } finally {
      await old1.disconnect();
      await old5.disconnect();
    }
  });

  it('a corrupt file or a key that does not match is rejected and the old configuration stays', async () => {
    const live = await session(gw.port, device(3));
    try {
      writeFileSync(files.cert, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
      const line = await reload('failed');
      assert.match(line, /certificate/);
      put(files.cert, 'server2.pem');
      put(files.key, 'server.key'); // the other certificate's key
      assert.match(await reload('failed'), /private key does not match/);
      put(files.key, 'server2.key');
      writeFileSync(files.ca, 'garbage\n');
      assert.match(await reload('failed'), /device CA/);
      // nothing of the bad files was applied: workers never saw them
      assert.equal(gw.events('tls_reloaded').length, 2);
      assert.equal(await serverCn(gw.port), 'nhgw-rotated');
      const fresh = await session(gw.port, device(4));
      await fresh.disconnect();
      assert.equal((await live.heartbeat()).status, 'ok');
      assert.equal(sample(await metrics(admin), 'nhgw_config_reloads_total', { result: 'failed' }), 3);
      // and a good file afterwards applies again
      put(files.ca, 'device-cas.pem');
      await reload('ok');
      const back = await session(gw.port, device(5));
      await back.disconnect();
    } finally {
      await live.disconnect();
    }
  });
});

test('--admin-listen on a taken port fails start-up with a clear message', async () => {
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(0, HOST, r));
  const port = blocker.address().port;
  try {
    const out = await new Promise((resolve) => {
      const p = spawn(NHGW_BIN, ['--listen', `${HOST}:0`, '--admin-listen', `${HOST}:${port}`, '--cert',
        certPath('server.pem'), '--key', certPath('server.key'), '--device-ca', certPath('device-cas.pem')]);
      let text = '';
      p.stderr.on('data', (d) => (text += d));
      p.stdout.on('data', (d) => (text += d));
      p.on('exit', (code) => resolve({ code, text }));
    });
    assert.equal(out.code, 1);
    assert.match(out.text, /event=startup_failed.*admin port/);
  } finally {
    blocker.close();
  }
});
