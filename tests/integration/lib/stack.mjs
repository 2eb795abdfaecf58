// Real servers for the integration tests: nats-server, redis-server and the reference platform
// (build/nhplatform), each on a free loopback port, each with stop() and restart() (same port),
// plus a dependency-free Redis client (RESP2) and a NATS connection helper. Nothing here is a
// mock: the tests talk to the real binaries.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as natsConnect, StringCodec } from 'nats';
import { REPO } from './certs.mjs';
import { freePort, parseLogLine, sleep, waitFor } from './gateway.mjs';

export const HOST = '127.0.0.1';
export const NHPLATFORM_BIN = process.env.NHPLATFORM_BIN || join(REPO, 'build', 'nhplatform');
const STOP_GRACE_MS = 3000;

function tcpOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A child process with its output in a log file; stop() = SIGTERM then SIGKILL. */
class Proc {
  constructor(name, bin, args) {
    this.name = name;
    this.bin = bin;
    this.args = args;
    this.dir = mkdtempSync(join(tmpdir(), `nh-${name}-`));
    this.logFile = join(this.dir, `${name}.log`);
    this.proc = null;
    this.exited = null;
  }

  start() {
    mkdirSync(this.dir, { recursive: true }); // stop() may have removed it; restart() starts again
    const fd = openSync(this.logFile, 'a');
    const p = spawn(this.bin, this.args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.proc = p;
    this.exited = new Promise((resolve) => p.once('exit', (code, signal) => resolve({ code, signal })));
    return this;
  }

  get pid() {
    return this.proc?.pid;
  }

  log() {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Removes the log directory (kept when NH_KEEP_LOGS is set, for post-mortems). */
  cleanup() {
    if (!process.env.NH_KEEP_LOGS) rmSync(this.dir, { recursive: true, force: true });
  }

  async stop(signal = 'SIGTERM') {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill(signal);
    const t = setTimeout(() => p.kill('SIGKILL'), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(t);
  }
}

/** nats-server on a free port. Returns {url, port, proc, stop(), restart()}. */
export async function startNats({ port } = {}) {
  port = port || (await freePort());
  const proc = new Proc('nats', process.env.NATS_SERVER_BIN || 'nats-server', ['-a', HOST, '-p', String(port)]);
  const up = async () => {
    proc.start();
    await waitFor(() => tcpOpen(port), 10000, `nats-server on ${port}`);
  };
  await up();
  return {
    url: `nats://${HOST}:${port}`,
    port,
    proc,
    log: () => proc.log(),
    /** Stops the server and removes its log (restart() keeps both). */
    async stop() {
      await proc.stop();
      proc.cleanup();
    },
    async restart() {
      await proc.stop();
      await up();
    },
  };
}

/** redis-server on a free port without persistence (a restart loses every key). Returns
 * {host, port, addr, url, proc, client(), stop(), restart()}. */
export async function startRedis({ port } = {}) {
  port = port || (await freePort());
  const proc = new Proc('redis', process.env.REDIS_SERVER_BIN || 'redis-server', [
    '--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
  ]);
  const up = async () => {
    proc.start();
    await waitFor(() => tcpOpen(port), 10000, `redis-server on ${port}`);
  };
  await up();
  const clients = [];
  return {
    host: HOST,
    port,
    addr: `${HOST}:${port}`,
    url: `redis://${HOST}:${port}`,
    proc,
    log: () => proc.log(),
    /** A connected RedisClient, closed by stop(). */
    async client() {
      const c = await RedisClient.connect(port);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients.splice(0)) c.close();
      await proc.stop();
      proc.cleanup();
    },
    async restart() {
      for (const c of clients.splice(0)) c.close();
      await proc.stop();
      await up();
    },
  };
}

/** Minimal RESP2 client: `await c.cmd('HSET', key, 'f', 'v')`. Replies: string | number | null |
 * array; error replies reject. Commands are pipelined in order. */
export class RedisClient {
  static connect(port, host = HOST) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      s.once('connect', () => resolve(new RedisClient(s)));
      s.once('error', reject);
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      for (const w of this.waiting.splice(0)) w.reject(new Error('redis connection closed'));
    });
  }

  cmd(...args) {
    const parts = [`*${args.length}\r\n`];
    for (const a of args) {
      const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
      parts.push(`$${b.length}\r\n`, b, '\r\n');
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p)))));
    });
  }

  /** HGETALL as an object (null when the key does not exist). */
  async hgetall(key) {
    const a = await this.cmd('HGETALL', key);
    if (!a || a.length === 0) return null;
    const o = {};
    for (let i = 0; i < a.length; i += 2) o[a[i]] = a[i + 1];
    return o;
  }

  close() {
    this.sock.destroy();
  }

  drain() {
    while (this.waiting.length) {
      const r = parseResp(this.buf, 0);
      if (!r) return;
      this.buf = this.buf.subarray(r.end);
      const w = this.waiting.shift();
      if (r.value instanceof Error) w.reject(r.value);
      else w.resolve(r.value);
    }
  }
}

function parseResp(buf, at) {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[at]);
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const out = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseResp(buf, p);
        if (!r) return null;
        out.push(r.value);
        p = r.end;
      }
      return { value: out, end: p };
    }
    default:
      throw new Error(`bad RESP type ${type}`);
  }
}

/** A NATS connection (the official client) that the caller closes. */
export function connectNats(url, opts = {}) {
  return natsConnect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 200, ...opts });
}

const sc = StringCodec();

/** JSON request on <prefix>.api.<verb>; resolves with the parsed reply. */
export async function apiRequest(nc, prefix, verb, body = {}, timeout = 5000) {
  const m = await nc.request(`${prefix}.api.${verb}`, sc.encode(JSON.stringify(body)), { timeout });
  return JSON.parse(sc.decode(m.data));
}

/** The platform on the given NATS and Redis. opts: {nats (url), redis (addr HOST:PORT), prefix,
 * args: [...extra flags], bin}. Waits until it answers `<prefix>.api.ping`. Returns
 * {proc, prefix, log(), events(name), stop(), restart(), waitReady()}. */
export async function startPlatform(opts) {
  const prefix = opts.prefix || 'nh';
  const args = ['--nats', opts.nats, '--redis', opts.redis, '--prefix', prefix, ...(opts.args || [])];
  const proc = new Proc('platform', opts.bin || NHPLATFORM_BIN, args);
  const p = {
    proc,
    prefix,
    log: () => proc.log(),
    events(name) {
      return proc
        .log()
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => ({ line: l, ...parseLogLine(l) }))
        .filter((e) => name === undefined || e.event === name);
    },
    async waitReady(ms = 10000) {
      const nc = await connectNats(opts.nats);
      try {
        await waitFor(
          async () => {
            if (proc.proc.exitCode !== null) throw new Error(`nhplatform exited:\n${proc.log()}`);
            try {
              const r = await apiRequest(nc, prefix, 'ping', {}, 500);
              return r.ok === true;
            } catch {
              return false;
            }
          },
          ms,
          'nhplatform answering ping',
          100,
        );
      } finally {
        await nc.close();
      }
    },
    /** Stops the platform; its log is removed unless `keepLog` (or NH_KEEP_LOGS). */
    async stop({ keepLog = false } = {}) {
      await proc.stop();
      if (!keepLog) proc.cleanup();
    },
    async restart() {
      await proc.stop();
      proc.start();
      await p.waitReady();
    },
  };
  proc.start();
  await p.waitReady();
  return p;
}

export { sleep, waitFor };
