// RFC 6455 framing against a JSON (vsn 2.0.0) socket, with hand-built frames: control frames,
// the close handshake, masking, UTF-8 validation, fragmentation, frame/message size limits
// (--max-frame / --max-message 64KiB) and the close code for each violation
// (device-protocol §1.5, §1.7; architecture §4).
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { startGateway, gwTest } from './lib/gateway.mjs';
import { OP, wsConnect, rawHeartbeat, closePayload, deflateMessage } from './lib/rawws.mjs';
import { assertServes } from './lib/phx.mjs';

const LIMIT = 64 * 1024;
const HB_REPLY = (ref) => [null, ref, 'phoenix', 'phx_reply', { status: 'ok', response: {} }];

/** A JSON heartbeat whose text is exactly `size` bytes (padding in the payload). */
function heartbeatOfSize(size, ref = '1') {
  const base = JSON.stringify([null, ref, 'phoenix', 'heartbeat', { pad: '' }]).length;
  assert.ok(size >= base);
  const text = JSON.stringify([null, ref, 'phoenix', 'heartbeat', { pad: 'x'.repeat(size - base) }]);
  assert.equal(Buffer.byteLength(text), size);
  return Buffer.from(text);
}

describe('websocket framing', () => {
  let gw;
  const it = gwTest(() => gw);
  before(async () => {
    gw = await startGateway({ args: ['--max-frame', '64KiB', '--max-message', '64KiB', '--max-inflated', '64KiB'] });
  });
  after(async () => {
    await gw?.stop();
  });

  /** Connect, run `fn(conn)` which should provoke a close, assert the code, check the server. */
  async function expectCloseAfter(fn, codes, connectOpts = {}) {
    const conn = await wsConnect(gw.port, connectOpts);
    try {
      await fn(conn);
      const c = await conn.expectClose(4000);
      const want = Array.isArray(codes) ? codes : [codes];
      assert.ok(want.includes(c.code), `close code ${c.code} (${c.reason}), want ${want.join(' or ')}`);
      assert.ok(c.tcpClosed, 'server closed the TCP connection after the close handshake');
    } finally {
      conn.destroy();
    }
    await assertServes(gw.port);
  }

  it('a JSON heartbeat gets the exact reply', async () => {
    const conn = await wsConnect(gw.port);
    assert.deepEqual(await rawHeartbeat(conn, '7'), HB_REPLY('7'));
    conn.destroy();
  });

  it('ping gets a pong with the same payload', async () => {
    const conn = await wsConnect(gw.port);
    for (const payload of [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(125, 0xab)]) {
      conn.ping(payload);
      const m = await conn.readMessage(3000);
      assert.equal(m.type, 'pong');
      assert.deepEqual(m.data, payload);
    }
    conn.destroy();
  });

  it('an unsolicited pong is ignored', async () => {
    const conn = await wsConnect(gw.port);
    conn.sendFrame({ opcode: OP.PONG, payload: Buffer.from('x') });
    assert.deepEqual(await rawHeartbeat(conn, '2'), HB_REPLY('2'));
    conn.destroy();
  });

  it('close 1000 is answered with close 1000 and the TCP connection is closed', async () => {
    const conn = await wsConnect(gw.port);
    conn.close(1000, 'bye');
    const c = await conn.expectClose(3000);
    assert.equal(c.code, 1000);
    assert.ok(c.tcpClosed);
  });

  it('a close without a status code is answered and the connection closed', async () => {
    const conn = await wsConnect(gw.port);
    conn.close(null);
    const c = await conn.expectClose(3000);
    assert.ok(c.code === null || c.code === 1000, `close code ${c.code}`);
    assert.ok(c.tcpClosed);
  });

  it('an unmasked client frame → 1002', async () => {
    await expectCloseAfter((c) => c.sendText(JSON.stringify([null, '1', 'phoenix', 'heartbeat', {}]), { mask: false }), 1002);
  });

  it('reserved opcodes → 1002', async () => {
    await expectCloseAfter((c) => c.sendFrame({ opcode: 3, payload: Buffer.from('x') }), 1002);
    await expectCloseAfter((c) => c.sendFrame({ opcode: 0xb, payload: Buffer.from('x') }), 1002);
  });

  it('RSV bits without a negotiated extension → 1002', async () => {
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.TEXT, rsv: 4, payload: heartbeatOfSize(60) }), 1002);
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.TEXT, rsv: 1, payload: heartbeatOfSize(60) }), 1002);
  });

  it('invalid control frames → 1002', async () => {
    // RFC 6455 §5.5: control frames are at most 125 bytes and never fragmented.
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.PING, payload: Buffer.alloc(126) }), 1002);
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.PING, fin: false, payload: Buffer.from('x') }), 1002);
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) }), 1002);
  });

  it('fragmentation errors → 1002', async () => {
    // A continuation frame with nothing to continue.
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.CONT, payload: Buffer.from('x') }), 1002);
    // A new data frame while a fragmented message is still open.
    await expectCloseAfter((c) => {
      c.sendFrame({ opcode: OP.TEXT, fin: false, payload: Buffer.from('[null,') });
      c.sendFrame({ opcode: OP.TEXT, payload: Buffer.from('"1"') });
    }, 1002);
  });

  it('invalid UTF-8 in a text frame → 1007', async () => {
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.TEXT, payload: Buffer.from([0x5b, 0xff, 0xfe, 0x5d]) }), 1007);
    // An overlong encoding and a UTF-16 surrogate are invalid too.
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.TEXT, payload: Buffer.from([0x22, 0xc0, 0xaf, 0x22]) }), 1007);
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.TEXT, payload: Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]) }), 1007);
  });

  it('a text message fragmented in 3 frames is reassembled (with a ping in between)', async () => {
    const conn = await wsConnect(gw.port);
    const msg = Buffer.from(JSON.stringify([null, '5', 'phoenix', 'heartbeat', { note: 'héllo wörld' }]));
    // Split inside the two-byte "é" so UTF-8 validation must work across fragments.
    const cut1 = msg.indexOf(Buffer.from('é')) + 1;
    const cut2 = cut1 + 10;
    conn.sendFrame({ opcode: OP.TEXT, fin: false, payload: msg.subarray(0, cut1) });
    conn.sendFrame({ opcode: OP.CONT, fin: false, payload: msg.subarray(cut1, cut2) });
    conn.ping(Buffer.from('mid'));
    conn.sendFrame({ opcode: OP.CONT, fin: true, payload: msg.subarray(cut2) });
    const pong = await conn.readMessage(3000);
    assert.equal(pong.type, 'pong');
    assert.deepEqual(pong.data, Buffer.from('mid'));
    assert.deepEqual(await conn.recvJson(3000), HB_REPLY('5'));
    conn.destroy();
  });

  it('bad JSON in a text frame → 1007', async () => {
    await expectCloseAfter((c) => c.sendText('[null,"1","phoenix","heartbeat",{}'), 1007);
    await expectCloseAfter((c) => c.sendText('not json'), 1007);
  });

  it('JSON that is not a 5-element envelope closes the socket', async () => {
    // The code is not pinned by the spec (NervesHub crashes the socket: 1011); any error close.
    const codes = [1002, 1003, 1007, 1008, 1011];
    await expectCloseAfter((c) => c.sendText('{"topic":"phoenix"}'), codes);
    await expectCloseAfter((c) => c.sendText('[null,"1","phoenix","heartbeat"]'), codes);
    await expectCloseAfter((c) => c.sendText('[null,"1","phoenix","heartbeat",{},6]'), codes);
  });

  it('deeply nested JSON does not crash the gateway', async () => {
    // 30 000 nested arrays in the payload: a recursive parser without a depth limit would
    // overflow its stack. Refused (close) or answered (unmatched topic), never a crash.
    const text = `[null,"1","nope","x",${'['.repeat(30000)}${']'.repeat(30000)}]`;
    const conn = await wsConnect(gw.port);
    try {
      conn.sendText(text);
      const m = await conn.readMessage(4000);
      assert.ok(m.type === 'close' || m.type === 'text', m.type);
    } finally {
      conn.destroy();
    }
    await assertServes(gw.port);
  });

  it('a binary frame on a JSON socket → 1003', async () => {
    await expectCloseAfter((c) => c.sendBinary(Buffer.from([0x95, 0xc0, 0xa1, 0x37])), 1003);
  });

  it('a frame of exactly --max-frame bytes is accepted', async () => {
    const conn = await wsConnect(gw.port);
    conn.sendFrame({ opcode: OP.TEXT, payload: heartbeatOfSize(LIMIT, '9') });
    assert.deepEqual(await conn.recvJson(5000), HB_REPLY('9'));
    conn.destroy();
  });

  it('a frame of --max-frame + 1 bytes → 1009', async () => {
    await expectCloseAfter((c) => c.sendFrame({ opcode: OP.TEXT, payload: heartbeatOfSize(LIMIT + 1) }), 1009);
  });

  it('a frame header announcing a huge length → 1009 at once', async () => {
    // Only the header is sent: the server must not wait for (or allocate) 2^62 bytes.
    await expectCloseAfter((c) => c.write(Buffer.from([0x81, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])), 1009);
  });

  it('a fragmented message of exactly --max-message bytes is accepted; one byte more → 1009', async () => {
    const conn = await wsConnect(gw.port);
    const ok = heartbeatOfSize(LIMIT, '11');
    conn.sendFrame({ opcode: OP.TEXT, fin: false, payload: ok.subarray(0, LIMIT / 2) });
    conn.sendFrame({ opcode: OP.CONT, payload: ok.subarray(LIMIT / 2) });
    assert.deepEqual(await conn.recvJson(5000), HB_REPLY('11'));
    conn.destroy();
    const big = heartbeatOfSize(LIMIT + 1);
    await expectCloseAfter((c) => {
      c.sendFrame({ opcode: OP.TEXT, fin: false, payload: big.subarray(0, LIMIT / 2) });
      c.sendFrame({ opcode: OP.CONT, payload: big.subarray(LIMIT / 2) });
    }, 1009);
  });

  it('a close frame with another code and a reason is answered', async () => {
    const conn = await wsConnect(gw.port);
    conn.sendFrame({ opcode: OP.CLOSE, payload: closePayload(1001, 'going away') });
    const c = await conn.expectClose(3000);
    assert.ok(c.code === 1001 || c.code === 1000, `close code ${c.code}`);
    assert.ok(c.tcpClosed);
  });

  describe('permessage-deflate', () => {
    const PMD = { extensions: 'permessage-deflate' };

    it('compressed messages (whole and fragmented) are inflated and answered', async () => {
      const conn = await wsConnect(gw.port, PMD);
      try {
        assert.equal(conn.pmd, true, 'deflate negotiated');
        conn.sendCompressed(OP.TEXT, Buffer.from(JSON.stringify([null, '1', 'phoenix', 'heartbeat', {}])));
        assert.deepEqual(await conn.recvJson(), HB_REPLY('1'));
        // No context takeover: the same message compressed again from a fresh window.
        conn.sendCompressed(OP.TEXT, Buffer.from(JSON.stringify([null, '2', 'phoenix', 'heartbeat', {}])));
        assert.deepEqual(await conn.recvJson(), HB_REPLY('2'));
        conn.sendCompressed(OP.TEXT, heartbeatOfSize(20000, '3'), { fragments: 3 });
        assert.deepEqual(await conn.recvJson(), HB_REPLY('3'));
        // Uncompressed messages stay legal on a deflate socket.
        assert.deepEqual(await rawHeartbeat(conn, '4'), HB_REPLY('4'));
      } finally {
        conn.destroy();
      }
    });

    it('a compressed message inflating to exactly --max-inflated is accepted', async () => {
      const conn = await wsConnect(gw.port, PMD);
      try {
        conn.sendCompressed(OP.TEXT, heartbeatOfSize(LIMIT, '5'));
        assert.deepEqual(await conn.recvJson(5000), HB_REPLY('5'));
      } finally {
        conn.destroy();
      }
    });

    it('a compressed message inflating past --max-inflated → 1009', async () => {
      await expectCloseAfter((c) => c.sendCompressed(OP.TEXT, heartbeatOfSize(LIMIT + 1)), 1009, PMD);
    });

    it('a deflate bomb (10 KB → 10 MiB) → 1009 without inflating it all', async () => {
      const bomb = deflateMessage(Buffer.concat([Buffer.from('[null,"1","phoenix","heartbeat",{"p":"'), Buffer.alloc(10 << 20, 0x61)]));
      assert.ok(bomb.length < 64 * 1024);
      await expectCloseAfter((c) => c.sendFrame({ opcode: OP.TEXT, rsv: 4, payload: bomb }), 1009, PMD);
    });

    it('RSV1 on a control or continuation frame → 1002', async () => {
      await expectCloseAfter((c) => c.sendFrame({ opcode: OP.PING, rsv: 4, payload: Buffer.from('x') }), 1002, PMD);
      await expectCloseAfter((c) => {
        const z = deflateMessage(JSON.stringify([null, '1', 'phoenix', 'heartbeat', {}]));
        c.sendFrame({ opcode: OP.TEXT, rsv: 4, fin: false, payload: z.subarray(0, 5) });
        c.sendFrame({ opcode: OP.CONT, rsv: 4, payload: z.subarray(5) });
      }, 1002, PMD);
    });

    it('corrupt deflate data closes the socket', async () => {
      await expectCloseAfter(
        (c) => c.sendFrame({ opcode: OP.TEXT, rsv: 4, payload: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x13]) }),
        [1002, 1007],
        PMD,
      );
    });
  });

  it('still serves a good Phoenix client after all of the above', async () => {
    await assertServes(gw.port);
  });
});
