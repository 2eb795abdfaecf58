// The process model (architecture §2): N workers, each reported in the log with its pid; a
// killed worker is respawned by the master while the other worker's sessions live on and new
// connections keep succeeding; SIGTERM makes the whole gateway exit 0 without leaving workers.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe } from 'node:test';
import { startGateway, gwTest, sleep, waitFor } from './lib/gateway.mjs';
import { fetchMetrics, metric, waitMetric } from './lib/metrics.mjs';
import { connectPhx, CONSOLE_JOIN, DEVICE_JOIN } from './lib/phx.mjs';

// Concurrent sessions need distinct devices: a device's newer connection closes its older one.
const DEVICES = ['device-1', 'device-2', 'device-3', 'device-4', 'device-5'].concat(
  Array.from({ length: 35 }, (_, i) => `device-${i + 6}`),
);

/** True while `pid` exists and is not a zombie. */
function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

async function session(port, i) {
  const c = await connectPhx(port, { device: DEVICES[i % DEVICES.length] });
  const j = await c.join('device', DEVICE_JOIN);
  assert.equal(j.status, 'ok', `session ${i} join: ${JSON.stringify(j.response)}`);
  assert.equal((await c.heartbeat()).status, 'ok');
  return c;
}

describe('workers', () => {
  let gw;
  const it = gwTest(() => gw);
  const clients = [];
  before(async () => {
    gw = await startGateway({ workers: 2, allowRespawn: true });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.disconnect()));
    await gw?.stop();
  });

  it('each worker reports worker_started with its own pid and listens', async () => {
    const pids = gw.workerPids();
    assert.equal(pids.size, 2, `worker indices: ${[...pids.keys()]}`);
    const set = new Set(pids.values());
    assert.equal(set.size, 2, 'distinct pids');
    for (const pid of set) {
      assert.ok(pid > 0 && pid !== gw.proc.pid, `worker pid ${pid} is not the master's`);
      assert.ok(alive(pid), `worker ${pid} alive`);
    }
    assert.equal(gw.events('listening').length, 2);
  });

  it('a SIGKILLed worker is respawned; the other sessions live on; new connections succeed', async () => {
    for (let i = 0; i < 20; i++) clients.push(await session(gw.port, i));
    const pidsBefore = gw.workerPids();
    const [victimIdx, victimPid] = [...pidsBefore.entries()][0];
    const logMark = gw.log().length;

    process.kill(victimPid, 'SIGKILL');
    // Let the kernel tear down the dead worker's sockets (its listener leaves the group).
    await sleep(200);

    // New connections keep working while the master respawns the worker.
    for (let i = 20; i < 30; i++) clients.push(await session(gw.port, i));

    const line = await gw.waitForLog(new RegExp(`event=worker_started\\b.*\\bworker=${victimIdx}\\b`), 5000, logMark);
    const newPid = gw.workerPids().get(victimIdx);
    assert.ok(newPid && newPid !== victimPid, `respawned with a new pid: ${line}`);
    await waitFor(() => alive(newPid), 2000, `new worker ${newPid} alive`);
    assert.ok(!alive(victimPid), 'the killed worker is gone');

    // Sessions held by the killed worker were closed; all others still answer.
    const first = clients.slice(0, 20);
    await sleep(500);
    const closed = first.filter((c) => c.closed);
    const open = first.filter((c) => !c.closed);
    assert.ok(closed.length >= 1, 'some sessions were on the killed worker (20 sessions over 2 workers)');
    assert.ok(open.length >= 1, 'some sessions were on the surviving worker');
    for (const c of open) assert.equal((await c.heartbeat()).status, 'ok');
    for (const c of clients.slice(20)) {
      if (!c.closed) assert.equal((await c.heartbeat()).status, 'ok');
    }

    // And after the respawn, 10 more (some land on the new worker).
    for (let i = 30; i < 40; i++) clients.push(await session(gw.port, i));
    const other = [...pidsBefore.entries()].find(([idx]) => idx !== victimIdx);
    assert.equal(gw.workerPids().get(other[0]), other[1], 'the surviving worker was not restarted');
  });
});

describe('workers: the gauges of a killed worker', () => {
  let gw, admin;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ workers: 1, allowRespawn: true });
    admin = gw.admin;
  });
  after(async () => {
    await gw?.stop();
  });

  it('fall to 0 when it dies with sessions, consoles and scrollback; its counters carry on', async () => {
    const c = await connectPhx(gw.port, { device: 'device-1' });
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const con = await c.join('console', CONSOLE_JOIN);
      assert.equal(con.status, 'ok');
      con.channel.push('up', { data: 'iex(1)> \n' });
      await waitMetric(admin, 'nhgw_consoles', 1);
      await waitFor(async () => metric(await fetchMetrics(admin), 'nhgw_console_scrollback_bytes') > 0, 3000,
        'scrollback allocated');
      await waitMetric(admin, 'nhgw_sessions', 1);
      const upgrades = metric(await fetchMetrics(admin), 'nhgw_upgrades_total');
      assert.ok(upgrades >= 1);

      const [idx, pid] = [...gw.workerPids().entries()][0];
      const mark = gw.log().length;
      process.kill(pid, 'SIGKILL');
      await gw.waitForLog(new RegExp(`event=worker_started\\b.*\\bworker=${idx}\\b`), 5000, mark);
      for (const g of ['nhgw_sessions', 'nhgw_consoles', 'nhgw_console_operators', 'nhgw_console_scrollback_bytes'])
        await waitMetric(admin, g, 0);
      assert.equal(metric(await fetchMetrics(admin), 'nhgw_upgrades_total'), upgrades, 'counters survive the worker');
    } finally {
      await c.disconnect();
    }
  });
});

describe('workers: SIGTERM', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ workers: 2 });
  });
  after(async () => {
    await gw?.stop({ strict: false });
  });

  it('SIGTERM closes the sessions and exits 0 without leaving workers behind', async () => {
    const pids = [...gw.workerPids().values()];
    const clients = [];
    for (let i = 0; i < 4; i++) clients.push(await session(gw.port, i));
    gw.proc.kill('SIGTERM');
    const exit = await Promise.race([gw.exited, sleep(10000).then(() => null)]);
    try {
      assert.ok(exit, 'exited within 10 s of SIGTERM');
      assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null });
      for (const c of clients) assert.ok(await c.waitClose(2000), 'session closed');
      await waitFor(() => pids.every((p) => !alive(p)), 2000, `workers ${pids} gone`);
    } finally {
      await Promise.all(clients.map((c) => c.disconnect()));
    }
  });
});
