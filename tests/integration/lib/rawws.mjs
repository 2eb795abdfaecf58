// A deliberately low-level client for protocol tests: raw TLS sockets, hand-written HTTP/1.1
// upgrade requests, and RFC 6455 frames built byte by byte (masked or not, any opcode, RSV bits,
// fragmentation). It never "fixes" what a test sends and reports exactly what the server sent.
// permessage-deflate is minimal: messages are compressed only on request (sendCompressed) and
// compressed server messages are inflated without context takeover (what nhgw negotiates).
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import zlib from 'node:zlib';
import { encode as mpEncode, decode as mpDecode } from '@msgpack/msgpack';
import { device } from './certs.mjs';
import { HOST } from './gateway.mjs';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };
const DEFAULT_TIMEOUT = 5000;

export class ClosedError extends Error {}

/** Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2). */
export function acceptKey(key) {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

/**
 * Connect with TLS. `opts` are node tls.connect options on top of defaults (host 127.0.0.1,
 * SNI "localhost", server verified against server-ca). `deviceName` picks the client cert
 * (null: none). Resolves to a RawConn once the handshake is done; rejects with the TLS error.
 */
export function connectTls(port, deviceName = 'device-1', opts = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: HOST, port, servername: 'localhost', ...device(deviceName), ...opts });
    const conn = new RawConn(s);
    let settled = false;
    const fail = (err) => {
      if (settled) return;
      settled = true;
      s.destroy();
      reject(err);
    };
    s.setTimeout(opts.timeout ?? DEFAULT_TIMEOUT, () => fail(new Error('TLS handshake timed out')));
    s.once('secureConnect', () => {
      settled = true;
      s.setTimeout(0);
      resolve(conn);
    });
    s.once('error', fail);
    s.once('close', () => fail(new ClosedError('connection closed during TLS handshake')));
  });
}

/** A plain TCP connection (no TLS), as a RawConn. */
export function connectTcp(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('TCP connect timed out'));
    }, DEFAULT_TIMEOUT);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(new RawConn(s));
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * Build an HTTP/1.1 upgrade request. opts: method, path, key, extensions (string or null), and
 * headers: an array of [name, value] appended, or an object; `omit`: header names (lower case)
 * to leave out of the defaults; `lowercase`: send header names in lower case (as Mint does).
 */
export function upgradeRequest(opts = {}) {
  const key = opts.key ?? randomBytes(16).toString('base64');
  const defaults = [
    ['Host', opts.host ?? 'localhost'],
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Version', '13'],
    ['Sec-WebSocket-Key', key],
  ];
  if (opts.extensions) defaults.push(['Sec-WebSocket-Extensions', opts.extensions]);
  const omit = new Set((opts.omit ?? []).map((h) => h.toLowerCase()));
  let hs = defaults.filter(([n]) => !omit.has(n.toLowerCase()));
  const extra = Array.isArray(opts.headers) ? opts.headers : Object.entries(opts.headers ?? {});
  hs = hs.concat(extra);
  if (opts.lowercase) hs = hs.map(([n, v]) => [n.toLowerCase(), v]);
  const path = opts.path ?? '/socket/websocket?vsn=2.0.0';
  const head = `${opts.method ?? 'GET'} ${path} HTTP/1.1\r\n` + hs.map(([n, v]) => `${n}: ${v}\r\n`).join('');
  return { text: head + '\r\n', key };
}

/** Encode one frame. f: {fin=true, rsv=0 (3 bits), opcode, payload, mask=true, maskKey, len} */
export function encodeFrame(f) {
  const payload = Buffer.from(f.payload ?? []);
  const fin = f.fin ?? true;
  const mask = f.mask ?? true;
  const len = f.len ?? payload.length;
  let hdr;
  if (len < 126) {
    hdr = Buffer.alloc(2);
    hdr[1] = len;
  } else if (len < 65536) {
    hdr = Buffer.alloc(4);
    hdr[1] = 126;
    hdr.writeUInt16BE(len, 2);
  } else {
    hdr = Buffer.alloc(10);
    hdr[1] = 127;
    hdr.writeBigUInt64BE(BigInt(len), 2);
  }
  hdr[0] = (fin ? 0x80 : 0) | ((f.rsv ?? 0) << 4) | (f.opcode & 0x0f);
  if (!mask) return Buffer.concat([hdr, payload]);
  hdr[1] |= 0x80;
  const key = f.maskKey ?? randomBytes(4);
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([hdr, key, masked]);
}

/** RFC 7692 §7.2.1: deflate with a sync flush and drop the trailing 00 00 ff ff. */
export function deflateMessage(data) {
  const out = zlib.deflateRawSync(Buffer.from(data), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assertTail(out);
  return out.subarray(0, out.length - 4);
}

function assertTail(out) {
  const n = out.length;
  if (n < 4 || out[n - 4] !== 0 || out[n - 3] !== 0 || out[n - 2] !== 0xff || out[n - 1] !== 0xff) {
    throw new Error('deflate output does not end with a sync flush');
  }
}

/** RFC 7692 §7.2.2: append 00 00 ff ff and inflate. */
export function inflateMessage(data) {
  return zlib.inflateRawSync(Buffer.concat([data, Buffer.from([0, 0, 0xff, 0xff])]), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
}

/** Close-frame payload: 2-byte code + reason. */
export function closePayload(code, reason = '') {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}

/** Buffered reader/writer over a (TLS or TCP) socket. */
export class RawConn {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.ended = false;
    this.error = null;
    this.waiters = [];
    this.closeSent = false;
    this.pmd = false; // permessage-deflate negotiated (set by wsConnect)
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this._wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this._wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this._wake();
    });
    socket.on('error', (e) => {
      this.error = this.error ?? e;
      this.ended = true;
      this._wake();
    });
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Wait until `pred()` is true; rejects with ClosedError if the stream ends first. */
  _until(pred, timeout, what) {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(new Error(`timeout after ${timeout} ms waiting for ${what}`));
      }, timeout);
      const check = () => {
        if (done) return;
        if (pred()) {
          done = true;
          clearTimeout(timer);
          resolve();
        } else if (this.ended) {
          done = true;
          clearTimeout(timer);
          const err = new ClosedError(
            `connection ended while waiting for ${what}` + (this.error ? ` (${this.error.message})` : ''),
          );
          err.cause = this.error;
          reject(err);
        } else this.waiters.push(check);
      };
      check();
    });
  }

  write(data) {
    this.socket.write(data);
  }

  destroy() {
    this.socket.destroy();
  }

  /** Resolves true when the peer closes the connection within `timeout`, false otherwise. */
  async waitEnd(timeout = DEFAULT_TIMEOUT) {
    try {
      await this._until(() => false, timeout, 'end');
    } catch (e) {
      if (e instanceof ClosedError) return true;
      return false;
    }
    return false;
  }

  /** Everything until the peer closes (used for bodies without Content-Length). */
  async readToEnd(timeout = DEFAULT_TIMEOUT) {
    await this.waitEnd(timeout);
    const b = this.buf;
    this.buf = Buffer.alloc(0);
    return b;
  }

  /** Read exactly n bytes. */
  async read(n, timeout = DEFAULT_TIMEOUT) {
    await this._until(() => this.buf.length >= n, timeout, `${n} bytes`);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /**
   * Read an HTTP response head: {status, reason, headers (lower-case name → value; repeated
   * names joined with ", "), rawHeaders [[name, value]], headText}.
   */
  async readHead(timeout = DEFAULT_TIMEOUT) {
    await this._until(() => this.buf.indexOf('\r\n\r\n') >= 0, timeout, 'HTTP response head');
    const end = this.buf.indexOf('\r\n\r\n');
    const headText = this.buf.subarray(0, end).toString('latin1');
    this.buf = this.buf.subarray(end + 4);
    const lines = headText.split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const headers = {};
    const rawHeaders = [];
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i <= 0) throw new Error(`bad header line: ${JSON.stringify(l)}`);
      const name = l.slice(0, i);
      const value = l.slice(i + 1).trim();
      rawHeaders.push([name, value]);
      const k = name.toLowerCase();
      headers[k] = k in headers ? `${headers[k]}, ${value}` : value;
    }
    return { status: Number(m[1]), reason: m[2] ?? '', headers, rawHeaders, headText };
  }

  /**
   * Read a full non-101 response: head plus body (Content-Length, or until the server closes;
   * chunked is not expected from the gateway and is returned raw).
   */
  async readResponse(timeout = DEFAULT_TIMEOUT) {
    const res = await this.readHead(timeout);
    if (res.status === 101) {
      res.body = Buffer.alloc(0);
      return res;
    }
    if ('content-length' in res.headers) {
      const n = Number(res.headers['content-length']);
      res.body = n > 0 ? await this.read(n, timeout) : Buffer.alloc(0);
    } else {
      res.body = await this.readToEnd(timeout);
    }
    return res;
  }

  /** Read one frame as the server sent it: {fin, rsv, opcode, masked, payload}. */
  async readFrame(timeout = DEFAULT_TIMEOUT) {
    const h = await this.read(2, timeout);
    const fin = (h[0] & 0x80) !== 0;
    const rsv = (h[0] >> 4) & 7;
    const opcode = h[0] & 0x0f;
    const masked = (h[1] & 0x80) !== 0;
    let len = h[1] & 0x7f;
    if (len === 126) len = (await this.read(2, timeout)).readUInt16BE(0);
    else if (len === 127) len = Number((await this.read(8, timeout)).readBigUInt64BE(0));
    let key = null;
    if (masked) key = await this.read(4, timeout);
    let payload = Buffer.from(await this.read(len, timeout));
    if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    return { fin, rsv, opcode, masked, payload };
  }

  sendFrame(f) {
    if (f.opcode === OP.CLOSE) this.closeSent = true;
    this.write(encodeFrame(f));
  }

  /** Send one data message compressed (RSV1), optionally split into `fragments` frames. */
  sendCompressed(opcode, data, { fragments = 1 } = {}) {
    const z = deflateMessage(data);
    const step = Math.ceil(z.length / fragments);
    for (let i = 0; i < fragments; i++) {
      const part = z.subarray(i * step, Math.min(z.length, (i + 1) * step));
      this.sendFrame({
        opcode: i === 0 ? opcode : OP.CONT,
        rsv: i === 0 ? 4 : 0,
        fin: i === fragments - 1,
        payload: part,
      });
    }
  }

  sendText(str, extra = {}) {
    this.sendFrame({ opcode: OP.TEXT, payload: Buffer.from(str), ...extra });
  }

  sendBinary(buf, extra = {}) {
    this.sendFrame({ opcode: OP.BINARY, payload: buf, ...extra });
  }

  sendJson(msg) {
    this.sendText(JSON.stringify(msg));
  }

  sendMsgpack(msg) {
    this.sendBinary(Buffer.from(mpEncode(msg)));
  }

  ping(payload = Buffer.alloc(0)) {
    this.sendFrame({ opcode: OP.PING, payload });
  }

  close(code = 1000, reason = '') {
    this.sendFrame({ opcode: OP.CLOSE, payload: code === null ? Buffer.alloc(0) : closePayload(code, reason) });
  }

  /**
   * Next complete message, reassembling fragments. Returns {type: 'text'|'binary', data: Buffer}
   * or, for control frames, {type: 'ping'|'pong', data} / {type: 'close', code, reason, data}.
   * Frames the server must never send (masked, RSV set) throw.
   */
  async readMessage(timeout = DEFAULT_TIMEOUT) {
    let first = null;
    const parts = [];
    for (;;) {
      const f = await this.readFrame(timeout);
      if (f.masked) throw new Error('server sent a masked frame (RFC 6455 §5.1)');
      const rsvOk = f.rsv === 0 || (f.rsv === 4 && this.pmd && first === null && (f.opcode === OP.TEXT || f.opcode === OP.BINARY));
      if (!rsvOk) throw new Error(`server sent RSV bits ${f.rsv} on opcode ${f.opcode} (deflate negotiated: ${this.pmd})`);
      if (f.opcode >= 8) {
        if (!f.fin || f.payload.length > 125) throw new Error('server sent an invalid control frame');
        if (f.opcode === OP.PING) return { type: 'ping', data: f.payload };
        if (f.opcode === OP.PONG) return { type: 'pong', data: f.payload };
        if (f.opcode === OP.CLOSE) {
          const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null;
          return { type: 'close', code, reason: f.payload.subarray(2).toString(), data: f.payload };
        }
        throw new Error(`server sent reserved control opcode ${f.opcode}`);
      }
      if (first === null) {
        if (f.opcode === OP.CONT) throw new Error('server sent a continuation without a start');
        if (f.opcode !== OP.TEXT && f.opcode !== OP.BINARY) throw new Error(`server sent opcode ${f.opcode}`);
        first = f;
      } else if (f.opcode !== OP.CONT) throw new Error('server interleaved a new message into a fragmented one');
      parts.push(f.payload);
      if (f.fin) {
        let data = Buffer.concat(parts);
        if (first.rsv === 4) data = inflateMessage(data);
        return { type: first.opcode === OP.TEXT ? 'text' : 'binary', data, compressed: first.rsv === 4 };
      }
    }
  }

  /** Next data message, answering nothing and skipping pongs; throws on close. */
  async nextData(timeout = DEFAULT_TIMEOUT) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const m = await this.readMessage(Math.max(1, deadline - Date.now()));
      if (m.type === 'text' || m.type === 'binary') return m;
      if (m.type === 'close') {
        const e = new ClosedError(`server closed with ${m.code} ${m.reason}`);
        e.code = m.code;
        throw e;
      }
    }
  }

  /** Next JSON (text) Phoenix message, parsed. */
  async recvJson(timeout = DEFAULT_TIMEOUT) {
    const m = await this.nextData(timeout);
    if (m.type !== 'text') throw new Error(`expected a text frame, got ${m.type}`);
    return JSON.parse(m.data.toString('utf8'));
  }

  /** Next msgpack (binary) Phoenix message, decoded. */
  async recvMsgpack(timeout = DEFAULT_TIMEOUT) {
    const m = await this.nextData(timeout);
    if (m.type !== 'binary') throw new Error(`expected a binary frame, got ${m.type}`);
    return mpDecode(m.data);
  }

  /**
   * Read until the server's close frame (data frames are skipped), answer it with a close
   * (as a client must), and wait for the TCP connection to end. Returns {code, reason, tcpClosed}.
   */
  async expectClose(timeout = DEFAULT_TIMEOUT) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const m = await this.readMessage(Math.max(1, deadline - Date.now()));
      if (m.type !== 'close') continue;
      if (!this.closeSent && !this.ended) this.sendFrame({ opcode: OP.CLOSE, payload: m.data.subarray(0, 2) });
      const tcpClosed = await this.waitEnd(Math.max(1000, deadline - Date.now()));
      return { code: m.code, reason: m.reason, tcpClosed };
    }
  }

  /**
   * Resolves null if nothing at all arrives within `ms` (connection still open), otherwise the
   * first message (or {type: 'end'} if the connection closed).
   */
  async silence(ms) {
    try {
      await this._until(() => this.buf.length > 0, ms, 'any data');
    } catch (e) {
      if (e instanceof ClosedError) return { type: 'end' };
      return null;
    }
    return this.readMessage(1000);
  }
}

/**
 * TLS connect + send an upgrade request + read the response.
 * opts: device ('device-1' default; null for none), tls (extra tls options), and everything
 * upgradeRequest() takes. Returns {conn, res, key}; res.body is read for non-101 responses.
 */
export async function upgrade(port, opts = {}) {
  const conn = await connectTls(port, opts.device === undefined ? 'device-1' : opts.device, opts.tls ?? {});
  const req = upgradeRequest(opts);
  conn.write(req.text);
  const res = await conn.readResponse(opts.timeout ?? DEFAULT_TIMEOUT);
  return { conn, res, key: req.key };
}

/**
 * A WebSocket connection ready for frames: upgrade with `vsn` (default 2.0.0) on `path` and
 * check the 101 (status, Upgrade/Connection headers, Sec-WebSocket-Accept). Returns the RawConn.
 */
export async function wsConnect(port, opts = {}) {
  const vsn = opts.vsn ?? '2.0.0';
  const path = opts.path ?? `/socket/websocket?vsn=${vsn}`;
  const { conn, res, key } = await upgrade(port, { ...opts, path });
  if (res.status !== 101) {
    conn.destroy();
    throw new Error(`upgrade failed: ${res.status} ${res.reason} ${res.body?.toString()}`);
  }
  const h = res.headers;
  if ((h.upgrade ?? '').toLowerCase() !== 'websocket') throw new Error(`bad Upgrade header: ${h.upgrade}`);
  if (!(h.connection ?? '').toLowerCase().split(/\s*,\s*/).includes('upgrade')) {
    throw new Error(`bad Connection header: ${h.connection}`);
  }
  if (h['sec-websocket-accept'] !== acceptKey(key)) {
    throw new Error(`bad Sec-WebSocket-Accept: ${h['sec-websocket-accept']} (want ${acceptKey(key)})`);
  }
  conn.res = res;
  conn.pmd = /^\s*permessage-deflate\b/.test(h['sec-websocket-extensions'] ?? '');
  return conn;
}

/** Send a Phoenix heartbeat on a raw JSON or msgpack connection and return the reply. */
export async function rawHeartbeat(conn, ref, { msgpack = false, timeout = 3000 } = {}) {
  const msg = [null, ref, 'phoenix', 'heartbeat', {}];
  if (msgpack) {
    conn.sendMsgpack(msg);
    return conn.recvMsgpack(timeout);
  }
  conn.sendJson(msg);
  return conn.recvJson(timeout);
}

/**
 * Try a full connect + upgrade and classify the outcome without throwing:
 * {outcome: 'tls-error', error} (handshake failed), {outcome: 'closed', error, bytes} (handshake
 * completed on our side, e.g. TLS 1.3, but the server then failed or closed without any HTTP),
 * {outcome: 'timeout', error} (no response and no close), or {outcome: 'http', res, conn}.
 */
export async function attemptUpgrade(port, deviceName, tlsOpts = {}, reqOpts = {}) {
  let conn;
  try {
    conn = await connectTls(port, deviceName, tlsOpts);
  } catch (error) {
    return { outcome: 'tls-error', error };
  }
  conn.write(upgradeRequest(reqOpts).text);
  try {
    const res = await conn.readResponse(reqOpts.timeout ?? DEFAULT_TIMEOUT);
    return { outcome: 'http', res, conn };
  } catch (error) {
    conn.destroy();
    return { outcome: error instanceof ClosedError ? 'closed' : 'timeout', error, bytes: conn.buf.length };
  }
}

const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * Check a response's Date header (RFC 9110 §6.6.1, IMF-fixdate; nerves_hub_link uses it as a
 * clock hint): present, well-formed, within `skewMs` of now. Returns an error string or null.
 */
export function dateProblem(res, skewMs = 5000) {
  const d = res.headers.date;
  if (d === undefined) return 'no Date header';
  if (!IMF_FIXDATE.test(d)) return `Date header not IMF-fixdate: ${JSON.stringify(d)}`;
  const t = Date.parse(d);
  if (Number.isNaN(t)) return `unparseable Date header: ${JSON.stringify(d)}`;
  if (Math.abs(t - Date.now()) > skewMs) return `Date header ${d} is more than ${skewMs} ms from now`;
  return null;
}
