// TLS 1.2 session resumption by session ID (the shared session store, --session-cache-size):
// what nerves_hub_link does, since Erlang's ssl resumes TLS 1.2 sessions by ID and sends no
// session-ticket extension. These clients disable tickets (SSL_OP_NO_TICKET) to behave the same.
// Checked: resumption on every reconnect whichever worker takes it, with the device identity of
// the full handshake; none with the store off; a forged session ID gets a full handshake; a reload
// that removes the device's CA ends both its resumption and its full handshakes.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import tls from 'node:tls';
import { certPath, device } from './lib/certs.mjs';
import { HOST, gwTest, sleep, startGateway, waitFor, withTimeout } from './lib/gateway.mjs';
import { closedConn, connectById, sessionIdAt, upgradeOn } from './lib/tls12.mjs';
import { fetchMetrics, metric } from './lib/metrics.mjs';

const V12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' };

/** One connection that must resume: upgrade it, close it, return what the gateway saw. */
async function resumeAndIdentify(gw, deviceName, session) {
  const c = await connectById(gw.port, deviceName, session);
  try {
    assert.equal(c.reused, true, `${deviceName}: the session was resumed`);
    assert.match(await upgradeOn(c.socket), /^HTTP\/1\.1 101 /);
  } finally {
    c.socket.destroy();
  }
  return closedConn(gw, c.localPort);
}

/** A copy of a DER session with every byte of its session ID flipped. */
function forgeSessionId(der) {
  const b = Buffer.from(der);
  const id = sessionIdAt(b);
  assert.equal(id.len, 32, 'the gateway assigns 32-byte session IDs');
  for (let k = 0; k < id.len; k++) b[id.offset + k] ^= 0xff;
  return b;
}

/** The shared store's series (nhgw_tls_session_cache_*), each required to be present. */
function cacheMetrics(text) {
  const names = {
    capacity: 'nhgw_tls_session_cache_capacity',
    entries: 'nhgw_tls_session_cache_entries',
    hits: 'nhgw_tls_session_cache_lookups_total{result="hit"}',
    misses: 'nhgw_tls_session_cache_lookups_total{result="miss"}',
    stores: 'nhgw_tls_session_cache_stores_total',
    evictedFull: 'nhgw_tls_session_cache_evictions_total{reason="full"}',
    evictedExpired: 'nhgw_tls_session_cache_evictions_total{reason="expired"}',
    refusedTooLarge: 'nhgw_tls_session_cache_refused_total{reason="too_large"}',
    refusedOther: 'nhgw_tls_session_cache_refused_total{reason="other"}',
    recoveries: 'nhgw_tls_session_cache_recoveries_total',
  };
  const out = {};
  for (const [k, line] of Object.entries(names)) {
    out[k] = metric(text, line);
    assert.equal(typeof out[k], 'number', `${line} in /metrics`);
  }
  return out;
}

/** The gateway stores a session as its side of the handshake ends, which can come after the
 * client's side: wait until the store has taken `n` sessions before offering one. */
async function sessionsStored(admin, n) {
  return waitFor(
    async () => cacheMetrics(await fetchMetrics(admin)).stores >= n,
    3000,
    `${n} session(s) stored`,
  );
}

describe('session-ID resumption across workers (default store, --workers 2)', () => {
  let gw, admin;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ workers: 2 });
    admin = gw.admin;
  });
  after(async () => {
    await gw?.stop();
  });

  it('every reconnect resumes, on both workers, as the same device', async () => {
    assert.match(gw.log(), /event=session_cache .*sessions=\d+/);
    const first = await connectById(gw.port, 'device-1');
    first.socket.destroy();
    assert.equal(first.reused, false);
    await sessionsStored(admin, 1);
    const pids = new Set();
    for (let i = 0; i < 24; i++) {
      const seen = await resumeAndIdentify(gw, 'device-1', first.session);
      assert.equal(seen.device, 'device-1', `try ${i}: the identity of the full handshake`);
      pids.add(seen.pid);
    }
    assert.equal(pids.size, 2, 'the reconnects landed on both workers');
    // a second device's session is its own: it resumes as that device, not as device-1
    const other = await connectById(gw.port, 'device-2');
    other.socket.destroy();
    await sessionsStored(admin, 2);
    for (let i = 0; i < 4; i++) assert.equal((await resumeAndIdentify(gw, 'device-2', other.session)).device, 'device-2');
    const m = await waitFor(
      async () => {
        const t = await fetchMetrics(admin);
        return metric(t, 'nhgw_tls_resumptions_total{by="session_id"}') >= 28 ? t : null;
      },
      3000,
      'resumptions by session ID in /metrics',
    );
    assert.equal(metric(m, 'nhgw_tls_resumptions_total{by="ticket"}'), 0);
    // the store saw what the clients did: two new sessions, 28 IDs found, none offered in vain
    const sc = cacheMetrics(m);
    assert.equal(sc.capacity, Number(/event=session_cache .*sessions=(\d+)/.exec(gw.log())[1]));
    assert.equal(sc.hits, 28);
    assert.equal(metric(m, 'nhgw_tls_resumptions_total{by="session_id"}'), 28);
    assert.equal(sc.misses, 0);
    assert.equal(sc.stores, 2);
    assert.equal(sc.entries, 2);
  });

  it('a forged session ID falls back to a full handshake, which works', async () => {
    const s0 = cacheMetrics(await fetchMetrics(admin));
    const first = await connectById(gw.port, 'device-3');
    first.socket.destroy();
    // the gateway stores the session as its side of the handshake ends, which can be after the
    // client's (here nothing else, such as an upgrade, waits for the gateway)
    const before = await waitFor(
      async () => {
        const x = cacheMetrics(await fetchMetrics(admin));
        return x.stores === s0.stores + 1 ? x : null;
      },
      3000,
      "device-3's session stored",
    );
    assert.equal(before.entries, s0.entries + 1);
    const forged = forgeSessionId(first.session);
    for (let i = 0; i < 6; i++) {
      const c = await connectById(gw.port, 'device-3', forged);
      try {
        assert.equal(c.reused, false, 'an unknown ID is not resumed');
        assert.match(await upgradeOn(c.socket), /^HTTP\/1\.1 101 /);
      } finally {
        c.socket.destroy();
      }
      assert.equal((await closedConn(gw, c.localPort)).device, 'device-3');
    }
    // each forged ID was a miss, and its full handshake (complete: the upgrade was answered)
    // stored a new session
    const mid = cacheMetrics(await fetchMetrics(admin));
    assert.equal(mid.misses - before.misses, 6);
    assert.equal(mid.hits, before.hits);
    assert.equal(mid.stores - before.stores, 6);
    assert.equal(mid.entries - before.entries, 6);
    // the real one still resumes
    await resumeAndIdentify(gw, 'device-3', first.session);
    const end = cacheMetrics(await fetchMetrics(admin));
    assert.equal(end.hits - mid.hits, 1);
    assert.equal(end.misses, mid.misses);
  });

  it('a client offering tickets still resumes with its ticket, not the store', async () => {
    const s1 = await withTimeout(
      new Promise((resolve, reject) => {
        const s = tls.connect({ host: HOST, port: gw.port, servername: 'localhost', ...device('device-4'), ...V12 });
        let sess = null;
        s.on('session', (x) => (sess = x));
        s.once('error', reject);
        s.once('secureConnect', () => setImmediate(() => resolve({ s, sess })));
      }),
      5000,
      'ticket connect',
    );
    s1.s.destroy();
    assert.ok(s1.sess, 'a ticket was issued');
    await sleep(300); // workers publish their counters every 100 ms: let earlier tests' settle
    const before = metric(await fetchMetrics(admin), 'nhgw_tls_resumptions_total{by="session_id"}');
    for (let i = 0; i < 4; i++) {
      const c = await withTimeout(
        new Promise((resolve, reject) => {
          const s = tls.connect({
            host: HOST, port: gw.port, servername: 'localhost', ...device('device-4'), ...V12, session: s1.sess,
          });
          s.once('error', reject);
          s.once('secureConnect', () => resolve(s));
        }),
        5000,
        'ticket resume',
      );
      try {
        assert.equal(c.isSessionReused(), true);
        // the client speaks last in a resumed TLS 1.2 handshake: let the gateway finish it
        assert.match(await upgradeOn(c), /^HTTP\/1\.1 101 /);
      } finally {
        c.destroy();
      }
    }
    await waitFor(
      async () => metric(await fetchMetrics(admin), 'nhgw_tls_resumptions_total{by="ticket"}') >= 4,
      3000,
      'ticket resumptions counted',
    );
    await sleep(300);
    assert.equal(metric(await fetchMetrics(admin), 'nhgw_tls_resumptions_total{by="session_id"}'), before);
  });

  it("the store's counters agree with the resumptions and what the clients offered", async () => {
    const m = await fetchMetrics(admin);
    const sc = cacheMetrics(m);
    // every ID found resumed (nothing here fails re-verification) and every resumption by ID was
    // found: 28 + 1; the misses are the 6 forged IDs (ticket clients are not looked up)
    assert.equal(sc.hits, metric(m, 'nhgw_tls_resumptions_total{by="session_id"}'));
    assert.equal(sc.hits, 29);
    assert.equal(sc.misses, 6);
    // device-1, device-2, device-3 and its 6 full handshakes; ticket sessions are not stored
    assert.equal(sc.stores, 9);
    assert.ok(sc.entries > 0);
    assert.equal(sc.entries, sc.stores, 'nothing was removed, replaced or expired');
    assert.ok(sc.entries <= sc.capacity);
    assert.equal(sc.evictedFull + sc.evictedExpired, 0);
    assert.equal(sc.refusedTooLarge + sc.refusedOther, 0);
    assert.equal(sc.recoveries, 0);
  });
});

describe('session-ID resumption off (--session-cache-size 0)', () => {
  let gw, admin;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ workers: 2, args: ['--session-cache-size', '0'] });
    admin = gw.admin;
  });
  after(async () => {
    await gw?.stop();
  });

  it('no reconnect resumes; every one is a full handshake that works', async () => {
    assert.doesNotMatch(gw.log(), /event=session_cache/);
    const first = await connectById(gw.port, 'device-1');
    first.socket.destroy();
    assert.equal(first.reused, false);
    for (let i = 0; i < 8; i++) {
      const c = await connectById(gw.port, 'device-1', first.session);
      try {
        assert.equal(c.reused, false, `try ${i}`);
        assert.match(await upgradeOn(c.socket), /^HTTP\/1\.1 101 /);
      } finally {
        c.socket.destroy();
      }
    }
    // the store's series are there, all 0: capacity 0 says it is off
    const sc = cacheMetrics(await fetchMetrics(admin));
    for (const [k, v] of Object.entries(sc)) assert.equal(v, 0, k);
  });
});

describe('session-ID resumption and a reload that removes a CA (SIGHUP)', () => {
  let gw, dir, ca;
  const it = gwTest(() => gw);
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nhgw-resume-'));
    ca = join(dir, 'devices.pem');
    copyFileSync(certPath('device-cas.pem'), ca);
    gw = await startGateway({ workers: 2, args: ['--device-ca', ca] });
  });
  after(async () => {
    await gw?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a session of a device whose CA was removed is not resumed, and its full handshake fails", async () => {
    // device-5 is issued by device-ca2, device-1 by device-ca
    // an answered upgrade means the gateway's side of the handshake, and so the store, is done
    const s5 = await connectById(gw.port, 'device-5');
    assert.match(await upgradeOn(s5.socket), /^HTTP\/1\.1 101 /);
    s5.socket.destroy();
    const s1 = await connectById(gw.port, 'device-1');
    assert.match(await upgradeOn(s1.socket), /^HTTP\/1\.1 101 /);
    s1.socket.destroy();
    for (let i = 0; i < 4; i++) {
      assert.equal((await resumeAndIdentify(gw, 'device-5', s5.session)).device, 'device-5');
      assert.equal((await resumeAndIdentify(gw, 'device-1', s1.session)).device, 'device-1');
    }
    copyFileSync(certPath('device-ca.pem'), ca);
    const since = gw.log().length;
    gw.proc.kill('SIGHUP');
    await gw.waitForLog(/event=reload_done/, 10000, since);
    for (let i = 0; i < 6; i++) {
      let outcome;
      try {
        const c = await connectById(gw.port, 'device-5', s5.session);
        outcome = c.reused ? 'resumed' : 'full';
        try {
          await upgradeOn(c.socket);
          outcome += '+http';
        } catch {
          /* closed: refused after the handshake */
        }
        c.socket.destroy();
      } catch {
        outcome = 'tls-error';
      }
      assert.equal(outcome, 'tls-error', `device-5 try ${i}: refused in the handshake`);
    }
    // sessions made under the old bundle are not resumed at all: device-1 gets a full handshake
    // (verified against the new bundle, which still trusts it) and a new session, which resumes
    const c1 = await connectById(gw.port, 'device-1', s1.session);
    assert.equal(c1.reused, false, 'the old context does not resume under the new one');
    assert.match(await upgradeOn(c1.socket), /^HTTP\/1\.1 101 /);
    c1.socket.destroy();
    for (let i = 0; i < 4; i++) assert.equal((await resumeAndIdentify(gw, 'device-1', c1.session)).device, 'device-1');
  });
});
