// The local shell end to end (issue 5, proto/LINK.md §9.1, devicelink-contract.md §6): real
// nats-server, redis-server and nhplatform, the gateway with --link nats --redis, devices on the
// official Phoenix JavaScript client attaching the `local_shell` extension, and operators over
// NATS as nhctl does (ShellOperator below); then `nhctl local-shell` itself under tmux.
//
// The platform publishes device output on nh.local_shell.<dev>.out and has the gateway keep it
// (scrollback_append); an operator's inbox notify {k: "local_shell", op} is answered with
// scrollback_replay to nh.local_shell.<dev>.op.<op>; input and window size are inbox pushes.
import { decode, encode } from '@msgpack/msgpack';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { REPO } from './lib/certs.mjs';
import { HOST, freePort, gwTest, sleep, startGateway, waitFor, withTimeout } from './lib/gateway.mjs';
import { DEVICE_JOIN, connectPhx } from './lib/phx.mjs';
import { connectNats, startNats, startPlatform, startRedis } from './lib/stack.mjs';
import { nhctlTerminalCommand, runNhctl, startTmux, waitScreen } from './lib/tmux.mjs';
import { fetchMetrics, metric, waitMetric } from './lib/metrics.mjs';

const NHCTL = process.env.NHCTL_BIN || join(REPO, 'build', 'nhctl');
const CAP = 4096; // the gateway's --console-scrollback-bytes in this suite

const text = (d) => (typeof d === 'string' ? d : Buffer.from(d).toString('utf8'));

/** An operator of one device's local shell (what nhctl local-shell does, minus the terminal). */
class ShellOperator {
  constructor(nc, rc, dev, { prefix = 'nh' } = {}) {
    this.nc = nc;
    this.rc = rc;
    this.dev = dev;
    this.prefix = prefix;
    this.op = `js-${randomBytes(4).toString('hex')}`;
    this.all = []; // every message on <p>.local_shell.<dev>.> as [subject, decoded]
    this.replay = null; // the scrollback replayed to this operator
    this.live = []; // `output` data after the replay
    this.skipped = []; // `output` data before it (contained in the replay)
    this.closed = []; // `closed` payloads (live subject or ours)
    this.waiters = [];
  }

  async inbox() {
    const e = await this.rc.hgetall(`${this.prefix}:dev:${this.dev}`);
    return e ? `${this.prefix}.gw.${e.gw}.${e.w}` : null;
  }

  async subscribe() {
    const base = `${this.prefix}.local_shell.${this.dev}`;
    this.sub = this.nc.subscribe(`${base}.>`, {
      callback: (err, m) => {
        if (err) return;
        const msg = decode(m.data);
        this.all.push([m.subject, msg]);
        if (m.subject === `${base}.op.${this.op}` && msg.ev === 'scrollback' && this.replay === null) {
          this.replay = text(msg.p.data);
        } else if (m.subject === `${base}.out` && msg.ev === 'output') {
          (this.replay === null ? this.skipped : this.live).push(text(msg.p.data));
        }
        if (msg.ev === 'closed' && (m.subject === `${base}.out` || m.subject === `${base}.op.${this.op}`))
          this.closed.push(msg.p);
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
      },
    });
    await this.nc.flush();
  }

  /** Subscribes, then sends the notify; resolves the inbox status ('ok', 'gone', 'not_joined'). */
  async open() {
    if (!this.sub) await this.subscribe();
    const m = await this.nc.request(
      await this.inbox(),
      encode({ v: 1, k: 'notify', dev: this.dev, topic: 'extensions', msg: encode({ k: 'local_shell', op: this.op }) }),
      { timeout: 3000 },
    );
    return decode(m.data).st;
  }

  /** open() and wait for the replay; resolves its text. */
  async openReplay(ms = 5000) {
    assert.equal(await this.open(), 'ok');
    await this.until(() => this.replay !== null, ms, 'the scrollback replay');
    return this.replay;
  }

  until(pred, ms, what) {
    return withTimeout(
      new Promise((resolve) => {
        const check = () => (pred() ? resolve() : this.waiters.push(check));
        check();
      }),
      ms,
      `operator ${this.op}: ${what}`,
    );
  }

  liveText() {
    return this.live.join('');
  }

  waitText(s, ms = 5000) {
    return this.until(() => this.liveText().includes(s), ms, `output ${JSON.stringify(s.slice(0, 40))}`);
  }

  async push(ev, p) {
    const m = await this.nc.request(
      await this.inbox(),
      encode({ v: 1, k: 'push', dev: this.dev, topic: 'extensions', ev, p }),
      { timeout: 3000 },
    );
    return decode(m.data).st;
  }

  input(data) {
    return this.push('local_shell:shell_input', { data });
  }

  close() {
    this.sub?.unsubscribe();
    this.sub = null;
  }
}

describe('local shell: devices, platform, gateway, operators over NATS', () => {
  let nats, redis, rc, platform, gw, nc, admin;
  const it = gwTest(() => gw);
  const metrics = () => fetchMetrics(admin);
  const metricIs = (series, want) => waitMetric(admin, series, want);
  const operators = [];
  const operator = (dev) => {
    const o = new ShellOperator(nc, rc, dev);
    operators.push(o);
    return o;
  };

  before(async () => {
    nats = await startNats();
    redis = await startRedis();
    rc = await redis.client();
    platform = await startPlatform({ nats: nats.url, redis: redis.addr, args: ['--extensions', 'health,local_shell'] });
    admin = await freePort();
    gw = await startGateway({
      args: [
        '--link', 'nats', '--nats-url', nats.url, '--redis', redis.addr, '--gateway-id', 'gw-shell',
        '--console-scrollback-bytes', `${CAP}`, '--admin-listen', `${HOST}:${admin}`,
      ],
    });
    await gw.waitForLog(/event=nats_connected/, 10000);
    nc = await connectNats(nats.url);
  });
  after(async () => {
    for (const o of operators) o.close();
    await nc?.close();
    await gw?.stop({ strict: false });
    await platform?.stop();
    await redis?.stop();
    await nats?.stop();
  });

  const ext = (c, event) => c.messages.filter((m) => m.topic === 'extensions' && m.event === event);

  /** A device with local_shell attached (request_shell received); out(data) prints. */
  const shellDevice = async (device, { msgpack = false } = {}) => {
    const c = await connectPhx(gw.port, { device, msgpack });
    assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
    const j = await c.join('extensions', { local_shell: '0.0.1', health: '0.0.1' });
    assert.equal(j.status, 'ok');
    assert.deepEqual(j.response, ['health', 'local_shell']);
    const d = {
      c,
      channel: j.channel,
      out: (data) => j.channel.push('local_shell:shell_output', { data }),
      attach: () => j.channel.push('local_shell:attached', {}),
    };
    const n = ext(c, 'local_shell:request_shell').length;
    d.attach();
    await waitFor(() => ext(c, 'local_shell:request_shell').length > n, 5000, 'local_shell:request_shell');
    await waitFor(() => rc.hgetall(`nh:dev:${device}`), 5000, `registry entry of ${device}`);
    return d;
  };
  /** Everything the device sent has been handled by the gateway and the platform. */
  const settle = async (d) => {
    // a push with a reply round-trips through the platform behind the device's earlier calls
    await new Promise((resolve) => d.channel.push('teleport:ping', {}).receive('error', resolve).receive('ok', resolve));
  };

  it('attach: request_shell {}; output reaches an operator; input and window size reach the device', async () => {
    const d = await shellDevice('device-34');
    try {
      const req = ext(d.c, 'local_shell:request_shell')[0];
      assert.deepEqual(req.payload, {});
      assert.equal(req.join_ref, d.channel.joinRef(), 'pushed on the extensions join');

      const op = operator('device-34');
      assert.equal(await op.openReplay(), '', 'nothing printed yet: an empty replay');
      d.out('/ # ');
      await op.waitText('/ # ');
      assert.deepEqual(op.all.find(([s]) => s === 'nh.local_shell.device-34.out')[1], {
        v: 1,
        ev: 'output',
        p: { data: '/ # ' },
      });

      assert.equal(await op.input('uname -a\r'), 'ok');
      const inp = await d.c.waitMessage((m) => m.topic === 'extensions' && m.event === 'local_shell:shell_input');
      assert.deepEqual(inp?.payload, { data: 'uname -a\r' });
      assert.equal(inp.join_ref, d.channel.joinRef());
      assert.equal(inp.ref, null);
      assert.equal(await op.push('local_shell:window_size', { rows: 40, cols: 120 }), 'ok');
      const ws = await d.c.waitMessage((m) => m.topic === 'extensions' && m.event === 'local_shell:window_size');
      assert.deepEqual(ws?.payload, { rows: 40, cols: 120 });
    } finally {
      await d.c.disconnect();
    }
  });

  it('a later operator gets the scrollback replay first, then live output; both see the same', async () => {
    const d = await shellDevice('device-35', { msgpack: true });
    try {
      d.out('boot 1\n');
      d.out('boot 2\n$ ');
      await settle(d);
      const op1 = operator('device-35');
      assert.equal(await op1.openReplay(), 'boot 1\nboot 2\n$ ');
      d.out('ls\r\n');
      await op1.waitText('ls\r\n');
      assert.equal(op1.liveText(), 'ls\r\n', 'the replay is not repeated as output');

      const op2 = operator('device-35');
      assert.equal(await op2.openReplay(), 'boot 1\nboot 2\n$ ls\r\n');
      d.out('a.txt\r\n');
      await op1.waitText('a.txt');
      await op2.waitText('a.txt');
      assert.equal(op2.liveText(), 'a.txt\r\n');
      assert.equal(op1.liveText(), 'ls\r\na.txt\r\n');

      // opening while the device prints: no gap, no repeat (output before the replay is in it)
      const op3 = operator('device-35');
      await op3.subscribe();
      const printing = (async () => {
        for (let i = 0; i < 40; i++) {
          d.out(`line ${i}\n`);
          if (i % 8 === 0) await sleep(5);
        }
      })();
      await op3.openReplay();
      await printing;
      await op3.waitText('line 39\n');
      const seen = op3.replay + op3.liveText();
      const all = 'boot 1\nboot 2\n$ ls\r\na.txt\r\n' + Array.from({ length: 40 }, (_, i) => `line ${i}\n`).join('');
      assert.equal(seen, all, 'replay + live output: everything once, in order (the cap is not reached here)');
    } finally {
      await d.c.disconnect();
    }
  });

  it('the scrollback byte cap holds against output without a newline', async () => {
    const d = await shellDevice('device-36');
    try {
      const chunk = 'x'.repeat(1000) + 'y'.repeat(1000);
      for (let i = 0; i < 10; i++) d.out(chunk); // 20,000 bytes, no newline, cap 4096
      await settle(d);
      const op = operator('device-36');
      const r = await op.openReplay();
      assert.equal(r.length, CAP);
      assert.equal(r, chunk.repeat(3).slice(-CAP), 'the newest bytes');
      d.out('z');
      await settle(d);
      const op2 = operator('device-36');
      assert.equal(await op2.openReplay(), (chunk.repeat(3) + 'z').slice(-CAP), 'still the cap after one more byte');
    } finally {
      await d.c.disconnect();
    }
  });

  it('detach and re-attach clear the scrollback; operators are told the shell closed', async () => {
    const d = await shellDevice('device-37');
    try {
      d.out('secret\n');
      await settle(d);
      const op = operator('device-37');
      assert.equal(await op.openReplay(), 'secret\n');
      d.channel.push('local_shell:detached', {});
      await op.until(() => op.closed.length > 0, 5000, 'closed');
      assert.deepEqual(op.closed[0], { reason: 'detached' });
      const late = operator('device-37');
      assert.equal(await late.open(), 'ok');
      await late.until(() => late.closed.length > 0, 5000, 'closed: not attached');
      assert.equal(late.closed[0].reason, 'not_attached');
      assert.equal(late.replay, null, 'no replay while detached');

      // attached again: a new scrollback
      d.attach();
      await waitFor(() => ext(d.c, 'local_shell:request_shell').length >= 2, 5000, 'request_shell again');
      assert.equal(await operator('device-37').openReplay(), '', 'detach cleared it');
      d.out('fresh\n');
      await settle(d);
      assert.equal(await operator('device-37').openReplay(), 'fresh\n');
      d.attach(); // attached while attached: NervesHub clears on every attach
      await waitFor(() => ext(d.c, 'local_shell:request_shell').length >= 3, 5000, 'request_shell a third time');
      await settle(d);
      assert.equal(await operator('device-37').openReplay(), '', 're-attach cleared it');
    } finally {
      await d.c.disconnect();
    }
  });

  it('disconnect ends the shell for operators; a new connection starts an empty scrollback', async () => {
    let d = await shellDevice('device-38');
    const op = operator('device-38');
    try {
      d.out('before\n');
      await settle(d);
      assert.equal(await op.openReplay(), 'before\n');
      await d.c.disconnect();
      await op.until(() => op.closed.length > 0, 5000, 'closed');
      assert.deepEqual(op.closed[0], { reason: 'disconnected', detail: 'closed' });
      d = await shellDevice('device-38');
      assert.equal(await operator('device-38').openReplay(), '', 'the old connection’s scrollback went with it');
    } finally {
      await d.c.disconnect();
    }
  });

  it('metrics: scrollbacks and their memory follow output, detach, leave and disconnect; replays counted', async () => {
    const OK = 'nhgw_local_shell_replays_total{result="ok"}';
    const FAILED = 'nhgw_local_shell_replays_total{result="failed"}';
    await metricIs('nhgw_local_shell_scrollbacks', 0); // the earlier tests' devices are gone
    await metricIs('nhgw_local_shell_scrollback_bytes', 0);
    const m0 = await metrics();
    const ok0 = metric(m0, OK);
    const failed0 = metric(m0, FAILED);
    assert.equal(typeof ok0, 'number', 'the ok series is exported');
    assert.equal(typeof failed0, 'number', 'the failed series is exported');

    const a = await shellDevice('device-34');
    const b = await shellDevice('device-36');
    try {
      assert.equal(await operator('device-34').openReplay(), '');
      await metricIs(OK, ok0 + 1);
      // one snapshot: the replay was counted, so the attach before it was handled too
      assert.equal(metric(await metrics(), 'nhgw_local_shell_scrollbacks'), 0, 'an empty replay holds nothing');

      a.out('hello\n');
      await settle(a);
      await metricIs('nhgw_local_shell_scrollbacks', 1);
      const small = metric(await metrics(), 'nhgw_local_shell_scrollback_bytes');
      assert.ok(small > 0 && small < CAP, `one short line: a small ring (${small} bytes)`);

      for (let i = 0; i < 5; i++) b.out('z'.repeat(999) + '\n'); // 5000 bytes, cap 4096
      await settle(b);
      await metricIs('nhgw_local_shell_scrollbacks', 2);
      await metricIs('nhgw_local_shell_scrollback_bytes', small + CAP);
      assert.equal((await operator('device-36').openReplay()).length, 4000, 'whole lines within the cap');
      await metricIs(OK, ok0 + 2);

      // detached: the platform clears a's scrollback
      const op = operator('device-34');
      assert.equal(await op.openReplay(), 'hello\n');
      await metricIs(OK, ok0 + 3);
      a.channel.push('local_shell:detached', {});
      await op.until(() => op.closed.length > 0, 5000, 'closed');
      await metricIs('nhgw_local_shell_scrollbacks', 1);
      await metricIs('nhgw_local_shell_scrollback_bytes', CAP);

      // attached again and printing, then the extensions channel left: the gateway frees it
      a.attach();
      await waitFor(() => ext(a.c, 'local_shell:request_shell').length >= 2, 5000, 'request_shell again');
      a.out('again\n');
      await settle(a);
      await metricIs('nhgw_local_shell_scrollbacks', 2);
      await metricIs('nhgw_local_shell_scrollback_bytes', small + CAP);
      assert.equal(await a.c.leave(a.channel), 'ok');
      await a.c.heartbeat(); // Phoenix resolves a leave at once: wait until the gateway had it
      await metricIs('nhgw_local_shell_scrollbacks', 1);
      await metricIs('nhgw_local_shell_scrollback_bytes', CAP);

      // disconnected: the connection's scrollback goes with it
      await b.c.disconnect();
      await metricIs('nhgw_local_shell_scrollbacks', 0);
      await metricIs('nhgw_local_shell_scrollback_bytes', 0);
      assert.equal(metric(await metrics(), FAILED), failed0, 'no replay failed');
    } finally {
      await a.c.disconnect();
      await b.c.disconnect();
    }
  });

  it('opening fails clearly: extensions not joined, local_shell not attached', async () => {
    const c = await connectPhx(gw.port, { device: 'device-39' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      await waitFor(() => rc.hgetall('nh:dev:device-39'), 5000, 'registry entry');
      const op = operator('device-39');
      assert.equal(await op.open(), 'not_joined');
      const j = await c.join('extensions', { health: '0.0.1' });
      assert.deepEqual(j.response, ['health']);
      const op2 = operator('device-39');
      assert.equal(await op2.open(), 'ok');
      await op2.until(() => op2.closed.length > 0, 5000, 'closed');
      assert.equal(op2.closed[0].reason, 'not_attached');
      // input to a device without the shell is still pushed (the device ignores it, as upstream)
      assert.equal(await op2.input('x'), 'ok');
    } finally {
      await c.disconnect();
    }
  });

  // ---- nhctl local-shell, an interactive terminal under tmux ----

  const nhctl = (args) => runNhctl(NHCTL, args, nats.url);

  const shellCommand = (dev) => nhctlTerminalCommand(NHCTL, 'local-shell', dev, nats.url);

  /** A simulated device shell: echoes input (Enter answers), records window sizes. */
  const echoDevice = async (device) => {
    const d = await shellDevice(device);
    d.input = [];
    d.sizes = [];
    d.channel.on('local_shell:shell_input', ({ data }) => {
      d.input.push(data);
      d.out(data.replace(/\r/g, '\r\n'));
      if (data.includes('\r')) d.out('Linux nerves 6.6\r\n~ # ');
    });
    d.channel.on('local_shell:window_size', (p) => d.sizes.push(p));
    return d;
  };

  it('nhctl local-shell under tmux: replay, keystrokes, window size, Ctrl-C to the device, Ctrl-] exits', async () => {
    const d = await echoDevice('device-40');
    d.out('Welcome\r\n~ # ');
    await settle(d);
    const t = startTmux(shellCommand('device-40'));
    try {
      await waitScreen(t, /local shell of device-40 via gateway gw-shell\/0/, 'banner', 10000);
      await waitScreen(t, /Welcome\s*\n~ #/, 'the replay on screen');
      await waitFor(() => d.sizes.length >= 1, 5000, 'window_size at start');
      assert.deepEqual(d.sizes[0], { rows: 30, cols: 100 }, 'the pane size as rows/cols');

      t.keys('uname', 'Enter');
      await waitScreen(t, /Linux nerves 6\.6/, 'the device’s answer on screen');
      assert.match(t.capture(), /~ # uname\s*\nLinux nerves 6\.6\s*\n~ #/);
      assert.equal(d.input.join(''), 'uname\r', 'raw mode: keystrokes as typed');

      t.keys('C-c');
      await waitFor(() => d.input.join('').endsWith('\x03'), 5000, 'Ctrl-C sent to the device');
      t.tmux('resize-window', '-t', 'nh', '-x', '90', '-y', '25');
      await waitFor(() => d.sizes.some((s) => s.cols === 90 && s.rows === 25), 5000, 'window_size after SIGWINCH');

      const before = d.input.length;
      t.keys('C-]');
      await waitScreen(t, /EXIT=0\s+TTY=/, 'nhctl exits 0 on Ctrl-]');
      assert.match(t.capture(), /detached from the local shell of device-40/);
      assert.match(t.capture(), /TTY=icanon/, 'the terminal is restored');
      assert.equal(d.input.length, before, 'the exit key is not sent');

      // the device disconnecting ends a session with its reason
      const t2 = startTmux(shellCommand('device-40'));
      try {
        await waitScreen(t2, /local shell of device-40/, 'banner', 10000);
        await waitScreen(t2, /~ # uname/, 'the replay of the first session’s output');
        await d.c.disconnect();
        await waitScreen(t2, /EXIT=1\s+TTY=/, 'nhctl exits 1');
        assert.match(t2.capture(), /local shell closed: disconnected \(closed\)/);
        assert.match(t2.capture(), /TTY=icanon/);
      } finally {
        t2.kill();
      }
    } finally {
      t.kill();
      await d.c.disconnect();
    }
  });

  it('nhctl local-shell: clear errors (unknown, offline, not joined, not attached, bad id)', async () => {
    let r = nhctl(['local-shell', 'no-such-device']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /unknown device no-such-device/);
    r = nhctl(['local-shell', 'device-38']); // disconnected above
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /device device-38 is offline/);
    const c = await connectPhx(gw.port, { device: 'device-33' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      await waitFor(() => rc.hgetall('nh:dev:device-33'), 5000, 'registry entry');
      r = nhctl(['local-shell', 'device-33']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /device device-33 has not joined its extensions channel/);
      assert.equal((await c.join('extensions', { health: '0.0.1' })).status, 'ok');
      r = nhctl(['local-shell', 'device-33']); // stdin is not a terminal: no raw mode
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /local shell closed: not_attached \(the device has not attached the local_shell extension\)/);
    } finally {
      await c.disconnect();
    }
    r = nhctl(['local-shell', 'a.b']);
    assert.equal(r.code, 2, 'not a device id: usage error');
  });
});
