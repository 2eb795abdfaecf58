// A scriptable platform for link tests, written against proto/LINK.md with the official NATS
// JavaScript client and @msgpack/msgpack — independent of the project's own C codec. It answers
// the gateway's calls on `<prefix>.link.*` (queue group `<prefix>.platform`), records every call,
// and lets a test replace the answer for a call kind (or hold it back).
import { connect } from 'nats';
import { encode, decode } from '@msgpack/msgpack';
import { waitFor } from './gateway.mjs';

export const bin = (s) => new TextEncoder().encode(s);
export const str = (b) => new TextDecoder().decode(b);

export class FakePlatform {
  constructor(natsUrl, { prefix = 'nh' } = {}) {
    this.natsUrl = natsUrl;
    this.prefix = prefix;
    this.calls = []; // {call, req, at}
    this.handlers = {};
    this.nc = null;
  }

  /** Default answers: accept every certificate as its CN, join {} with a counter session. */
  defaultAnswer(call, req) {
    switch (call) {
      case 'auth':
        if (!req.fp) return { v: 1, st: 'refused', reason: 'no certificate' };
        return { v: 1, st: 'ok', dev: req.cn, s: bin(`info:${req.cn}`) };
      case 'connect':
        return { v: 1, st: 'ok', s: bin(`${str(req.s)}+connected`) };
      case 'join':
        return { v: 1, st: 'ok', r: {}, s: bin('s0') };
      case 'message':
      case 'notify':
        return { v: 1, st: 'ok' };
      case 'disconnect':
        return { v: 1, st: 'ok' }; // sent only when the gateway asks (replayed disconnects)
      default:
        return null; // heartbeat: published, no reply
    }
  }

  async start() {
    this.nc = await connect({ servers: this.natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    this.sub = this.nc.subscribe(`${this.prefix}.link.*`, { queue: `${this.prefix}.platform` });
    (async () => {
      for await (const m of this.sub) {
        const call = m.subject.split('.').pop();
        let req;
        try {
          req = decode(m.data);
        } catch (e) {
          req = { undecodable: String(e) };
        }
        const rec = { call, req, at: Date.now() };
        this.calls.push(rec);
        const h = this.handlers[call];
        Promise.resolve(h ? h(req, rec) : this.defaultAnswer(call, req)).then((answer) => {
          if (answer === undefined) answer = this.defaultAnswer(call, req);
          rec.answeredAt = Date.now();
          if (answer !== null && m.reply) m.respond(answer instanceof Uint8Array ? answer : encode(answer));
        });
      }
    })();
    await this.nc.flush();
    return this;
  }

  /** Stop answering (unsubscribe) — the gateway then sees no responders. */
  async pause() {
    this.sub.unsubscribe();
    await this.nc.flush();
  }

  of(call) {
    return this.calls.filter((c) => c.call === call);
  }

  /** Wait until a call of `call` kind matching pred was recorded; returns it. */
  waitCall(call, pred = () => true, ms = 5000) {
    return waitFor(() => this.calls.find((c) => c.call === call && pred(c.req)), ms, `platform call ${call}`);
  }

  /** Publish a msgpack body; with `reply` true, make a request and return the decoded answer. */
  async send(subject, body, { request = false, timeout = 2000 } = {}) {
    if (!request) {
      this.nc.publish(subject, encode(body));
      await this.nc.flush();
      return null;
    }
    const m = await this.nc.request(subject, encode(body), { timeout });
    return decode(m.data);
  }

  /**
   * Subscribe to `subject` (flushed, so the server has it) and collect the decoded messages:
   * resolves {msgs, wait(n, ms) → the first n messages, stop()}.
   */
  async collect(subject) {
    const msgs = [];
    const sub = this.nc.subscribe(subject, {
      callback: (err, m) => {
        if (!err) msgs.push(decode(m.data));
      },
    });
    await this.nc.flush();
    return {
      msgs,
      wait: async (n = 1, ms = 3000) => {
        await waitFor(() => msgs.length >= n, ms, `${n} message(s) on ${subject}`);
        return msgs.slice(0, n);
      },
      stop: () => sub.unsubscribe(),
    };
  }

  async stop() {
    if (this.nc) await this.nc.close().catch(() => {});
  }
}
