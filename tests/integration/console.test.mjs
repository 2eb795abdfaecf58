// The remote console end to end (issue 5, proto/LINK.md §9): real nats-server, redis-server and
// nhplatform, the gateway with --link nats --redis, devices on the official Phoenix JavaScript
// client, and operators speaking the link's msgpack over NATS as nhctl does (ConsoleOperator
// below); then `nhctl console` itself, driven under tmux against a device that echoes its input.
import { encode } from '@msgpack/msgpack';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { REPO } from './lib/certs.mjs';
import { NHGW_BIN, gwTest, sleep, startGateway, waitFor } from './lib/gateway.mjs';
import { CONSOLE_JOIN, DEVICE_JOIN, connectPhx } from './lib/phx.mjs';
import { connectNats, startNats, startPlatform, startRedis } from './lib/stack.mjs';
import { ConsoleOperator } from './lib/consoleop.mjs';
import { nhctlTerminalCommand, runNhctl, startTmux, waitScreen } from './lib/tmux.mjs';

const NHCTL = process.env.NHCTL_BIN || join(REPO, 'build', 'nhctl');
const CAP = 64 * 1024; // the gateway's default --console-scrollback-bytes

/** VmRSS of a process in KiB. */
function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return Number(m[1]);
}

describe('remote console: devices, gateway, operators over NATS', () => {
  let nats, redis, rc, platform, gw, nc;
  const it = gwTest(() => gw);
  const operators = [];
  const operator = (dev, opts) => {
    const o = new ConsoleOperator(nc, rc, dev, opts);
    operators.push(o);
    return o;
  };

  before(async () => {
    nats = await startNats();
    redis = await startRedis();
    rc = await redis.client();
    platform = await startPlatform({ nats: nats.url, redis: redis.addr });
    gw = await startGateway({
      args: [
        '--link', 'nats', '--nats-url', nats.url, '--redis', redis.addr, '--gateway-id', 'gw-console',
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

  /** A device connected with its console joined; resolves {c, console}. */
  const consoleDevice = async (device, { msgpack = false, join = CONSOLE_JOIN } = {}) => {
    const c = await connectPhx(gw.port, { device, msgpack });
    const j = await c.join('console', join);
    assert.equal(j.status, 'ok', JSON.stringify(j.response));
    assert.deepEqual(j.response, {}, 'console join reply is {} as NervesHub sends it');
    await waitFor(() => rc.hgetall(`nh:dev:${device}`), 5000, `registry entry of ${device}`);
    return { c, channel: j.channel };
  };
  const up = (d, data) => d.c.push('console', 'up', { data }, { joinRef: d.channel.joinRef() });
  /** A round trip on the socket: everything the device sent before has been handled. */
  const settle = (d) => d.c.heartbeat();

  it('an attached operator gets output, and its input reaches the device as dn/window_size', async () => {
    const d = await consoleDevice('device-20');
    try {
      const op = operator('device-20');
      const r = await op.attach();
      assert.equal(r.st, 'ok');
      assert.equal(Buffer.from(r.scrollback).length, 0, 'nothing printed yet');
      assert.equal(r.version, '2.0.0', 'console_version from the join');

      assert.deepEqual(await op.push('dn', { data: 'ls\r' }), { v: 1, st: 'ok' });
      const dn = await d.c.waitMessage((m) => m.topic === 'console' && m.event === 'dn');
      assert.ok(dn, 'dn pushed to the device');
      assert.deepEqual(dn.payload, { data: 'ls\r' });
      assert.equal(dn.join_ref, d.channel.joinRef(), 'a push on the console join');
      assert.equal(dn.ref, null);
      await op.push('window_size', { height: 40, width: 120 });
      const ws = await d.c.waitMessage((m) => m.topic === 'console' && m.event === 'window_size');
      assert.deepEqual(ws?.payload, { height: 40, width: 120 });

      up(d, 'iex(1)> ls\r\nfoo.txt\r\n');
      await op.waitText('foo.txt\r\n');
      assert.deepEqual(op.out[0], { v: 1, ev: 'up', p: { data: 'iex(1)> ls\r\nfoo.txt\r\n' } });

      // a file sent by the device goes to operators as is
      d.c.push('console', 'file-data/start', { filename: 'a.txt' }, { joinRef: d.channel.joinRef() });
      d.c.push('console', 'file-data', { filename: 'a.txt', chunk: 0, data: 'YQ==' }, { joinRef: d.channel.joinRef() });
      d.c.push('console', 'file-data/stop', { filename: 'a.txt' }, { joinRef: d.channel.joinRef() });
      await op.waitOut((m) => m.ev === 'file-data/stop');
      assert.deepEqual(
        op.out.filter((m) => m.ev.startsWith('file-data')).map((m) => [m.ev, m.p]),
        [
          ['file-data/start', { filename: 'a.txt' }],
          ['file-data', { filename: 'a.txt', chunk: 0, data: 'YQ==' }],
          ['file-data/stop', { filename: 'a.txt' }],
        ],
      );
    } finally {
      await d.c.disconnect();
    }
  });

  it('nothing is published while nobody is attached; a late operator gets the scrollback, then live output', async () => {
    const d = await consoleDevice('device-21', { msgpack: true });
    try {
      // a bare subscriber (not attached) sees no traffic from an idle console
      const spy = operator('device-21');
      await spy.subscribe();
      up(d, 'boot line 1\n');
      up(d, 'boot line 2\niex(1)> ');
      await settle(d);
      await sleep(200);
      assert.equal(spy.out.length, 0, 'no NATS traffic without an attached operator');

      const op1 = operator('device-21');
      const r1 = await op1.attach();
      assert.equal(r1.st, 'ok');
      assert.equal(Buffer.from(r1.scrollback).toString(), 'boot line 1\nboot line 2\niex(1)> ');
      up(d, 'Node.self()\r\n');
      await op1.waitText('Node.self()\r\n');
      assert.equal(op1.upText(), 'Node.self()\r\n', 'the scrollback is not sent again as output');

      const op2 = operator('device-21');
      const r2 = await op2.attach();
      assert.equal(
        Buffer.from(r2.scrollback).toString(),
        'boot line 1\nboot line 2\niex(1)> Node.self()\r\n',
        'the second operator gets everything so far first',
      );
      up(d, ':nonode@nohost\r\n');
      await op1.waitText(':nonode@nohost');
      await op2.waitText(':nonode@nohost');
      assert.equal(op2.upText(), ':nonode@nohost\r\n');
      assert.equal(op1.upText(), 'Node.self()\r\n:nonode@nohost\r\n', 'both see the same output');
      assert.ok(spy.out.length >= 2, 'the bare subscriber sees output once someone attached');

      // a renewal without the scrollback
      const renewed = await op1.attach({ sb: false });
      assert.equal(renewed.st, 'ok');
      assert.equal(renewed.scrollback, undefined);
    } finally {
      await d.c.disconnect();
    }
  });

  it('publishing stops when the last operator detaches or its lease lapses', async () => {
    const d = await consoleDevice('device-22');
    try {
      // the gateway publishes for every holder of a lease; a bare subscriber sees what is published
      const spy = operator('device-22');
      await spy.subscribe();
      const a = operator('device-22');
      const b = operator('device-22');
      assert.equal((await a.attach()).st, 'ok');
      assert.equal((await b.attach({ lease_ms: 1000 })).st, 'ok');
      up(d, 'one\n');
      await spy.waitText('one\n');
      assert.deepEqual(await a.detach(), { v: 1, st: 'ok' });
      up(d, 'two\n');
      await spy.waitText('two\n'); // b still holds its lease
      await sleep(1300); // b's 1 s lease lapses without a renewal
      up(d, 'three\n');
      await settle(d);
      await sleep(300);
      assert.equal(spy.upText(), 'one\ntwo\n', 'nothing is published once the last lease lapsed');

      const r = await b.attach(); // attaching again after a lapse
      assert.equal(Buffer.from(r.scrollback).toString(), 'one\ntwo\nthree\n', 'the scrollback kept everything');
      up(d, 'four\n');
      await spy.waitText('four\n');
      assert.deepEqual(await b.detach(), { v: 1, st: 'ok' });
      assert.deepEqual(await b.detach(), { v: 1, st: 'ok' }, 'detaching twice is harmless');
      up(d, 'five\n');
      await settle(d);
      await sleep(300);
      assert.equal(spy.upText(), 'one\ntwo\nfour\n', 'nothing is published after the last detach');
      assert.equal(gw.events('console_detached').length >= 2, true);
    } finally {
      await d.c.disconnect();
    }
  });

  it('the console ends for its operators with a clear message: leave, rejoin, disconnect', async () => {
    const d = await consoleDevice('device-23');
    const op = operator('device-23');
    assert.equal((await op.attach()).st, 'ok');
    assert.equal(await d.c.leave(d.channel), 'ok');
    const left = await op.waitOut((m) => m.ev === 'closed');
    assert.deepEqual(left, { v: 1, ev: 'closed', p: { reason: 'left' } });
    assert.equal((await op.attach()).st, 'not_joined', 'left: not joined any more');

    const j = await d.c.join('console', CONSOLE_JOIN);
    assert.equal(j.status, 'ok');
    assert.equal((await op.attach()).st, 'ok');
    // phx_join on the joined topic (the JS client would leave first, so push it raw): Phoenix
    // closes the old channel and joins anew
    const ref = d.c.push('console', 'phx_join', { console_version: '1.0.0' }, { joinRef: '99' });
    const j2 = await d.c.reply(ref);
    assert.equal(j2?.payload?.status, 'ok');
    const re = await op.waitOut((m) => m.ev === 'closed' && m.p.reason === 'rejoined');
    assert.ok(re, 'rejoined');
    const r = await op.attach();
    assert.equal(r.st, 'ok');
    assert.equal(r.version, '1.0.0', 'the new join’s version');

    const from = op.out.length;
    await d.c.disconnect();
    const closed = await op.waitOut((m) => m.ev === 'closed', 3000, from);
    assert.deepEqual(closed, { v: 1, ev: 'closed', p: { reason: 'disconnected', detail: 'closed' } });
    await waitFor(async () => (await rc.hgetall('nh:dev:device-23')) === null, 5000, 'registry entry gone');
  });

  it('errors: a device without a console, a device that is not there, 16 operators at most', async () => {
    const c = await connectPhx(gw.port, { device: 'device-24' });
    try {
      const j = await c.join('device', DEVICE_JOIN);
      assert.equal(j.status, 'ok');
      const entry = await waitFor(() => rc.hgetall('nh:dev:device-24'), 5000, 'registry entry');
      const inbox = `nh.gw.${entry.gw}.${entry.w}`;
      assert.equal((await operator('device-24').attach()).st, 'not_joined');
      assert.equal((await operator('device-24-nope').attach({ inbox })).st, 'gone');
      // a malformed attach (bad op) is not answered: the inbox drops invalid messages
      await assert.rejects(
        nc.request(inbox, encode({ v: 1, k: 'console_attach', dev: 'device-24', op: 'has space' }), { timeout: 500 }),
      );

      const cj = await c.join('console', {}); // no console_version
      assert.equal(cj.status, 'ok');
      const ops = [];
      for (let i = 0; i < 16; i++) {
        const o = operator('device-24');
        const r = await o.attach();
        assert.equal(r.st, 'ok', `operator ${i}`);
        assert.equal(r.version, undefined, 'no console_version: none in the reply');
        ops.push(o);
      }
      assert.equal((await operator('device-24').attach()).st, 'full', 'the 17th operator');
      assert.equal((await ops[3].attach({ sb: false })).st, 'ok', 'renewals still work when full');
      await ops[0].detach();
      assert.equal((await operator('device-24').attach()).st, 'ok', 'a place freed by a detach');
    } finally {
      await c.disconnect();
    }
  });

  it('the byte cap holds against 10 MB without a newline (scrollback ≤ cap, worker RSS flat)', async () => {
    const d = await consoleDevice('device-25');
    try {
      const pid = [...gw.workerPids().values()][0];
      up(d, 'warm up\n'.repeat(100)); // the scrollback and the worker's buffers exist
      await settle(d);
      const before = rssKiB(pid);
      const chunk = 'x'.repeat(64 * 1024 - 1);
      let sent = 0;
      for (let i = 0; sent < 10 * 1024 * 1024; i++) {
        const data = chunk + String.fromCharCode(97 + (i % 26)); // chunks end differently
        up(d, data);
        sent += data.length;
        if (i % 16 === 15) await settle(d); // keep the client's own buffers small
      }
      await settle(d);
      const grown = rssKiB(pid) - before;
      if (process.env.NH_DEBUG_RSS) console.error(`worker RSS grew by ${grown} KiB`);
      // ASan keeps freed memory in quarantine (RSS then measures the sanitizer, not the gateway)
      if (!/asan/.test(NHGW_BIN)) {
        assert.ok(grown < 4 * 1024, `worker RSS grew by ${grown} KiB after ${sent} bytes of one line`);
      }
      const op = operator('device-25');
      const r = await op.attach();
      const sb = Buffer.from(r.scrollback);
      assert.equal(sb.length, CAP, 'the scrollback is exactly the cap');
      const last = String.fromCharCode(97 + ((Math.ceil((10 * 1024 * 1024) / (64 * 1024)) - 1) % 26));
      assert.equal(sb.toString().slice(-2), `x${last}`, 'it is the tail of what was sent');
      assert.ok(!sb.includes('warm up'), 'older lines were dropped first');
    } finally {
      await d.c.disconnect();
    }
  });

  it('a big up reaches operators in pieces cut on UTF-8 boundaries, reassembling exactly', async () => {
    const d = await consoleDevice('device-26');
    try {
      const op = operator('device-26');
      assert.equal((await op.attach()).st, 'ok');
      const text = 'aé€😀'.repeat(60000) + '\n'; // 600 KB of 1–4 byte characters
      up(d, text);
      await op.waitText('\n', 10000);
      const ups = op.out.filter((m) => m.ev === 'up');
      assert.ok(ups.length >= 3, `${ups.length} pieces`);
      for (const m of ups) assert.ok(!m.p.data.includes('\ufffd'), 'every piece is valid UTF-8');
      assert.equal(op.upText(), text);
    } finally {
      await d.c.disconnect();
    }
  });

  // ---- nhctl console, an interactive terminal under tmux ----

  const nhctl = (args) => runNhctl(NHCTL, args, nats.url);



  const consoleCommand = (dev) => nhctlTerminalCommand(NHCTL, 'console', dev, nats.url);

  /** A simulated device: echoes every `dn` as `up` (Enter answers like IEx), reports window sizes. */
  const echoDevice = async (device) => {
    const d = await consoleDevice(device);
    d.input = [];
    d.sizes = [];
    d.channel.on('dn', ({ data }) => {
      d.input.push(data);
      up(d, data.replace(/\r/g, '\r\n'));
      if (data.includes('\r')) up(d, ':nonode@nohost\r\niex(2)> ');
    });
    d.channel.on('window_size', (p) => d.sizes.push(p));
    return d;
  };

  it('nhctl console under tmux: scrollback, keystrokes, window size, Ctrl-C to the device, Ctrl-] exits', async () => {
    const d = await echoDevice('device-27');
    const t = startTmux(consoleCommand('device-27'));
    try {
      up(d, 'Interactive Elixir (1.17.3)\r\niex(1)> ');
      await settle(d);
      await waitScreen(t, /console of device-27 \(console_version 2\.0\.0\)/, 'banner', 10000);
      await waitScreen(t, /iex\(1\)>/, 'the scrollback on screen'); // capture-pane trims trailing blanks
      assert.match(t.capture(), /Interactive Elixir \(1\.17\.3\)/);
      assert.match(t.capture(), /type Ctrl-\] to exit/);
      await waitFor(() => d.sizes.length >= 1, 5000, 'window_size at start');
      assert.deepEqual(d.sizes[0], { height: 30, width: 100 }, 'the pane size');

      t.keys('Node.self()', 'Enter');
      await waitScreen(t, /:nonode@nohost/, 'the device’s answer on screen');
      assert.match(t.capture(), /iex\(1\)> Node\.self\(\)\s*\n:nonode@nohost\s*\niex\(2\)>/);
      assert.equal(d.input.join(''), 'Node.self()\r', 'raw mode: keystrokes as typed, Enter as \\r');

      t.keys('C-c'); // raw mode: no SIGINT for nhctl, ^C goes to the device
      await waitFor(() => d.input.join('').endsWith('\x03'), 5000, 'Ctrl-C sent to the device');

      t.tmux('resize-window', '-t', 'nh', '-x', '90', '-y', '25');
      await waitFor(() => d.sizes.some((s) => s.width === 90 && s.height === 25), 5000, 'window_size after SIGWINCH');

      const before = d.input.length;
      t.keys('C-]');
      await waitScreen(t, /EXIT=0\s+TTY=/, 'nhctl exits 0 on Ctrl-]');
      assert.match(t.capture(), /detached from the console of device-27/);
      assert.match(t.capture(), /TTY=icanon/, 'the terminal is restored (canonical mode again)');
      assert.equal(d.input.length, before, 'the exit key is not sent to the device');
      await gw.waitForLog(/event=console_detached .*device=device-27 op=nhctl-[0-9a-f]{12} operators=0/, 5000);
    } finally {
      t.kill();
      await d.c.disconnect();
    }
  });

  it('nhctl console: the device disconnecting ends the session with "console closed: <reason>"', async () => {
    const d = await echoDevice('device-28');
    const t = startTmux(consoleCommand('device-28'));
    try {
      await waitScreen(t, /console of device-28/, 'banner', 10000);
      await gw.waitForLog(/event=console_attached .*device=device-28/, 5000);
      t.keys('x');
      await waitFor(() => d.input.includes('x'), 5000, 'a key reaches the device');
      await d.c.disconnect();
      await waitScreen(t, /EXIT=1\s+TTY=/, 'nhctl exits 1');
      assert.match(t.capture(), /console closed: disconnected \(closed\)/);
      assert.match(t.capture(), /TTY=icanon/);
    } finally {
      t.kill();
    }
  });

  it('nhctl console: clear errors for an unknown device, an offline one, one without a console', async () => {
    let r = nhctl(['console', 'no-such-device']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /unknown device no-such-device/);

    // device-28 disconnected in the previous test: known to the platform, held by nobody
    r = nhctl(['console', 'device-28']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /device device-28 is offline/);

    const c = await connectPhx(gw.port, { device: 'device-29' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      await waitFor(() => rc.hgetall('nh:dev:device-29'), 5000, 'registry entry');
      r = nhctl(['console', 'device-29']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /device device-29 has not joined its console/);
    } finally {
      await c.disconnect();
    }
    r = nhctl(['console', 'a.b']);
    assert.equal(r.code, 2, 'not a device id: usage error');
  });
});
