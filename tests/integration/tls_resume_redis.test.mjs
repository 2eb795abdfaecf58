// TLS 1.2 session-ID resumption across pods (--session-store redis): two gateways share a
// redis-server and the ticket key file; a device (TLS 1.2, no tickets, like nerves_hub_link) that
// got its session from gateway A resumes on gateway B as the same device. Checked too: the value
// in Redis is sealed (no certificate in it; one byte changed and B does a full handshake), its
// TTL is the session's lifetime, a hung or stopped Redis costs at most the lookup timeout, and
// with the store off (the default) there is no cross-gateway resumption.
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { HOST, freePort, gwTest, sleep, startGateway, waitFor } from './lib/gateway.mjs';
import { startRedis } from './lib/stack.mjs';
import { closedConn, connectById, sessionIdAt, upgradeOn } from './lib/tls12.mjs';
import { fetchMetrics, metric } from './lib/metrics.mjs';


/** Connect offering `session`, upgrade, close; returns {reused, device, ms}. */
async function connectAndIdentify(gw, deviceName, session) {
  const c = await connectById(gw.port, deviceName, session);
  try {
    assert.match(await upgradeOn(c.socket), /^HTTP\/1\.1 101 /);
  } finally {
    c.socket.destroy();
  }
  const seen = await closedConn(gw, c.localPort);
  return { reused: c.reused, device: seen.device, ms: c.ms, session: c.session };
}

/** The session ID (hex) of a DER-encoded session. */
function sessionIdHex(der) {
  const id = sessionIdAt(der);
  assert.equal(id.len, 32);
  return Buffer.from(der).subarray(id.offset, id.offset + id.len).toString('hex');
}

/** nhgw_tls_session_cache_redis_* of one gateway, each required to be present. */
async function redisMetrics(admin) {
  const t = await fetchMetrics(admin);
  const out = {};
  for (const r of ['hit', 'miss', 'timeout', 'error', 'rejected'])
    out[r] = metric(t, `nhgw_tls_session_cache_redis_lookups_total{result="${r}"}`);
  for (const r of ['stored', 'skipped', 'failed'])
    out[r] = metric(t, `nhgw_tls_session_cache_redis_stores_total{result="${r}"}`);
  for (const [k, v] of Object.entries(out)) assert.equal(typeof v, 'number', `${k} in /metrics`);
  out.resumedById = metric(t, 'nhgw_tls_resumptions_total{by="session_id"}');
  return out;
}

/** Waits until the metrics of `admin` satisfy pred (workers publish every 100 ms). */
function metricsWhen(admin, pred, what) {
  return waitFor(
    async () => {
      const m = await redisMetrics(admin);
      return pred(m) ? m : null;
    },
    3000,
    what,
  );
}

describe('cross-pod session-ID resumption through Redis (--session-store redis)', () => {
  let redis, rc, gwA, gwB, adminA, adminB;
  const itA = gwTest(() => gwA);
  const it = gwTest(() => gwB);
  const start = async (id, admin) =>
    startGateway({
      ticketKey: true,
      args: ['--redis', redis.addr, '--session-store', 'redis', '--gateway-id', id, '--admin-listen', `${HOST}:${admin}`],
    });
  before(async () => {
    redis = await startRedis();
    rc = await redis.client();
    adminA = await freePort();
    adminB = await freePort();
    gwA = await start('gw-a', adminA);
    gwB = await start('gw-b', adminB);
    await gwA.waitForLog(/event=registry_up/, 5000);
    await gwB.waitForLog(/event=registry_up/, 5000);
  });
  after(async () => {
    await gwA?.stop();
    await gwB?.stop();
    await redis?.stop();
  });

  itA('a session made on A is stored sealed in Redis with the session lifetime as TTL', async () => {
    const first = await connectAndIdentify(gwA, 'device-1');
    assert.equal(first.reused, false);
    const key = `nh:tls:${sessionIdHex(first.session)}`;
    await waitFor(async () => (await rc.cmd('EXISTS', key)) === 1, 3000, `${key} in Redis`);
    const ttl = await rc.cmd('TTL', key);
    assert.ok(ttl > 7000 && ttl <= 7200, `TTL ${ttl}: the 2 h session lifetime`);
    // sealed: version 1, and nothing of the session readable (a serialised session holds the
    // device's certificate, CN and all)
    assert.equal(await rc.cmd('GETRANGE', key, 0, 0), '\x01');
    const v = await rc.cmd('GET', key);
    assert.ok(!v.includes('device-1'), 'no certificate in the value');
    assert.ok((await rc.cmd('STRLEN', key)) > 300);
    const m = await metricsWhen(adminA, (x) => x.stored === 1, 'one session stored by A');
    assert.equal(m.skipped + m.failed, 0);
    gwA.session1 = first.session;
  });

  it('B resumes it, as the same device, and then from its own store', async () => {
    const s = gwA.session1;
    const r = await connectAndIdentify(gwB, 'device-1', s);
    assert.equal(r.reused, true, 'resumed on the other gateway');
    assert.equal(r.device, 'device-1');
    for (let i = 0; i < 3; i++) {
      const again = await connectAndIdentify(gwB, 'device-1', s);
      assert.equal(again.reused, true);
      assert.equal(again.device, 'device-1');
    }
    // one Redis lookup: the fetched session went into B's shared-memory store
    const m = await metricsWhen(adminB, (x) => x.resumedById >= 4, 'B counted 4 resumptions by ID');
    assert.equal(m.hit, 1);
    assert.equal(m.miss + m.timeout + m.error + m.rejected, 0);
    // and a device-2 session is device-2 on B
    const d2 = await connectAndIdentify(gwA, 'device-2');
    await waitFor(async () => (await rc.cmd('EXISTS', `nh:tls:${sessionIdHex(d2.session)}`)) === 1, 3000, 'stored');
    const r2 = await connectAndIdentify(gwB, 'device-2', d2.session);
    assert.equal(r2.reused, true);
    assert.equal(r2.device, 'device-2');
  });

  it('an unknown session ID is a miss and a full handshake', async () => {
    const m0 = await redisMetrics(adminB);
    const d3 = await connectAndIdentify(gwA, 'device-3');
    const key = `nh:tls:${sessionIdHex(d3.session)}`;
    await waitFor(async () => (await rc.cmd('EXISTS', key)) === 1, 3000, 'stored');
    await rc.cmd('DEL', key);
    const r = await connectAndIdentify(gwB, 'device-3', d3.session);
    assert.equal(r.reused, false);
    assert.equal(r.device, 'device-3');
    await metricsWhen(adminB, (x) => x.miss === m0.miss + 1, 'a miss counted');
  });

  it('a value changed in Redis (one byte, or replaced) is not resumed: full handshake', async () => {
    const m0 = await redisMetrics(adminB);
    for (const [i, tamper] of [
      async (key) => {
        // flip one byte of the ciphertext (bytes 0..12 are the version and nonce)
        const cur = await rc.cmd('GETRANGE', key, 40, 40);
        await rc.cmd('SETRANGE', key, 40, cur === 'A' ? 'B' : 'A');
      },
      async (key) => rc.cmd('SET', key, Buffer.alloc(600, 7)),
    ].entries()) {
      const d = await connectAndIdentify(gwA, 'device-4');
      const key = `nh:tls:${sessionIdHex(d.session)}`;
      await waitFor(async () => (await rc.cmd('EXISTS', key)) === 1, 3000, 'stored');
      await tamper(key);
      const r = await connectAndIdentify(gwB, 'device-4', d.session);
      assert.equal(r.reused, false, `tamper ${i}: full handshake`);
      assert.equal(r.device, 'device-4');
    }
    const m = await metricsWhen(adminB, (x) => x.rejected === m0.rejected + 2, 'two values rejected');
    assert.equal(m.hit, m0.hit, 'rejected values are not hits');
  });

  it('a hung Redis (SIGSTOP) costs at most the lookup timeout, then a full handshake', async () => {
    const d = await connectAndIdentify(gwA, 'device-5');
    const key = `nh:tls:${sessionIdHex(d.session)}`;
    await waitFor(async () => (await rc.cmd('EXISTS', key)) === 1, 3000, 'stored');
    const m0 = await redisMetrics(adminB);
    process.kill(redis.proc.pid, 'SIGSTOP');
    let r;
    try {
      r = await connectAndIdentify(gwB, 'device-5', d.session);
    } finally {
      process.kill(redis.proc.pid, 'SIGCONT');
    }
    assert.equal(r.reused, false);
    assert.equal(r.device, 'device-5');
    // 50 ms lookup timeout plus a full handshake; generous for a noisy machine and ASan
    assert.ok(r.ms < 1500, `handshake took ${r.ms} ms`);
    await metricsWhen(adminB, (x) => x.timeout === m0.timeout + 1, 'a timeout counted');
  });

  it('Redis stopped: full handshakes work at once, sessions are not stored', async () => {
    await sleep(300); // workers publish their counters every 100 ms: let earlier tests' settle
    const mA0 = await redisMetrics(adminA);
    const d = await connectAndIdentify(gwA, 'device-6');
    const key = `nh:tls:${sessionIdHex(d.session)}`;
    await waitFor(async () => (await rc.cmd('EXISTS', key)) === 1, 3000, 'stored');
    const sinceA = gwA.log().length;
    const sinceB = gwB.log().length;
    await redis.stop();
    await gwA.waitForLog(/event=registry_down/, 5000, sinceA);
    await gwB.waitForLog(/event=registry_down/, 5000, sinceB);
    const mB0 = await redisMetrics(adminB);
    for (let i = 0; i < 3; i++) {
      const r = await connectAndIdentify(gwB, 'device-6', i === 0 ? d.session : undefined);
      assert.equal(r.reused, false);
      assert.equal(r.device, 'device-6');
      assert.ok(r.ms < 1500, `handshake took ${r.ms} ms`);
    }
    // the lookup was not even sent (error), B's full handshakes' stores were skipped; A's store
    // of a new session is skipped too, and its own sessions still resume locally
    const a = await connectAndIdentify(gwA, 'device-7');
    assert.equal((await connectAndIdentify(gwA, 'device-7', a.session)).reused, true);
    await metricsWhen(adminB, (x) => x.error === mB0.error + 1 && x.skipped === mB0.skipped + 3, 'B: error, skipped');
    // device-6 was stored before Redis stopped, device-7 was skipped after
    await metricsWhen(adminA, (x) => x.skipped === mA0.skipped + 1 && x.stored === mA0.stored + 1, 'A: skipped');
  });
});

describe('the store off (default): no resumption across gateways', () => {
  let redis, rc, gwA, gwB;
  const it = gwTest(() => gwB);
  before(async () => {
    redis = await startRedis();
    rc = await redis.client();
    const args = (id) => ['--redis', redis.addr, '--gateway-id', id];
    gwA = await startGateway({ ticketKey: true, args: args('gw-a') });
    gwB = await startGateway({ ticketKey: true, args: args('gw-b') });
  });
  after(async () => {
    await gwA?.stop();
    await gwB?.stop();
    await redis?.stop();
  });

  it('a session from A is not resumed on B, and Redis holds no session', async () => {
    const first = await connectAndIdentify(gwA, 'device-1');
    assert.equal((await connectAndIdentify(gwA, 'device-1', first.session)).reused, true, 'A resumes it');
    for (let i = 0; i < 3; i++) {
      const r = await connectAndIdentify(gwB, 'device-1', first.session);
      assert.equal(r.reused, false, `try ${i}`);
      assert.equal(r.device, 'device-1');
    }
    assert.deepEqual(await rc.cmd('KEYS', 'nh:tls:*'), []);
  });
});

describe('a connection that ends while its lookup waits (--handshake-timeout below the lookup timeout)', () => {
  let redis, rc, gwA, gwB, adminB;
  const it = gwTest(() => gwB);
  before(async () => {
    redis = await startRedis();
    rc = await redis.client();
    adminB = await freePort();
    const args = (id) => ['--redis', redis.addr, '--session-store', 'redis', '--gateway-id', id];
    gwA = await startGateway({ ticketKey: true, args: args('gw-a') });
    gwB = await startGateway({
      ticketKey: true,
      args: [...args('gw-b'), '--session-store-timeout', '1s', '--handshake-timeout', '100ms',
        '--admin-listen', `${HOST}:${adminB}`],
    });
    await gwB.waitForLog(/event=registry_up/, 5000);
  });
  after(async () => {
    await gwA?.stop();
    await gwB?.stop();
    await redis?.stop();
  });

  it('is closed by the handshake timeout; the late answer is dropped and the gateway goes on', async () => {
    const d = await connectAndIdentify(gwA, 'device-1');
    const key = `nh:tls:${sessionIdHex(d.session)}`;
    await waitFor(async () => (await rc.cmd('EXISTS', key)) === 1, 3000, 'stored');
    const m0 = await redisMetrics(adminB);
    const since = gwB.log().length;
    process.kill(redis.proc.pid, 'SIGSTOP');
    let outcome;
    try {
      const c = await connectById(gwB.port, 'device-1', d.session);
      c.socket.destroy();
      outcome = 'connected';
    } catch {
      outcome = 'closed';
    }
    await gwB.waitForLog(/event=timeout .*what="handshake timeout"/, 3000, since);
    await sleep(100);
    process.kill(redis.proc.pid, 'SIGCONT');
    assert.equal(outcome, 'closed', 'the handshake waited for Redis and timed out');
    // the answer (a hit, now that Redis runs again) reaches a connection that is gone
    await metricsWhen(adminB, (x) => x.hit + x.timeout + x.error === m0.hit + m0.timeout + m0.error + 1, 'answered');
    // and the next device resumes through Redis at once
    const r = await connectAndIdentify(gwB, 'device-1', d.session);
    assert.equal(r.reused, true);
    assert.equal(r.device, 'device-1');
  });
});
