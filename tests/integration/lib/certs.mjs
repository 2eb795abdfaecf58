// Test PKI: runs ops/devcerts.sh once into <repo>/build/test-certs (idempotent and safe to call
// from several test processes at once) and hands out file paths and PEM contents.
// It does not create certificates itself: ops/devcerts.sh is the single source.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CERT_DIR = process.env.NHGW_TEST_CERTS || join(REPO, 'build', 'test-certs');

let generated = false;

/** Ensure the PKI exists; returns the directory. */
export function ensureCerts() {
  if (!generated) {
    execFileSync(join(REPO, 'ops', 'devcerts.sh'), [CERT_DIR], { stdio: ['ignore', 'ignore', 'inherit'] });
    generated = true;
  }
  return CERT_DIR;
}

/** Absolute path of a file in the PKI directory (e.g. certPath('server.pem')). */
export function certPath(name) {
  ensureCerts();
  return join(CERT_DIR, name);
}

const cache = new Map();

/** Contents of a PKI file as a Buffer, cached. */
export function certFile(name) {
  if (!cache.has(name)) cache.set(name, readFileSync(certPath(name)));
  return cache.get(name);
}

/**
 * TLS client options for a device identity: `device('device-1')` → {cert, key, ca}; `device(null)`
 * → only {ca} (no client certificate). ca is the server CA so the server certificate is verified.
 */
export function device(name) {
  const opts = { ca: certFile('server-ca.pem') };
  if (name) {
    opts.cert = certFile(`${name}.pem`);
    opts.key = certFile(`${name}.key`);
  }
  return opts;
}
