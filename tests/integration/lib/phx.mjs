// Helpers around the official Phoenix JavaScript client (npm `phoenix`) running on Node with
// the `ws` package as its WebSocket transport (a subclass passes the TLS client certificate and
// the permessage-deflate choice), for JSON (vsn 2.0.0) and msgpack (vsn 3.0.0) sockets.
// Automatic reconnects and rejoins are pushed out of reach so every test sees exactly one
// connection; the helpers never retry.
import { Socket } from 'phoenix';
import WebSocket from 'ws';
import { encode as mpEncode, decode as mpDecode } from '@msgpack/msgpack';
import { device } from './certs.mjs';
import { HOST, withTimeout, sleep } from './gateway.mjs';

/** The join payload nerves_hub_link sends on `device` (device-protocol.md §8). */
export const DEVICE_JOIN = Object.freeze({
  nerves_fw_uuid: '8a8b902c-d1a9-58aa-6111-04ab57c2f2a8',
  nerves_fw_product: 'my_product',
  nerves_fw_version: '1.0.0',
  nerves_fw_architecture: 'arm',
  nerves_fw_platform: 'rpi4',
  nerves_fw_author: 'ACME',
  nerves_fw_description: '',
  nerves_fw_vcs_identifier: '',
  nerves_fw_misc: '',
  fwup_version: '1.10.2',
  device_api_version: '2.3.0',
  console_version: '2.0.0',
  currently_downloading_uuid: null,
  meta: { firmware_auto_revert_detected: false, firmware_validated: true },
  fwup_public_keys: 'on_connect',
  archive_public_keys: 'on_connect',
});
export const CONSOLE_JOIN = Object.freeze({ console_version: '2.0.0', device_api_version: '2.3.0' });
export const EXTENSIONS_JOIN = Object.freeze({ geo: '0.0.1', health: '0.0.1' });

const NEVER_MS = 3600 * 1000;

/** A ws WebSocket class that connects with the given TLS and ws options. */
export function transportWith(wsOpts) {
  return class TlsWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, wsOpts);
    }
  };
}

/** msgpack encoder/decoder for the Phoenix Socket (the 5-array envelope, device-protocol §7). */
export const msgpackSerializer = {
  encode(msg, callback) {
    return callback(mpEncode([msg.join_ref ?? null, msg.ref ?? null, msg.topic, msg.event, msg.payload]));
  },
  decode(raw, callback) {
    if (typeof raw === 'string') throw new Error('msgpack socket received a text frame');
    const arr = mpDecode(new Uint8Array(raw));
    if (!Array.isArray(arr) || arr.length !== 5) throw new Error(`bad msgpack envelope: ${JSON.stringify(arr)}`);
    const [join_ref, ref, topic, event, payload] = arr;
    return callback({ join_ref, ref, topic, event, payload });
  },
};

/**
 * Connect a Phoenix Socket and wait for it to open.
 * opts: device ('device-1'; null for none), msgpack (vsn 3.0.0), vsn (overrides), path ('/socket'),
 * perMessageDeflate (true), servername, headers (extra upgrade request headers), heartbeatIntervalMs
 * (30000), timeout (ms for open, 5000).
 * Returns a PhxClient.
 */
export async function connectPhx(port, opts = {}) {
  const wsOpts = {
    ...device(opts.device === undefined ? 'device-1' : opts.device),
    // Like Mint (nerves_hub_link), compress every message, not only those over ws's 1 KiB default.
    perMessageDeflate: (opts.perMessageDeflate ?? true) ? { threshold: 0 } : false,
    handshakeTimeout: 5000,
  };
  if (opts.servername) wsOpts.servername = opts.servername;
  if (opts.headers) wsOpts.headers = opts.headers; // e.g. the x-nh-* shared-secret headers
  const sockOpts = {
    transport: transportWith(wsOpts),
    vsn: opts.vsn ?? (opts.msgpack ? '3.0.0' : '2.0.0'),
    heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 30000,
    reconnectAfterMs: () => NEVER_MS,
    rejoinAfterMs: () => NEVER_MS,
    timeout: 5000,
  };
  if (opts.msgpack) {
    sockOpts.binaryType = 'arraybuffer';
    sockOpts.encode = msgpackSerializer.encode;
    sockOpts.decode = msgpackSerializer.decode;
  }
  const socket = new Socket(`wss://${HOST}:${port}${opts.path ?? '/socket'}`, sockOpts);
  const client = new PhxClient(socket);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.onOpen(() => resolve());
      socket.onError((err) => reject(new Error(`phoenix socket error: ${err?.message ?? err?.type ?? err}`)));
      socket.onClose((ev) => reject(new Error(`phoenix socket closed before open: ${ev?.code}`)));
      socket.connect();
    }),
    opts.timeout ?? 5000,
    'phoenix socket open',
  ).catch((e) => {
    socket.disconnect();
    throw e;
  });
  return client;
}

/** One Phoenix Socket plus a log of everything it received and how it closed. */
export class PhxClient {
  constructor(socket) {
    this.socket = socket;
    this.messages = []; // every decoded message {join_ref, ref, topic, event, payload}
    this.closeEvent = null; // the transport's close event once closed
    this.waiters = [];
    socket.onMessage((msg) => {
      this.messages.push(msg);
      this._wake();
    });
    socket.onClose((ev) => {
      if (!this.closeEvent) this.closeEvent = ev ?? { code: null };
      this._wake();
    });
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get closed() {
    return this.closeEvent !== null;
  }

  /** The next message (after index `from`) matching pred, or null after `ms` / on close. */
  waitMessage(pred, ms = 3000, from = 0) {
    return new Promise((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        resolve(null);
      }, ms);
      const check = () => {
        if (done) return;
        const m = this.messages.slice(from).find(pred);
        if (m || this.closed) {
          done = true;
          clearTimeout(timer);
          resolve(m ?? null);
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Resolves with the close event, or null if still open after `ms`. */
  waitClose(ms = 3000) {
    return new Promise((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        resolve(null);
      }, ms);
      const check = () => {
        if (done) return;
        if (this.closed) {
          done = true;
          clearTimeout(timer);
          resolve(this.closeEvent);
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Push a raw message through the Socket (no Channel); returns the ref used. */
  push(topic, event, payload, { joinRef = null, ref = this.socket.makeRef() } = {}) {
    this.socket.push({ topic, event, payload, ref, join_ref: joinRef });
    return ref;
  }

  /** The reply (`phx_reply` message) to `ref`, or null if none arrives within `ms`. */
  reply(ref, ms = 3000) {
    return this.waitMessage((m) => m.ref === ref && m.event === 'phx_reply', ms);
  }

  /** Any message carrying `ref`, or null within `ms` (for asserting that no reply comes). */
  anyWithRef(ref, ms) {
    return this.waitMessage((m) => m.ref === ref, ms);
  }

  /** Send a heartbeat on topic "phoenix" and return its reply payload ({status, response}). */
  async heartbeat(ms = 3000) {
    const ref = this.push('phoenix', 'heartbeat', {});
    const r = await this.reply(ref, ms);
    if (!r) throw new Error(`no heartbeat reply for ref ${ref} within ${ms} ms`);
    if (r.topic !== 'phoenix') throw new Error(`heartbeat reply on topic ${r.topic}`);
    return r.payload;
  }

  /**
   * Join `topic` with the official Channel API. Resolves {status: 'ok'|'error'|'timeout',
   * response, channel}.
   */
  join(topic, payload = {}, ms = 5000) {
    const channel = this.socket.channel(topic, payload);
    return new Promise((resolve) => {
      channel
        .join(ms)
        .receive('ok', (response) => resolve({ status: 'ok', response, channel }))
        .receive('error', (response) => resolve({ status: 'error', response, channel }))
        .receive('timeout', () => resolve({ status: 'timeout', response: null, channel }));
    });
  }

  /** Leave a channel; resolves 'ok' | 'error' | 'timeout'. */
  leave(channel, ms = 5000) {
    return new Promise((resolve) => {
      channel
        .leave(ms)
        .receive('ok', () => resolve('ok'))
        .receive('error', () => resolve('error'))
        .receive('timeout', () => resolve('timeout'));
    });
  }

  /** Close the socket (normal closure) and wait for the close to finish (bounded). */
  async disconnect(ms = 3000) {
    // Errored joins schedule a (far-off) rejoin timer that would keep the process alive.
    for (const ch of this.socket.channels) {
      ch.rejoinTimer.reset();
      ch.joinPush.cancelTimeout();
    }
    await withTimeout(
      new Promise((resolve) => this.socket.disconnect(() => resolve(), 1000, 'bye')),
      ms,
      'phoenix socket disconnect',
    ).catch(() => {});
    await sleep(0);
  }
}

/**
 * Resilience probe: a good Phoenix client (JSON, device-1) connects, gets a heartbeat reply ok
 * and disconnects. Throws if any step fails.
 */
export async function assertServes(port, opts = {}) {
  const c = await connectPhx(port, opts);
  try {
    const p = await c.heartbeat();
    if (p?.status !== 'ok') throw new Error(`heartbeat reply not ok: ${JSON.stringify(p)}`);
  } finally {
    await c.disconnect();
  }
}
