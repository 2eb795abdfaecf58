// `nhbench fanout` against the whole stack: real nats-server and redis-server, the reference
// platform (build/nhplatform) and a gateway on the NATS link. nhbench connects a few hundred
// devices (unique certificates, link's join payload), then asks the platform's operator API to push
// `update` to every one of them: by a deployment.update (one publish on the deployment's topic,
// fanned out by the gateway's workers) and by a deployment.create (one inbox push per device).
// Here we assert completeness — every device got exactly one update per round, nothing else —
// not timings. The negative case checks that nhbench reports devices that never got their update.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';

import { gwTest, startGateway } from './lib/gateway.mjs';
import { startNats, startPlatform, startRedis } from './lib/stack.mjs';
import { NHBENCH_BIN, RUN_TIMEOUT_MS, explainRun, pkiArgs, runNhbench } from './lib/nhbench.mjs';

const SESSIONS = 200;

describe('nhbench fanout through the NATS link and the reference platform', () => {
  let nats, redis, platform, other, gw, dir;
  const it = gwTest(() => gw);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nhbench-fanout-'));
    nats = await startNats();
    redis = await startRedis();
    platform = await startPlatform({ nats: nats.url, redis: redis.addr, args: ['--auto-register'] });
    gw = await startGateway({
      workers: 2,
      logLevel: 'info',
      args: ['--link', 'nats', '--nats-url', nats.url, '--redis', redis.addr, '--gateway-id', 'fanout-gw'],
    });
    await gw.waitForLog(/event=nats_connected/, 10000);
  });
  after(async () => {
    await gw?.stop({ strict: false });
    await other?.stop();
    await platform?.stop();
    await redis?.stop();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const fanout = async (name, extra) => {
    const json = join(dir, `${name}.json`);
    const args = [
      'fanout',
      '--target', `${gw.host}:${gw.port}`,
      '--gateway-pid', String(gw.proc.pid),
      '--sessions', String(SESSIONS),
      '--workers', '2',
      '--vsn', 'mix',
      '--deflate', 'mix',
      '--nats', nats.url,
      ...pkiArgs(),
      '--json', json,
      '--quiet',
      ...extra,
    ];
    const r = await runNhbench(args);
    const explain = explainRun(args, r);
    assert.ok(existsSync(json), `no JSON result\n${explain}`);
    return { r, res: JSON.parse(readFileSync(json, 'utf8')), explain };
  };

  it('every device receives exactly one update per round, by topic and by scan', async () => {
    const { r, res, explain } = await fanout('complete', ['--strict', '--fanout', 'topic,scan,topic']);
    assert.equal(r.code, 0, explain);
    assert.equal(res.scenario, 'fanout');
    assert.equal(res.pass, true, explain);
    assert.equal(res.errors, 0, explain);
    const run = res.runs[0];
    assert.equal(run.counts_at_ramp.ready, SESSIONS, explain);
    assert.equal(run.counts_at_ramp.extensions_joined, SESSIONS, explain);
    const fo = run.derived.fanout;
    assert.ok(fo.base_deployment > 0, explain);
    assert.deepEqual(fo.rounds.map((x) => x.path), ['topic', 'scan', 'topic']);
    const uuids = new Set();
    for (const [i, x] of fo.rounds.entries()) {
      const what = `round ${i + 1} (${x.path}): ${JSON.stringify({ ...x, latency_us: undefined })}`;
      assert.equal(x.error, null, what);
      assert.equal(x.expected, SESSIONS, what);
      assert.equal(x.received, SESSIONS, what);
      assert.equal(x.exactly_once, SESSIONS, what);
      assert.equal(x.duplicates, 0, what);
      assert.equal(x.missing, 0, what);
      assert.equal(x.other_firmware, 0, what);
      assert.equal(x.complete, true, what);
      assert.equal(x.latency_us.count, SESSIONS, what);
      assert.match(x.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, what);
      uuids.add(x.uuid);
      if (x.path === 'topic') {
        assert.equal(x.platform_path, 'topic', what);
      } else {
        assert.equal(x.matched, SESSIONS, what);
        assert.equal(x.pushed, SESSIONS, what);
      }
    }
    assert.equal(uuids.size, 3, 'a fresh firmware per round');
    // the topic rounds update the deployment the previous round left the devices following
    assert.equal(fo.rounds[0].deployment, fo.base_deployment);
    assert.notEqual(fo.rounds[1].deployment, fo.base_deployment);
    assert.equal(fo.rounds[2].deployment, fo.rounds[1].deployment);
    // each device saw 3 updates and nothing it could mistake for one
    assert.equal(run.counts_at_end_of_hold.updates, 3 * SESSIONS, explain);
    const fanned = platform.events('deployment_fanout').map((e) => e.path);
    assert.deepEqual(fanned.slice(-3), ['topic', 'scan', 'topic'], 'the platform took the path asked for');
  });

  it('devices that never get the update are reported missing and fail the run', async () => {
    // a second platform under another prefix on the same NATS and Redis: its deployments and
    // topic publishes never reach this gateway's devices (they live under "nh")
    other = await startPlatform({ nats: nats.url, redis: redis.addr, prefix: 'elsewhere', args: ['--auto-register'] });
    const { r, res, explain } = await fanout('missing', [
      '--link-prefix', 'elsewhere', '--fanout', 'topic', '--fanout-timeout', '1500ms', '--fanout-grace', '200ms',
    ]);
    assert.equal(r.code, 1, explain);
    assert.equal(res.pass, false, explain);
    const run = res.runs[0];
    assert.equal(run.counts_at_ramp.ready, SESSIONS, explain);
    const x = run.derived.fanout.rounds[0];
    assert.equal(x.error, null, explain);
    assert.equal(x.expected, SESSIONS);
    assert.equal(x.received, 0);
    assert.equal(x.missing, SESSIONS);
    assert.equal(x.complete, false);
    assert.ok(run.failures.some((f) => /did not receive the update/.test(f)), JSON.stringify(run.failures));
  });
});
