// Runs the project's own C client and load generator (build/nhbench) for tests.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO, certPath } from './certs.mjs';

export const NHBENCH_BIN = process.env.NHBENCH_BIN || join(REPO, 'build', 'nhbench');
export const RUN_TIMEOUT_MS = 120000;

/** Run nhbench; resolves {code, signal, stdout, stderr}. Killed after RUN_TIMEOUT_MS. */
export function runNhbench(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(NHBENCH_BIN, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), RUN_TIMEOUT_MS);
    p.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** nhbench's device-identity arguments: the test PKI's device CA signs a certificate per
 * simulated device (cached in build/bench-pool), verified against the test server CA. */
export function pkiArgs() {
  return [
    '--ca-cert', certPath('device-ca.pem'),
    '--ca-key', certPath('device-ca.key'),
    '--server-ca', certPath('server-ca.pem'),
    '--pool-dir', join(REPO, 'build', 'bench-pool'),
  ];
}

/** A failure message with the command line, exit status and output of a run. */
export function explainRun(args, r) {
  return `nhbench ${args.join(' ')}\nexit ${r.code} ${r.signal ?? ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}
