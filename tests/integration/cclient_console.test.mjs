// The remote console with the project's own C device client (issue 5): real nats-server,
// redis-server and nhplatform, the gateway on the NATS link, and build/nhbench's simulated devices
// joining `console` and echoing every `dn` back as `up`, as a shell echoes keystrokes
// (bench/client.c, `--console`). Operators speak the link's msgpack over NATS as nhctl does. Also:
// the console metrics on the gateway's /metrics, and `nhbench console` (the round-trip benchmark)
// run briefly, open and closed loop, where every push must come back exactly once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO } from './lib/certs.mjs';
import { HOST, freePort, gwTest, sleep, startGateway, withTimeout } from './lib/gateway.mjs';
import { NHBENCH_BIN, explainRun, pkiArgs, runNhbench } from './lib/nhbench.mjs';
import { connectNats, startNats, startPlatform, startRedis } from './lib/stack.mjs';
import { ConsoleOperator } from './lib/consoleop.mjs';
import { fetchMetrics, metric, waitMetric } from './lib/metrics.mjs';

const CAP = 64 * 1024; // the gateway's default --console-scrollback-bytes

describe('remote console with the C client (nhbench) as the device', () => {
  let nats, redis, rc, platform, gw, nc, admin, dir;
  const it = gwTest(() => gw);
  let lastInputCheck = null; // the first test's input counter, checked by the second
  const metrics = () => fetchMetrics(admin);
  const metricIs = (series, want) => waitMetric(admin, series, want);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cclient-console-'));
    nats = await startNats();
    redis = await startRedis();
    rc = await redis.client();
    platform = await startPlatform({ nats: nats.url, redis: redis.addr, args: ['--auto-register'] });
    admin = await freePort();
    gw = await startGateway({
      workers: 2,
      logLevel: 'info',
      args: [
        '--link', 'nats', '--nats-url', nats.url, '--redis', redis.addr, '--gateway-id', 'cc-console',
        '--admin-listen', `${HOST}:${admin}`,
      ],
    });
    await gw.waitForLog(/event=nats_connected/, 10000);
    nc = await connectNats(nats.url);
  });
  after(async () => {
    await nc?.close();
    await gw?.stop({ strict: false });
    await platform?.stop();
    await redis?.stop();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('operator input comes back as output through the C client; the console metrics follow', async () => {
    // two echo devices: nhbench-0000000 on JSON with deflate, nhbench-0000001 on msgpack without
    const args = [
      'hold', '--console',
      '--target', `${gw.host}:${gw.port}`,
      '--sessions', '2', '--workers', '1',
      '--vsn', 'mix', '--deflate', 'mix', '--strict',
      '--hold', '60s',
      ...pkiArgs(),
    ];
    const bench = spawn(NHBENCH_BIN, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    bench.stdout.on('data', (d) => (output += d));
    bench.stderr.on('data', (d) => (output += d));
    const exited = new Promise((resolve) => bench.once('exit', (code, signal) => resolve({ code, signal })));
    const ops = [];
    try {
      const m0 = await metrics();
      const out0 = metric(m0, 'nhgw_console_output_bytes_total');
      const in0 = metric(m0, 'nhgw_console_input_bytes_total');
      assert.equal(metric(m0, 'nhgw_consoles'), 0);
      assert.equal(metric(m0, 'nhgw_console_operators'), 0);
      assert.equal(metric(m0, 'nhgw_console_scrollback_bytes'), 0);

      const a = new ConsoleOperator(nc, rc, 'nhbench-0000000');
      const b = new ConsoleOperator(nc, rc, 'nhbench-0000001');
      ops.push(a, b);
      const ra = await a.attachWhenReady();
      assert.equal(Buffer.from(ra.scrollback).length, 0, 'nothing printed before the first keystroke');
      assert.equal(ra.version, '2.0.0', "the C client's console_version");
      await b.attachWhenReady();
      await metricIs('nhgw_consoles', 2);
      await metricIs('nhgw_console_operators', 2);

      // what is typed comes back, in order, byte for byte (UTF-8 included); window_size makes no output
      const typedA = ['ls -l\r', 'héllo ✓ ', 'Node.self()\r\n'];
      for (const t of typedA) assert.deepEqual(await a.push('dn', { data: t }), { v: 1, st: 'ok' });
      assert.deepEqual(await a.push('window_size', { height: 40, width: 120 }), { v: 1, st: 'ok' });
      await a.until((o) => o.upText() === typedA.join(''), 'the echo of everything typed');
      assert.ok(a.out.every((m) => m.v === 1 && m.ev === 'up'), JSON.stringify(a.out));
      assert.equal(a.out.length, typedA.length, 'one `up` per `dn`');

      // the msgpack device: a str and a bin keystroke come back with their type
      await b.push('dn', { data: 'iex(1)> ' });
      await b.push('dn', { data: new Uint8Array([0x68, 0x69, 0x0d]) });
      await b.until((o) => o.out.length === 2, 'two echoes');
      assert.equal(b.out[0].p.data, 'iex(1)> ');
      assert.ok(b.out[1].p.data instanceof Uint8Array, 'bin echoed as bin');
      assert.deepEqual([...b.out[1].p.data], [0x68, 0x69, 0x0d]);

      // everything published went to these two operators: the counter matches their bytes exactly
      await metricIs('nhgw_console_output_bytes_total', out0 + a.bytes + b.bytes);
      const held = Buffer.byteLength(typedA.join('')) + 'iex(1)> hi\r'.length;
      const sb = metric(await metrics(), 'nhgw_console_scrollback_bytes');
      assert.ok(sb >= held && sb <= 2 * CAP, `scrollback memory ${sb} holds the ${held} bytes printed`);

      // a late operator gets the echoed text as scrollback
      const a2 = new ConsoleOperator(nc, rc, 'nhbench-0000000');
      ops.push(a2);
      const r2 = await a2.attachWhenReady();
      assert.equal(Buffer.from(r2.scrollback).toString('utf8'), typedA.join(''));
      await metricIs('nhgw_console_operators', 3);
      assert.deepEqual(await a2.detach(), { v: 1, st: 'ok' });
      await metricIs('nhgw_console_operators', 2);

      // input counted as delivered: the data bytes of every dn (the window_size push is not input)
      const typedBytes = typedA.reduce((n, t) => n + Buffer.byteLength(t), 0) + 'iex(1)> '.length + 3;
      const inNow = metric(await metrics(), 'nhgw_console_input_bytes_total');
      ops.inputCheck = { want: in0 + typedBytes, got: inNow };

      // the device goes away: its operators are told, and the gauges return to 0
      bench.kill('SIGINT');
      const ex = await withTimeout(exited, 20000, 'nhbench exiting after SIGINT');
      assert.ok(ex.code !== null, explainRun(args, { ...ex, stdout: output, stderr: '' }));
      await a.until((o) => o.out.some((m) => m.ev === 'closed'), 'closed');
      const closed = a.out.find((m) => m.ev === 'closed');
      assert.equal(closed.p.reason, 'disconnected');
      await metricIs('nhgw_consoles', 0);
      await metricIs('nhgw_console_operators', 0);
      await metricIs('nhgw_console_scrollback_bytes', 0);
      assert.match(output, /errors +: none/, output);
      assert.match(output, /console_joined|sessions +: 2\/2 ready/, output);
    } finally {
      for (const o of ops) o.close();
      if (bench.exitCode === null && bench.signalCode === null) bench.kill('SIGKILL');
      await exited;
    }
    lastInputCheck = ops.inputCheck;
  }, { timeout: 60000 });

  test('operator input bytes delivered are counted (nhgw_console_input_bytes_total)', async () => {
    assert.ok(lastInputCheck, 'the test above ran');
    assert.equal(lastInputCheck.got, lastInputCheck.want);
  });

  const benchRun = async (name, extra) => {
    const json = join(dir, `${name}.json`);
    const args = [
      'console',
      '--target', `${gw.host}:${gw.port}`,
      '--gateway-pid', String(gw.proc.pid),
      '--sessions', '40', '--workers', '2',
      '--vsn', 'mix', '--deflate', 'mix', '--strict',
      '--nats', nats.url,
      '--warmup', '500ms', '--duration', '2s', '--hold', '200ms',
      ...pkiArgs(),
      '--json', json,
      '--quiet',
      ...extra,
    ];
    const r = await runNhbench(args);
    const explain = explainRun(args, r);
    assert.equal(r.code, 0, explain);
    const res = JSON.parse(readFileSync(json, 'utf8'));
    const run = res.runs[0];
    assert.equal(res.pass, true, explain);
    assert.equal(run.errors_total, 0, explain);
    assert.equal(run.counts.console_joined, 40);
    const c = run.console;
    assert.ok(c, `no console results\n${explain}`);
    assert.equal(c.attached, 40, explain);
    assert.equal(c.attach_failed, 0);
    assert.ok(c.sent > 0);
    assert.equal(c.echoed, c.sent, 'every push came back');
    assert.equal(c.lost, 0);
    assert.equal(c.duplicates + c.out_of_order + c.foreign + c.closed, 0, explain);
    assert.equal(run.counts.console_dn, c.sent, 'the devices received every push');
    assert.equal(run.counts.console_up, c.sent, 'and echoed each once');
    assert.ok(c.rtt_us.count > 0 && c.rtt_us.p50 > 0 && c.rtt_us.p50 <= c.rtt_us.max, JSON.stringify(c.rtt_us));
    assert.ok(c.echoes_per_s > 0 && c.data_bytes_per_s > 0 && c.msg_bytes_per_s > c.data_bytes_per_s);
    assert.match(r.stdout, /round trip : operator -> gateway -> device -> gateway -> operator/);
    return c;
  };

  it('nhbench console, open loop: every push echoed once, timed from its intended send', async () => {
    const c = await benchRun('open', ['--console-rate', '20', '--console-bytes', '100']);
    assert.equal(c.loop, 'open');
    assert.equal(c.bytes_per_push, 100);
    // 40 consoles x 20/s for 2.5 s of typing (the warm-up included)
    assert.ok(c.sent >= 1500 && c.sent <= 2200, `sent ${c.sent}`);
    assert.equal(c.data_bytes, c.sent * 100);
    await metricIs('nhgw_consoles', 0);
    await metricIs('nhgw_console_operators', 0);
  }, { timeout: 120000 });

  it('nhbench console, closed loop: one push in flight per console, corrected for coordinated omission', async () => {
    const c = await benchRun('closed', ['--console-rate', '0']);
    assert.equal(c.loop, 'closed');
    assert.ok(c.co_interval_us > 0);
    assert.ok(c.rtt_corrected_us.count >= c.rtt_us.count);
  }, { timeout: 120000 });

  it('nhbench console refuses a push size below its header or above 64 KiB', async () => {
    for (const bytes of ['19', '65537']) {
      const r = await runNhbench(['console', '--target', `${gw.host}:${gw.port}`, '--console-bytes', bytes]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /bad value for --console-bytes/);
    }
  });
});
