// Starts and stops the real nhgw binary for black-box tests: picks a free port, writes its
// stderr/stdout to a log file in a temp dir, waits until every worker listens and the port
// accepts TLS, reads worker pids from the log, and kills it at the end (SIGTERM, then SIGKILL).
// It knows only the command-line/log contract, nothing of the gateway's internals.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { test } from 'node:test';
import { REPO, certPath } from './certs.mjs';

export const HOST = '127.0.0.1';
export const NHGW_BIN = process.env.NHGW_BIN || join(REPO, 'build', 'nhgw');
const STOP_GRACE_MS = 3000;
const READY_TIMEOUT_MS = 10000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Reject with a clear message if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** Poll `fn` until it returns a truthy value; returns that value or throws after `ms`. */
export async function waitFor(fn, ms, what, intervalMs = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout after ${ms} ms: ${what}`);
    await sleep(intervalMs);
  }
}

/** A port that was free a moment ago (bind to 0, read it, release it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Parse a key=value log line (values may be "quoted"). */
export function parseLogLine(line) {
  const out = {};
  const re = /([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|\S*)/g;
  let m;
  while ((m = re.exec(line)) !== null) {
    let v = m[2];
    if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    out[m[1]] = v;
  }
  return out;
}

function tlsProbe(port) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: HOST, port, rejectUnauthorized: false, servername: 'localhost' });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('secureConnect', () => done(true));
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}

export class Gateway {
  constructor(opts) {
    this.opts = opts;
    this.host = HOST;
    this.port = 0;
    this.proc = null;
    this.exit = null; // {code, signal} once exited
    this.exited = null; // promise
    this.dir = mkdtempSync(join(tmpdir(), 'nhgw-it-'));
    this.logFile = join(this.dir, 'nhgw.log');
    this.args = [];
    this.stopped = false;
    this.failed = false; // set by gwTest when a test using this gateway failed
  }

  /** The whole log so far. */
  log() {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Parsed log lines (objects) whose event= matches `event` (all lines if omitted). */
  events(event) {
    return this.log()
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => ({ line: l, ...parseLogLine(l) }))
      .filter((e) => event === undefined || e.event === event);
  }

  /** Map worker index (number) → latest pid (number), from `event=worker_started` lines. */
  workerPids() {
    const m = new Map();
    for (const e of this.events('worker_started')) m.set(Number(e.worker), Number(e.pid));
    return m;
  }

  /** Wait until the log has a line matching `re` (RegExp) after character offset `since`. */
  waitForLog(re, ms = 5000, since = 0) {
    return waitFor(
      () => {
        const text = this.log().slice(since);
        const line = text.split('\n').find((l) => re.test(l));
        return line || null;
      },
      ms,
      `log line matching ${re}`,
    );
  }

  /** Print the gateway's log to stderr, for a failed test. */
  dumpLog(why) {
    const text = this.log();
    const tail = text.length > 20000 ? '…(truncated)…\n' + text.slice(-20000) : text;
    process.stderr.write(
      `\n----- nhgw log (${why}) ${this.logFile}\n` +
        `----- args: ${this.args.join(' ')}\n${tail}\n----- end of nhgw log\n`,
    );
  }

  isRunning() {
    return this.proc !== null && this.exit === null;
  }

  async start() {
    if (!existsSync(NHGW_BIN)) {
      throw new Error(`gateway binary not found at ${NHGW_BIN}: build it (make) or set NHGW_BIN`);
    }
    const o = this.opts;
    this.port = await freePort();
    const args = ['--listen', `${HOST}:${this.port}`, '--workers', String(o.workers ?? 1)];
    args.push('--cert', certPath('server.pem'), '--key', certPath('server.key'));
    if (o.rsa) args.push('--cert', certPath('server-rsa.pem'), '--key', certPath('server-rsa.key'));
    args.push('--device-ca', certPath(o.deviceCa ?? 'device-cas.pem'));
    if (o.ticketKey) args.push('--ticket-key-file', certPath('ticket.key'));
    args.push('--log-level', o.logLevel ?? process.env.NHGW_TEST_LOG_LEVEL ?? 'debug');
    // a free admin port per gateway (several run at once), this.admin; o.args may name another
    this.admin = await freePort();
    args.push('--admin-listen', `${HOST}:${this.admin}`);
    args.push(...(o.args ?? []));
    this.args = args;

    const fd = openSync(this.logFile, 'a');
    try {
      // opts.wrapper: a command the binary runs under, e.g. ['prlimit', '--nofile=40:40']
      const [cmd, ...pre] = [...(o.wrapper ?? []), NHGW_BIN];
      this.proc = spawn(cmd, [...pre, ...args], { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.proc.once('error', (err) => {
        this.exit = { code: null, signal: null, error: err };
        resolve(this.exit);
      });
    });

    const workers = o.workers ?? 1;
    try {
      await waitFor(
        async () => {
          if (this.exit) throw new Error(`nhgw exited during start-up: ${JSON.stringify(this.exit)}`);
          return this.events('listening').length >= workers && (await tlsProbe(this.port));
        },
        READY_TIMEOUT_MS,
        `nhgw ready on port ${this.port} (${workers} x event=listening, TLS accepted)`,
        100,
      );
    } catch (e) {
      this.dumpLog('start-up failed');
      await this.stop({ strict: false });
      throw e;
    }
    return this;
  }

  /**
   * SIGTERM, wait up to 3 s, then SIGKILL. With strict (default) it throws when the gateway did
   * not exit 0 by itself in time, crashed before, or when a worker was respawned although the
   * test did not announce it (opts.allowRespawn), since that means a worker died.
   */
  async stop({ strict = true } = {}) {
    if (!this.proc || this.stopped) return this.exit;
    this.stopped = true;
    const problems = [];
    if (this.exit) problems.push(`nhgw had already exited: ${JSON.stringify(this.exit)}`);
    else {
      this.proc.kill('SIGTERM');
      const r = await Promise.race([this.exited, sleep(STOP_GRACE_MS).then(() => null)]);
      if (r === null) {
        problems.push(`nhgw did not exit within ${STOP_GRACE_MS} ms of SIGTERM; SIGKILLed`);
        this.proc.kill('SIGKILL');
        for (const pid of this.workerPids().values()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
        await this.exited;
      } else if (r.code !== 0) {
        problems.push(`nhgw exited with ${JSON.stringify(r)} after SIGTERM (want code 0)`);
      }
    }
    // A sanitizer build (NHGW_BIN=build/nhgw-asan) reports here; UBSan does not even crash.
    const san = this.log().match(/^.*(==\d+==ERROR: \w+Sanitizer|runtime error: |ERROR: LeakSanitizer).*$/m);
    if (san) problems.push(`sanitizer report in the gateway log: ${san[0].slice(0, 200)}`);
    const workers = this.opts.workers ?? 1;
    const started = this.events('worker_started').length;
    if (!this.opts.allowRespawn && started > workers) {
      problems.push(`${started - workers} unexpected worker respawn(s): a worker died during the test`);
    }
    if (problems.length > 0 && strict) {
      this.dumpLog('stop');
      throw new Error(problems.join('; '));
    }
    // Keep the log of a gateway whose tests failed (or on request); drop the others.
    if (!this.failed && problems.length === 0 && !process.env.NHGW_TEST_KEEP_LOGS) {
      rmSync(this.dir, { recursive: true, force: true });
    }
    return this.exit;
  }
}

/** Start a gateway. opts: workers, rsa, deviceCa, ticketKey, logLevel, args[], allowRespawn, wrapper[]. */
export async function startGateway(opts = {}) {
  const gw = new Gateway(opts);
  await gw.start();
  return gw;
}

/**
 * node:test `test` bound to a gateway getter: a 30 s timeout per test and, when the test fails,
 * the gateway log printed to stderr. Usage: const it = gwTest(() => gw); it('name', async (t) => {}).
 */
export function gwTest(getGw) {
  const wrap = (name, fn, opts = {}) =>
    test(name, { timeout: 30000, ...opts }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        const gw = getGw();
        if (gw) {
          gw.failed = true;
          gw.dumpLog(`test failed: ${name}`);
        }
        throw e;
      }
    });
  return wrap;
}
