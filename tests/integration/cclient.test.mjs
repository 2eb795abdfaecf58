// The project's own C device client against the real gateway: `nhbench smoke` (bench/) opens a
// few hundred mTLS sessions with a unique certificate each, JSON and msgpack, with and without
// permessage-deflate, joins `device` and `extensions` with link's payloads, heartbeats, checks
// every reply byte for byte, drops every session of a second set at once and brings them back with
// nerves_hub_link's reconnect backoff (storm), then runs the handshake scenarios (full, resumed, TLS
// only, TLS 1.3).
// Here we only assert its exit status and its JSON result; the checks themselves live in C.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { startGateway } from './lib/gateway.mjs';
import { NHBENCH_BIN, RUN_TIMEOUT_MS, explainRun, pkiArgs, runNhbench } from './lib/nhbench.mjs';

const SESSIONS = 200;

async function smoke(gw, extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'nhbench-it-'));
  const json = join(dir, 'smoke.json');
  const args = [
    'smoke',
    '--target', `${gw.host}:${gw.port}`,
    '--gateway-pid', String(gw.proc.pid),
    '--sessions', String(SESSIONS),
    ...pkiArgs(),
    '--json', json,
    '--quiet',
    ...extra,
  ];
  const r = await runNhbench(args);
  const explain = explainRun(args, r);
  return { r, json, explain };
}

function checkResult({ r, json, explain }, { inflated = false } = {}) {
  assert.equal(r.code, 0, explain);
  assert.ok(existsSync(json), `no JSON result\n${explain}`);
  const res = JSON.parse(readFileSync(json, 'utf8'));
  assert.equal(res.scenario, 'smoke');
  assert.equal(res.pass, true, explain);
  assert.equal(res.errors, 0, explain);
  assert.equal(res.sessions_target, SESSIONS);
  assert.equal(res.sessions_joined, SESSIONS, explain);
  assert.equal(res.heartbeat_sessions, SESSIONS, explain);
  assert.ok(res.heartbeats_answered > 0, explain);
  const names = res.runs.map((x) => x.scenario);
  for (const s of ['hold', 'storm', 'tls-hold', 'handshake', 'tls-handshake']) assert.ok(names.includes(s), `${s} ran`);
  for (const run of res.runs) {
    assert.equal(run.pass, true, `${run.scenario}: ${run.failures.join('; ')}`);
    assert.equal(run.errors_total, 0, `${run.scenario}: ${JSON.stringify(run.errors)}`);
  }
  const hold = res.runs[0];
  assert.equal(hold.counts.device_joined, SESSIONS);
  assert.equal(hold.counts.extensions_joined, SESSIONS);
  assert.equal(hold.counts.pmd, SESSIONS / 2, 'deflate offered by every other session and always accepted');
  if (inflated) assert.ok(hold.counts.inflated > 0, 'compressed server messages were received and inflated');
  const resumed = res.runs.find((x) => x.scenario === 'handshake' && x.config.resume);
  assert.ok(resumed.counts.tls_resumed > 0, 'TLS 1.2 ticket resumption works');
  checkStorm(res.runs.find((x) => x.scenario === 'storm'));
  return res;
}

// Every session of the storm run was dropped at once and every device came back, joined again and
// had a heartbeat answered on its new connection; the JSON carries the curves the plots are made of.
function checkStorm(storm) {
  const st = storm.derived.storm;
  assert.equal(storm.config.sessions, SESSIONS);
  assert.equal(storm.counts_at_drop.active, SESSIONS, 'every session was open before the drop');
  assert.equal(st.dropped, SESSIONS);
  assert.equal(st.back, SESSIONS, 'every device came back');
  assert.equal(st.all_back, true);
  assert.equal(storm.counts.recovered, SESSIONS);
  assert.equal(storm.counts.device_joined, 2 * SESSIONS, 'each device joined twice: before and after the drop');
  assert.equal(storm.counts.extensions_joined, 2 * SESSIONS);
  assert.equal(storm.counts_at_end_of_hold.active, SESSIONS, 'every reconnected session was still open at the end');
  assert.ok(storm.counts.heartbeat_sessions - storm.counts_at_drop.heartbeat_sessions >= SESSIONS,
    'every reconnected session had a heartbeat answered');
  assert.ok(st.tls_resumed > 0, 'reconnects resumed their TLS sessions');
  assert.equal(st.attempts, SESSIONS, 'no reconnect attempt failed');
  assert.deepEqual(st.errors_until_back, {});
  // link's first reconnect waits 1-1.5 s, so nobody may be back sooner
  assert.ok(storm.latency_us.recover.min >= 1000000, `recovery ${storm.latency_us.recover.min} us is before link's backoff`);
  const tl = storm.timeline;
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  assert.equal(sum(tl.ready), 2 * SESSIONS, 'the timeline counts every join');
  assert.equal(sum(tl.tls), 2 * SESSIONS);
  assert.equal(tl.active.length, tl.ready.length);
  assert.ok(tl.marks_s.drop_s < tl.marks_s.back_s);
}

describe('C client (nhbench smoke)', () => {
  let gw = null;
  after(async () => {
    await gw?.stop({ strict: false });
  });

  const run = (name, gwOpts, check) =>
    test(name, { timeout: RUN_TIMEOUT_MS + 30000 }, async () => {
      assert.ok(existsSync(NHBENCH_BIN), `${NHBENCH_BIN} is missing: build it (make) or set NHBENCH_BIN`);
      gw = await startGateway({ logLevel: 'info', ...gwOpts });
      try {
        check(await smoke(gw));
        const errors = gw.events().filter((e) => e.level === 'error');
        assert.deepEqual(errors.map((e) => e.line), [], 'no error lines in the gateway log');
      } catch (e) {
        gw.dumpLog(`test failed: ${name}`);
        throw e;
      }
      await gw.stop();
      gw = null;
    });

  run('every scenario passes against one worker', { workers: 1 }, (s) => checkResult(s));
  // --deflate-min 0: every server message is compressed, so the client's inflate path and the
  // byte-exact comparison of inflated replies are exercised too.
  run('every scenario passes against two workers, all output compressed', { workers: 2, args: ['--deflate-min', '0'] },
    (s) => checkResult(s, { inflated: true }));
  // The client must notice when the gateway misbehaves: a gateway that declines permessage-deflate
  // is valid for link but not what nhgw promises, and strict smoke reports it and exits 1.
  run('a declined permessage-deflate fails the smoke run', { workers: 1, args: ['--deflate', 'false'] }, ({ r, json, explain }) => {
    assert.equal(r.code, 1, explain);
    const res = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(res.pass, false);
    assert.equal(res.runs[0].errors.pmd, SESSIONS / 2, explain);
    assert.equal(res.runs[0].counts.ready, SESSIONS / 2, 'sessions that did not offer deflate still work');
  });
});
