// Phoenix channels over msgpack (vsn 3.0.0, device-protocol §7): the official `phoenix` client
// with an @msgpack/msgpack encoder/decoder (with and without permessage-deflate), plus exact
// frames from the raw client: the §7 heartbeat bytes, integer refs, str/bin equivalence,
// extension types passed through, and the close codes for text frames and garbage.
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { encode as mpEncode } from '@msgpack/msgpack';
import { startGateway, gwTest, sleep } from './lib/gateway.mjs';
import { wsConnect } from './lib/rawws.mjs';
import { connectPhx, assertServes, DEVICE_JOIN, CONSOLE_JOIN, EXTENSIONS_JOIN } from './lib/phx.mjs';

const OK = { status: 'ok', response: {} };
const UNMATCHED = { reason: 'unmatched topic' };
// device-protocol §7: heartbeat with ref "7".
const HEARTBEAT_7 = Buffer.from('95c0a137a770686f656e6978a9686561727462656174' + '80', 'hex');

describe('phoenix msgpack', () => {
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

    it(`${tag} official client: heartbeat, joins and unmatched topics`, async () => {
      const c = await connectPhx(gw.port, { msgpack: true, perMessageDeflate });
      try {
        assert.deepEqual(await c.heartbeat(), OK);
        const d = await c.join('device', DEVICE_JOIN);
        assert.equal(d.status, 'ok', JSON.stringify(d.response));
        assert.deepEqual(d.response, {});
        const con = await c.join('console', CONSOLE_JOIN);
        assert.equal(con.status, 'ok');
        assert.deepEqual(con.response, {});
        const ext = await c.join('extensions', EXTENSIONS_JOIN);
        assert.equal(ext.status, 'ok');
        assert.deepEqual(ext.response, [], 'an empty msgpack array, not a map');
        const bad = await c.join('device:123', {});
        assert.equal(bad.status, 'error');
        assert.deepEqual(bad.response, UNMATCHED);
        const ref = c.push('device', 'fwup_progress', { value: 3 }, { joinRef: d.channel.joinRef() });
        assert.equal(await c.anyWithRef(ref, 500), null, 'a device push gets no reply');
        assert.equal(await c.leave(con.channel), 'ok');
        assert.deepEqual(await c.heartbeat(), OK);
        assert.equal(c.closed, false);
      } finally {
        await c.disconnect();
      }
    });

    it(`${tag} official client: its own heartbeats keep the socket open`, async () => {
      const c = await connectPhx(gw.port, { msgpack: true, perMessageDeflate, heartbeatIntervalMs: 200 });
      try {
        await sleep(1200);
        assert.equal(c.closed, false);
        const replies = c.messages.filter((m) => m.topic === 'phoenix' && m.event === 'phx_reply');
        assert.ok(replies.length >= 3, `${replies.length} heartbeat replies`);
      } finally {
        await c.disconnect();
      }
    });
  }

  it('raw: the §7 heartbeat bytes get the §7 reply', async () => {
    const conn = await wsConnect(gw.port, { vsn: '3.0.0' });
    try {
      conn.sendBinary(HEARTBEAT_7);
      assert.deepEqual(await conn.recvMsgpack(), [null, '7', 'phoenix', 'phx_reply', OK]);
    } finally {
      conn.destroy();
    }
  });

  it('raw: integer refs come back as strings', async () => {
    const conn = await wsConnect(gw.port, { vsn: '3.0.0' });
    try {
      conn.sendMsgpack([null, 7, 'phoenix', 'heartbeat', {}]);
      assert.deepEqual(await conn.recvMsgpack(), [null, '7', 'phoenix', 'phx_reply', OK]);
      conn.sendMsgpack([1, 1, 'device', 'phx_join', DEVICE_JOIN]);
      assert.deepEqual(await conn.recvMsgpack(), ['1', '1', 'device', 'phx_reply', OK]);
      conn.sendMsgpack([2, 300, 'console', 'phx_join', CONSOLE_JOIN]);
      assert.deepEqual(await conn.recvMsgpack(), ['2', '300', 'console', 'phx_reply', OK]);
      conn.sendMsgpack([2, 301, 'console', 'phx_leave', {}]);
      assert.deepEqual(await conn.recvMsgpack(), ['2', '301', 'console', 'phx_reply', OK]);
      assert.deepEqual(await conn.recvMsgpack(), ['2', '2', 'console', 'phx_close', {}]);
    } finally {
      conn.destroy();
    }
  });

  it('raw: bin is read like str, and replies use str', async () => {
    const conn = await wsConnect(gw.port, { vsn: '3.0.0' });
    try {
      const b = (s) => new Uint8Array(Buffer.from(s));
      conn.sendMsgpack([null, b('8'), b('phoenix'), b('heartbeat'), {}]);
      // @msgpack/msgpack decodes bin as Uint8Array: deepEqual with strings proves str.
      assert.deepEqual(await conn.recvMsgpack(), [null, '8', 'phoenix', 'phx_reply', OK]);
      conn.sendMsgpack([b('1'), b('9'), b('device'), b('phx_join'), DEVICE_JOIN]);
      assert.deepEqual(await conn.recvMsgpack(), ['1', '9', 'device', 'phx_reply', OK]);
    } finally {
      conn.destroy();
    }
  });

  it('raw: payloads with extension types (timestamps) and all value kinds are accepted', async () => {
    const conn = await wsConnect(gw.port, { vsn: '3.0.0' });
    try {
      conn.sendMsgpack(['1', '1', 'device', 'phx_join', DEVICE_JOIN]);
      assert.deepEqual(await conn.recvMsgpack(), ['1', '1', 'device', 'phx_reply', OK]);
      const payload = {
        status: 'received',
        at: new Date(), // timestamp extension, type -1
        f: 1.5,
        neg: -100000,
        big: 2 ** 40,
        raw: new Uint8Array([0, 255]),
        nested: { list: [true, false, null, 'x'] },
      };
      conn.sendMsgpack(['1', '2', 'device', 'status_update', payload]);
      conn.sendMsgpack(['1', '3', 'device', 'fwup_progress', { stage: 'updating', value: 57 }]);
      conn.sendMsgpack([null, '4', 'phoenix', 'heartbeat', {}]);
      assert.deepEqual(await conn.recvMsgpack(), [null, '4', 'phoenix', 'phx_reply', OK]);
    } finally {
      conn.destroy();
    }
  });

  it('raw: a 2.0.0 socket speaks JSON and a 3.0.0 socket msgpack on /device-socket too', async () => {
    const conn = await wsConnect(gw.port, { path: '/device-socket/websocket?vsn=3.0.0' });
    try {
      conn.sendBinary(HEARTBEAT_7);
      assert.deepEqual(await conn.recvMsgpack(), [null, '7', 'phoenix', 'phx_reply', OK]);
    } finally {
      conn.destroy();
    }
  });

  async function expectCloseAfter(fn, codes) {
    const conn = await wsConnect(gw.port, { vsn: '3.0.0' });
    try {
      await fn(conn);
      const c = await conn.expectClose(4000);
      const want = Array.isArray(codes) ? codes : [codes];
      assert.ok(want.includes(c.code), `close code ${c.code} (${c.reason}), want ${want.join(' or ')}`);
      assert.ok(c.tcpClosed, 'server closed the TCP connection');
    } finally {
      conn.destroy();
    }
    await assertServes(gw.port, { msgpack: true });
  }

  it('raw: a text frame on a msgpack socket → 1003', async () => {
    await expectCloseAfter((c) => c.sendText('[null,"1","phoenix","heartbeat",{}]'), 1003);
  });

  it('raw: garbage bytes → 1007', async () => {
    await expectCloseAfter((c) => c.sendBinary(Buffer.from([0xc1])), 1007); // never-used byte
    await expectCloseAfter((c) => c.sendBinary(Buffer.from([0x95, 0xc0, 0xa1])), 1007); // truncated
    await expectCloseAfter((c) => c.sendBinary(Buffer.concat([HEARTBEAT_7, Buffer.from([0x00])])), 1007); // trailing
  });

  it('raw: a msgpack value that is not a 5-element envelope closes the socket', async () => {
    const codes = [1002, 1003, 1007, 1008, 1011];
    await expectCloseAfter((c) => c.sendBinary(Buffer.from(mpEncode([null, '1', 'phoenix', 'heartbeat']))), codes);
    await expectCloseAfter((c) => c.sendBinary(Buffer.from(mpEncode({ topic: 'phoenix' }))), codes);
  });

  it('raw: deeply nested payloads do not crash the gateway', async () => {
    // 100 000 nested one-element arrays: a recursive decoder would overflow its stack.
    const depth = 100000;
    const head = Buffer.from('95c0a131a6646576696365a6666f6f626172', 'hex'); // [nil,"1","device","foobar",
    const nest = Buffer.alloc(depth, 0x91);
    const frame = Buffer.concat([head, nest, Buffer.from([0xc0])]);
    const conn = await wsConnect(gw.port, { vsn: '3.0.0' });
    try {
      conn.sendBinary(frame);
      // Either refused (close) or ignored (unjoined topic → unmatched reply); never a crash.
      const m = await conn.readMessage(4000);
      assert.ok(m.type === 'close' || m.type === 'binary', m.type);
    } finally {
      conn.destroy();
    }
    await assertServes(gw.port, { msgpack: true });
  });

  it('still serves a good Phoenix client after all of the above', async () => {
    await assertServes(gw.port, { msgpack: true });
    await assertServes(gw.port);
  });
});
