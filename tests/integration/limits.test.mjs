// Admission limits (architecture §2): the per-worker accept token bucket delays connections past
// the burst instead of refusing them, and a worker out of file descriptors sheds connections
// (accept-and-close with its spare descriptor) without spinning, then recovers.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe } from 'node:test';
import { startGateway, gwTest, waitFor } from './lib/gateway.mjs';
import { connectTls, ClosedError } from './lib/rawws.mjs';
import { connectPhx, DEVICE_JOIN } from './lib/phx.mjs';

/** utime + stime of a process in clock ticks (100 per second on Linux). */
function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

describe('limits: accept rate', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ args: ['--accept-rate', '4', '--accept-burst', '3'] });
  });
  after(async () => gw?.stop());

  it('connections past the burst wait for tokens and are then served', async () => {
    // the readiness probe took one token; wait for the bucket to refill
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    const done = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const c = await connectTls(gw.port, 'device-1', { timeout: 10000 });
        const at = Date.now() - t0;
        c.destroy();
        return at;
      }),
    );
    done.sort((a, b) => a - b);
    // 3 immediately from the burst; the other 5 need 5 tokens at 4/s: about 1.25 s
    assert.ok(done[2] < 900, `the burst was served at once: ${done}`);
    assert.ok(done[7] >= 900, `the last connection waited for the bucket: ${done}`);
    assert.ok(done[7] < 8000, `every connection was eventually served: ${done}`);
  });
});

describe('limits: out of file descriptors', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    // a worker needs ~15 descriptors of its own; 40 leaves room for a couple of dozen sockets
    gw = await startGateway({ wrapper: ['prlimit', '--nofile=40:40'] });
  });
  after(async () => gw?.stop());

  it('sheds connections it cannot hold, does not spin, and serves again once descriptors free up', async () => {
    const pid = gw.workerPids().get(0);
    const before = cpuTicks(pid);
    const results = await Promise.all(
      Array.from({ length: 60 }, () =>
        connectTls(gw.port, 'device-1', { timeout: 8000 }).then(
          (c) => ({ ok: true, c }),
          (e) => ({ ok: false, why: String(e), closed: e instanceof ClosedError || /ECONNRESET|EPIPE|closed|disconnected|socket hang up/.test(String(e)) }),
        ),
      ),
    );
    const held = results.filter((r) => r.ok);
    const shed = results.filter((r) => !r.ok);
    assert.ok(held.length > 0 && held.length < 40, `some connections were held: ${held.length}`);
    assert.ok(shed.length > 0, 'the rest were shed');
    assert.ok(shed.every((r) => r.closed), `shed connections were closed, not left hanging: ${shed.map((r) => r.why)}`);
    await gw.waitForLog(/event=accept_emfile/, 3000);
    // while full and idle the worker must not busy-loop on the listening socket
    const t = cpuTicks(pid);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(cpuTicks(pid) - t < 30, `worker idle while out of descriptors (${cpuTicks(pid) - t} ticks/s)`);
    for (const r of held) r.c.destroy();
    // descriptors come back: a full Phoenix session works again
    await waitFor(
      async () => {
        try {
          const c = await connectPhx(gw.port, { device: 'device-2' });
          const j = await c.join('device', DEVICE_JOIN);
          await c.disconnect();
          return j.status === 'ok';
        } catch {
          return false;
        }
      },
      8000,
      'a session after descriptors were freed',
      200,
    );
    assert.ok(cpuTicks(pid) - before < 500, 'no spinning overall');
  });
});
