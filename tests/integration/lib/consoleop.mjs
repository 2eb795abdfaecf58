// A remote-console operator speaking the link's msgpack over NATS, as nhctl console does minus the
// terminal (proto/LINK.md §9): attach/detach through the device's worker inbox found in the
// registry, input as inbox pushes, output from <prefix>.console.<dev>.out.
import { decode, encode } from '@msgpack/msgpack';
import { randomBytes } from 'node:crypto';
import { waitFor, withTimeout } from './gateway.mjs';

/** An operator of one device's console (what nhctl console does, minus the terminal). */
export class ConsoleOperator {
  /** nc: a NATS connection; rc: a Redis client (registry); prefix; dev: the device id. */
  constructor(nc, rc, dev, { prefix = 'nh', op } = {}) {
    this.nc = nc;
    this.rc = rc;
    this.dev = dev;
    this.prefix = prefix;
    this.op = op ?? `js-${randomBytes(4).toString('hex')}`;
    this.out = []; // decoded output messages {v, ev, p}
    this.bytes = 0; // raw bytes received on the output subject
    this.sub = null;
    this.waiters = [];
  }

  /** `<p>.gw.<gw>.<w>` from the registry entry, or null when the device is not connected. */
  async inboxSubject() {
    const e = await this.rc.hgetall(`${this.prefix}:dev:${this.dev}`);
    return e && e.gw ? `${this.prefix}.gw.${e.gw}.${e.w}` : null;
  }

  async subscribe() {
    if (this.sub) return;
    this.sub = this.nc.subscribe(`${this.prefix}.console.${this.dev}.out`, {
      callback: (err, m) => {
        if (err) return;
        this.bytes += m.data.length;
        this.out.push(decode(m.data));
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
      },
    });
    await this.nc.flush(); // the server has the subscription before the attach is sent
  }

  /** console_attach; resolves the decoded reply {v, st, scrollback?, version?}. */
  async attach({ sb, lease_ms, inbox } = {}) {
    await this.subscribe();
    const subject = inbox ?? (await this.inboxSubject());
    if (!subject) throw new Error(`${this.dev} is not in the registry`);
    const body = { v: 1, k: 'console_attach', dev: this.dev, op: this.op };
    if (sb !== undefined) body.sb = sb;
    if (lease_ms !== undefined) body.lease_ms = lease_ms;
    const m = await this.nc.request(subject, encode(body), { timeout: 3000 });
    return decode(m.data);
  }

  async detach() {
    const subject = await this.inboxSubject();
    const m = await this.nc.request(
      subject,
      encode({ v: 1, k: 'console_detach', dev: this.dev, op: this.op }),
      { timeout: 3000 },
    );
    return decode(m.data);
  }

  /** An inbox push on topic console (dn, window_size, file-data…); resolves the status reply. */
  async push(ev, p) {
    const subject = await this.inboxSubject();
    const m = await this.nc.request(
      subject,
      encode({ v: 1, k: 'push', dev: this.dev, topic: 'console', ev, p }),
      { timeout: 3000 },
    );
    return decode(m.data);
  }

  /** Concatenated `up` data received so far (from index `from`). */
  upText(from = 0) {
    return this.out
      .slice(from)
      .filter((m) => m.ev === 'up')
      .map((m) => (typeof m.p.data === 'string' ? m.p.data : Buffer.from(m.p.data).toString('utf8')))
      .join('');
  }

  /** Resolves the first output message (from index `from`) matching pred, or null after ms. */
  waitOut(pred, ms = 3000, from = 0) {
    return new Promise((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        resolve(null);
      }, ms);
      const check = () => {
        if (done) return;
        const m = this.out.slice(from).find(pred);
        if (m) {
          done = true;
          clearTimeout(timer);
          resolve(m);
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Waits until the `up` text received contains `text`. */
  async waitText(text, ms = 3000, from = 0) {
    await withTimeout(
      new Promise((resolve) => {
        const check = () => (this.upText(from).includes(text) ? resolve() : this.waiters.push(check));
        check();
      }),
      ms,
      `operator ${this.op} receiving ${JSON.stringify(text.slice(0, 40))}`,
    );
  }

  /** Waits until pred(this) holds, re-checked on every output message. */
  async until(pred, what, ms = 5000) {
    await withTimeout(
      new Promise((resolve) => {
        const check = () => (pred(this) ? resolve() : this.waiters.push(check));
        check();
      }),
      ms,
      `operator of ${this.dev}: ${what}`,
    );
  }

  /** Attaches as soon as the device is registered and has joined its console; the reply. */
  async attachWhenReady(ms = 20000) {
    let last;
    await waitFor(
      async () => {
        if (!(await this.inboxSubject())) return false;
        last = await this.attach();
        return last.st === 'ok';
      },
      ms,
      `console of ${this.dev} attached (last reply ${JSON.stringify(last)})`,
      100,
    );
    return last;
  }

  close() {
    this.sub?.unsubscribe();
    this.sub = null;
  }
}
