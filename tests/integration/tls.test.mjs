// TLS: protocol versions, ECDSA and RSA server certificates, the optional client certificate,
// device certificate verification against the CA bundle (device-protocol §1.2, §1.6; rejection
// is a handshake failure with no HTTP at all), expired-certificate policy, and session
// resumption with a shared ticket key across workers.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe } from 'node:test';
import tls from 'node:tls';
import { certFile, device } from './lib/certs.mjs';
import { HOST, startGateway, gwTest, withTimeout } from './lib/gateway.mjs';
import { attemptUpgrade, connectTls, upgradeRequest } from './lib/rawws.mjs';
import { assertServes } from './lib/phx.mjs';

const V12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' };
const V13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' };
const VERSIONS = [
  ['TLS 1.2', V12],
  ['TLS 1.3', V13],
];

/** Connect, report {protocol, keyType, cert (X509Certificate)} of what the server presented. */
async function serverCertOver(port, deviceName, tlsOpts) {
  const conn = await connectTls(port, deviceName, tlsOpts);
  try {
    const raw = conn.socket.getPeerX509Certificate();
    return { protocol: conn.socket.getProtocol(), keyType: raw.publicKey.asymmetricKeyType, cert: raw };
  } finally {
    conn.destroy();
  }
}

async function assertUpgrades(port, deviceName, tlsOpts) {
  const r = await attemptUpgrade(port, deviceName, tlsOpts);
  assert.equal(r.outcome, 'http', `${deviceName}: ${r.error?.message}`);
  r.conn.destroy();
  assert.equal(r.res.status, 101, `${deviceName}: ${r.res.status} ${r.res.body}`);
}

/** The certificate is refused inside the TLS handshake: no HTTP response, ever. */
async function assertRefused(port, deviceName, tlsOpts) {
  const r = await attemptUpgrade(port, deviceName, tlsOpts);
  if (r.outcome === 'http') r.conn.destroy();
  assert.notEqual(r.outcome, 'http', `${deviceName}: got HTTP ${r.res?.status}, want a TLS failure`);
  assert.notEqual(r.outcome, 'timeout', `${deviceName}: server neither failed the handshake nor closed`);
  if (tlsOpts.maxVersion === 'TLSv1.2') {
    // In TLS 1.2 the client sees the server's alert before its handshake completes.
    assert.equal(r.outcome, 'tls-error', `${deviceName}: handshake completed (${r.error?.message})`);
  }
  assert.equal(r.bytes ?? 0, 0, 'no application data before the failure');
}

describe('tls (ECDSA + RSA server certificates)', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ rsa: true });
  });
  after(async () => {
    await gw?.stop();
  });

  for (const [name, v] of VERSIONS) {
    it(`${name}: ECDSA certificate by default, verified for localhost against the server CA`, async () => {
      const s = await serverCertOver(gw.port, 'device-1', v);
      assert.equal(s.protocol, v.maxVersion);
      // node's default TLS 1.2 cipher list names ECDHE-RSA first: the server's own preference
      // must pick ECDSA (cheaper handshakes) whenever the client supports it.
      assert.equal(s.keyType, 'ec', 'the ECDSA certificate is preferred');
      assert.ok(s.cert.checkIssued(new X509Certificate(certFile('server-ca.pem'))));
      await assertUpgrades(gw.port, 'device-1', v);
    });
  }

  it('TLS 1.2: an RSA-only client (ECDHE-RSA ciphers, RSA sigalgs) gets the RSA certificate', async () => {
    const opts = {
      ...V12,
      ciphers: 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305',
      sigalgs: 'rsa_pss_rsae_sha256:rsa_pkcs1_sha256',
    };
    // No client certificate: the client's own sigalgs would exclude its ECDSA key.
    const s = await serverCertOver(gw.port, null, opts);
    assert.equal(s.keyType, 'rsa');
    assert.equal(s.cert.publicKey.asymmetricKeyDetails.modulusLength, 2048);
    const r = await attemptUpgrade(gw.port, null, opts);
    assert.equal(r.outcome, 'http', r.error?.message);
    r.conn.destroy();
    assert.equal(r.res.status, 401);
  });

  it('TLS 1.3: a client accepting only RSA-PSS signatures gets the RSA certificate', async () => {
    const s = await serverCertOver(gw.port, null, { ...V13, sigalgs: 'rsa_pss_rsae_sha256:rsa_pss_rsae_sha384' });
    assert.equal(s.keyType, 'rsa');
  });

  it('TLS 1.2: an ECDSA-only client gets the ECDSA certificate', async () => {
    const s = await serverCertOver(gw.port, 'device-1', { ...V12, ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
    assert.equal(s.keyType, 'ec');
  });

  for (const [name, v] of VERSIONS) {
    it(`${name}: the client certificate is optional at the TLS layer`, async () => {
      const r = await attemptUpgrade(gw.port, null, v);
      assert.equal(r.outcome, 'http', r.error?.message);
      r.conn.destroy();
      assert.equal(r.res.status, 401);
    });

    it(`${name}: device certificates from both CAs of the bundle are accepted`, async () => {
      for (const d of ['device-1', 'device-2', 'device-5']) await assertUpgrades(gw.port, d, v);
    });

    it(`${name}: a device sending its chain (leaf + signer CA) is accepted`, async () => {
      const cert = Buffer.concat([certFile('device-1.pem'), certFile('device-ca.pem')]);
      await assertUpgrades(gw.port, 'device-1', { ...v, cert });
    });

    it(`${name}: certificates of an untrusted CA or self-signed fail the handshake`, async () => {
      await assertRefused(gw.port, 'device-other', v);
      await assertRefused(gw.port, 'device-selfsigned', v);
      // A chain that carries the untrusted CA does not help.
      const cert = Buffer.concat([certFile('device-other.pem'), certFile('other-ca.pem')]);
      await assertRefused(gw.port, 'device-other', { ...v, cert });
    });

    it(`${name}: an expired device certificate is accepted by default`, async () => {
      await assertUpgrades(gw.port, 'device-expired', v);
    });
  }

  it('still serves a good Phoenix client after all of the above', async () => {
    await assertServes(gw.port);
  });
});

describe('tls --expired-certs reject', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ args: ['--expired-certs', 'reject'] });
  });
  after(async () => {
    await gw?.stop();
  });

  for (const [name, v] of VERSIONS) {
    it(`${name}: an expired certificate fails the handshake; valid ones still upgrade`, async () => {
      await assertRefused(gw.port, 'device-expired', v);
      await assertUpgrades(gw.port, 'device-1', v);
      await assertUpgrades(gw.port, 'device-5', v);
    });
  }
});

describe('tls --device-ca with a single CA', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ deviceCa: 'device-ca.pem' });
  });
  after(async () => {
    await gw?.stop();
  });

  it('only that CA is trusted', async () => {
    await assertUpgrades(gw.port, 'device-1', V12);
    await assertRefused(gw.port, 'device-5', V12);
  });
});

/** TLS 1.2 connection with an optional session; resolves {reused, session (ticket), conn}. */
function connect12(port, session) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: HOST, port, servername: 'localhost', ...device('device-1'), ...V12, session });
      let newSession = null;
      s.on('session', (sess) => {
        newSession = sess;
      });
      s.once('error', reject);
      s.once('secureConnect', () => {
        // A TLS 1.2 ticket arrives within the handshake; give the event loop one turn.
        setImmediate(() => resolve({ socket: s, reused: s.isSessionReused(), session: newSession }));
      });
    }),
    5000,
    'TLS 1.2 connect',
  );
}

describe('tls session resumption (--workers 2 --ticket-key-file)', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ workers: 2, ticketKey: true });
  });
  after(async () => {
    await gw?.stop();
  });

  it('a TLS 1.2 session ticket resumes on every new connection, whichever worker takes it', async () => {
    const first = await connect12(gw.port);
    first.socket.destroy();
    assert.equal(first.reused, false);
    assert.ok(first.session, 'the server issued a session ticket');
    const results = [];
    for (let i = 0; i < 12; i++) {
      const c = await connect12(gw.port, first.session);
      results.push(c.reused);
      c.socket.destroy();
    }
    assert.deepEqual(results, Array(12).fill(true));
  });

  it('a resumed session keeps the device identity: the upgrade succeeds', async () => {
    const first = await connect12(gw.port);
    first.socket.destroy();
    for (let i = 0; i < 4; i++) {
      const c = await connect12(gw.port, first.session);
      assert.equal(c.reused, true);
      const req = upgradeRequest({});
      const chunks = [];
      c.socket.on('data', (d) => chunks.push(d));
      c.socket.write(req.text);
      const head = await withTimeout(
        new Promise((resolve, reject) => {
          const check = () => {
            const b = Buffer.concat(chunks).toString('latin1');
            if (b.includes('\r\n\r\n')) resolve(b);
          };
          c.socket.on('data', check);
          c.socket.once('close', () => reject(new Error('closed before a response')));
        }),
        5000,
        'upgrade response on a resumed session',
      );
      c.socket.destroy();
      assert.match(head, /^HTTP\/1\.1 101 /);
    }
  });
});
