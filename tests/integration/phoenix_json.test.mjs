// Phoenix channels over JSON (vsn 2.0.0), driven by the official `phoenix` JavaScript client
// (with and without permessage-deflate) and, for exact frames, by the raw client:
// heartbeats, joins of device/console/extensions, unmatched topics, silent device pushes,
// leave → phx_close, re-join and the channel limit (device-protocol §1.5, §3.1–§3.5, §8).
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { startGateway, gwTest, sleep } from './lib/gateway.mjs';
import { wsConnect } from './lib/rawws.mjs';
import { connectPhx, assertServes, DEVICE_JOIN, CONSOLE_JOIN, EXTENSIONS_JOIN } from './lib/phx.mjs';

const UNMATCHED = { reason: 'unmatched topic' };

describe('phoenix JSON (official client)', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    await gw?.stop();
  });

  for (const perMessageDeflate of [true, false]) {
    const tag = perMessageDeflate ? '[deflate]' : '[no deflate]';

    it(`${tag} heartbeat replies ok on both socket paths`, async () => {
      for (const path of ['/socket', '/device-socket']) {
        const c = await connectPhx(gw.port, { perMessageDeflate, path });
        try {
          assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
          assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
        } finally {
          await c.disconnect();
        }
      }
    });

    it(`${tag} the client's own heartbeats keep the socket open`, async () => {
      const c = await connectPhx(gw.port, { perMessageDeflate, heartbeatIntervalMs: 200 });
      try {
        await sleep(1500);
        assert.equal(c.closed, false, 'the client would close on a missed heartbeat reply');
        const replies = c.messages.filter((m) => m.topic === 'phoenix' && m.event === 'phx_reply');
        assert.ok(replies.length >= 4, `${replies.length} heartbeat replies`);
        for (const r of replies) assert.equal(r.payload.status, 'ok');
      } finally {
        await c.disconnect();
      }
    });

    it(`${tag} device, console and extensions join ok`, async () => {
      const c = await connectPhx(gw.port, { perMessageDeflate });
      try {
        const d = await c.join('device', DEVICE_JOIN);
        assert.equal(d.status, 'ok', JSON.stringify(d.response));
        assert.deepEqual(d.response, {});
        const con = await c.join('console', CONSOLE_JOIN);
        assert.equal(con.status, 'ok', JSON.stringify(con.response));
        assert.deepEqual(con.response, {});
        const ext = await c.join('extensions', EXTENSIONS_JOIN);
        assert.equal(ext.status, 'ok', JSON.stringify(ext.response));
        assert.deepEqual(ext.response, [], 'the list of extensions wanted (device-protocol §3.5): none standalone');
        assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
      } finally {
        await c.disconnect();
      }
    });

    it(`${tag} joining device:<id> or an unknown topic is an error "unmatched topic"`, async () => {
      const c = await connectPhx(gw.port, { perMessageDeflate });
      try {
        for (const topic of ['device:123', 'device:', 'foo', 'console:1']) {
          const r = await c.join(topic, {});
          assert.equal(r.status, 'error', topic);
          assert.deepEqual(r.response, UNMATCHED, topic);
        }
        assert.equal(c.closed, false);
        assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      } finally {
        await c.disconnect();
      }
    });

    it(`${tag} a push on a topic that is not joined gets an error reply "unmatched topic"`, async () => {
      const c = await connectPhx(gw.port, { perMessageDeflate });
      try {
        for (const [topic, event] of [['device', 'fwup_progress'], ['console', 'up'], ['nope', 'x']]) {
          const ref = c.push(topic, event, { value: 1 }, { joinRef: '99' });
          const r = await c.reply(ref);
          assert.ok(r, `a reply for ${topic}`);
          assert.equal(r.topic, topic);
          assert.deepEqual(r.payload, { status: 'error', response: UNMATCHED });
        }
      } finally {
        await c.disconnect();
      }
    });

    it(`${tag} device pushes get no reply`, async () => {
      const c = await connectPhx(gw.port, { perMessageDeflate });
      try {
        const { channel } = await c.join('device', DEVICE_JOIN);
        const jr = channel.joinRef();
        const refs = [
          c.push('device', 'fwup_progress', { stage: 'updating', value: 57 }, { joinRef: jr }),
          c.push('device', 'status_update', { status: 'received' }, { joinRef: jr }),
          c.push('device', 'report_network_interface', { interface: 'eth0' }, { joinRef: jr }),
          // Old Slipstream releases send a null join_ref on every push (device-protocol §3.1).
          c.push('device', 'firmware_validated', {}, { joinRef: null }),
          // A stale join_ref is dropped silently.
          c.push('device', 'fwup_progress', { value: 1 }, { joinRef: '12345' }),
        ];
        await sleep(500);
        for (const ref of refs) {
          assert.equal(c.messages.find((m) => m.ref === ref), undefined, `no message with ref ${ref}`);
        }
        assert.equal(c.closed, false);
        assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
      } finally {
        await c.disconnect();
      }
    });

    it(`${tag} leave replies ok`, async () => {
      const c = await connectPhx(gw.port, { perMessageDeflate });
      try {
        const con = await c.join('console', CONSOLE_JOIN);
        assert.equal(con.status, 'ok');
        assert.equal(await c.leave(con.channel), 'ok');
        // Left: a push on it is unmatched again; a new join works.
        const ref = c.push('console', 'up', { data: 'x' }, { joinRef: con.channel.joinRef() });
        assert.deepEqual((await c.reply(ref))?.payload, { status: 'error', response: UNMATCHED });
        assert.equal((await c.join('console', CONSOLE_JOIN)).status, 'ok');
      } finally {
        await c.disconnect();
      }
    });
  }

  it('raw: join, heartbeat and leave frames are exact', async () => {
    const conn = await wsConnect(gw.port);
    try {
      conn.sendJson(['1', '1', 'device', 'phx_join', DEVICE_JOIN]);
      assert.deepEqual(await conn.recvJson(), ['1', '1', 'device', 'phx_reply', { status: 'ok', response: {} }]);
      conn.sendJson(['2', '2', 'console', 'phx_join', CONSOLE_JOIN]);
      assert.deepEqual(await conn.recvJson(), ['2', '2', 'console', 'phx_reply', { status: 'ok', response: {} }]);
      conn.sendJson([null, '11', 'phoenix', 'heartbeat', {}]);
      assert.deepEqual(await conn.recvJson(), [null, '11', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
      conn.sendJson(['2', '20', 'console', 'phx_leave', {}]);
      assert.deepEqual(await conn.recvJson(), ['2', '20', 'console', 'phx_reply', { status: 'ok', response: {} }]);
      assert.deepEqual(await conn.recvJson(), ['2', '2', 'console', 'phx_close', {}]);
      conn.sendJson(['4', '4', 'device:7', 'phx_join', {}]);
      assert.deepEqual(await conn.recvJson(), [null, '4', 'device:7', 'phx_reply', { status: 'error', response: UNMATCHED }]);
      assert.equal(await conn.silence(300), null, 'nothing else is sent');
    } finally {
      conn.destroy();
    }
  });

  it('raw: joining a joined topic again closes the old join first', async () => {
    const conn = await wsConnect(gw.port);
    try {
      conn.sendJson(['1', '1', 'device', 'phx_join', DEVICE_JOIN]);
      assert.deepEqual(await conn.recvJson(), ['1', '1', 'device', 'phx_reply', { status: 'ok', response: {} }]);
      conn.sendJson(['3', '3', 'device', 'phx_join', DEVICE_JOIN]);
      assert.deepEqual(await conn.recvJson(), ['1', '1', 'device', 'phx_close', {}]);
      assert.deepEqual(await conn.recvJson(), ['3', '3', 'device', 'phx_reply', { status: 'ok', response: {} }]);
      // The old join_ref is stale now: its pushes are dropped silently; the new one works.
      conn.sendJson(['1', '4', 'device', 'fwup_progress', { value: 5 }]);
      conn.sendJson(['3', '5', 'device', 'fwup_progress', { value: 6 }]);
      conn.sendJson([null, '6', 'phoenix', 'heartbeat', {}]);
      assert.deepEqual(await conn.recvJson(), [null, '6', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
    } finally {
      conn.destroy();
    }
  });

  it('raw: joins sent back to back are all answered', async () => {
    const conn = await wsConnect(gw.port);
    try {
      conn.sendJson(['1', '1', 'device', 'phx_join', DEVICE_JOIN]);
      conn.sendJson(['2', '2', 'console', 'phx_join', CONSOLE_JOIN]);
      conn.sendJson(['4', '4', 'extensions', 'phx_join', EXTENSIONS_JOIN]);
      conn.sendJson([null, '5', 'phoenix', 'heartbeat', {}]);
      const got = new Map();
      while (got.size < 4) {
        const m = await conn.recvJson();
        assert.equal(m[3], 'phx_reply', JSON.stringify(m));
        got.set(m[1], m);
      }
      for (const ref of ['1', '2', '4', '5']) assert.equal(got.get(ref)?.[4]?.status, 'ok', `reply ${ref}`);
    } finally {
      conn.destroy();
    }
  });

  it('still serves a good Phoenix client after all of the above', async () => {
    await assertServes(gw.port);
  });
});

describe('phoenix JSON --max-channels 2', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ args: ['--max-channels', '2'] });
  });
  after(async () => {
    await gw?.stop();
  });

  it('a third join is an error "too many channels joined"', async () => {
    const c = await connectPhx(gw.port);
    try {
      assert.equal((await c.join('device', DEVICE_JOIN)).status, 'ok');
      const con = await c.join('console', CONSOLE_JOIN);
      assert.equal(con.status, 'ok');
      const ext = await c.join('extensions', EXTENSIONS_JOIN);
      assert.equal(ext.status, 'error');
      assert.deepEqual(ext.response, { reason: 'too many channels joined' });
      assert.equal(c.closed, false);
      assert.deepEqual(await c.heartbeat(), { status: 'ok', response: {} });
    } finally {
      await c.disconnect();
    }
  });

  it('raw: re-joining a joined topic does not count twice; leaving frees a slot', async () => {
    const conn = await wsConnect(gw.port);
    try {
      conn.sendJson(['1', '1', 'device', 'phx_join', DEVICE_JOIN]);
      assert.equal((await conn.recvJson())[4].status, 'ok');
      conn.sendJson(['2', '2', 'console', 'phx_join', CONSOLE_JOIN]);
      assert.equal((await conn.recvJson())[4].status, 'ok');
      conn.sendJson(['3', '3', 'console', 'phx_join', CONSOLE_JOIN]);
      assert.deepEqual(await conn.recvJson(), ['2', '2', 'console', 'phx_close', {}]);
      assert.deepEqual(await conn.recvJson(), ['3', '3', 'console', 'phx_reply', { status: 'ok', response: {} }]);
      conn.sendJson(['3', '4', 'console', 'phx_leave', {}]);
      assert.deepEqual(await conn.recvJson(), ['3', '4', 'console', 'phx_reply', { status: 'ok', response: {} }]);
      assert.deepEqual(await conn.recvJson(), ['3', '3', 'console', 'phx_close', {}]);
      conn.sendJson(['5', '5', 'extensions', 'phx_join', EXTENSIONS_JOIN]);
      assert.equal((await conn.recvJson())[4].status, 'ok');
    } finally {
      conn.destroy();
    }
  });

  it('still serves a good Phoenix client', async () => {
    await assertServes(gw.port);
  });
});
