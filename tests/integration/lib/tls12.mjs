// A TLS 1.2 device connection that resumes by session ID only, as nerves_hub_link does (Erlang's
// ssl sends no session-ticket extension in TLS 1.2), for the session-store tests.
import { constants } from 'node:crypto';
import tls from 'node:tls';
import { device } from './certs.mjs';
import { HOST, parseLogLine, withTimeout } from './gateway.mjs';
import { upgradeRequest } from './rawws.mjs';

const V12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' };
const NO_TICKET = { secureOptions: constants.SSL_OP_NO_TICKET };

/** TLS 1.2 without tickets, offering `session` (a DER session from an earlier connection);
 *  resolves {socket, reused, session, localPort, ms} (ms: connect to handshake done). */
export function connectById(port, deviceName, session) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const s = tls.connect({
        host: HOST, port, servername: 'localhost', ...device(deviceName), ...V12, ...NO_TICKET, session,
      });
      s.once('error', reject);
      s.once('secureConnect', () =>
        resolve({
          socket: s, reused: s.isSessionReused(), session: s.getSession(), localPort: s.localPort,
          ms: Number(process.hrtime.bigint() - t0) / 1e6,
        }),
      );
    }),
    5000,
    `TLS 1.2 connect (${deviceName})`,
  );
}

/** Send the WebSocket upgrade on an established connection; resolves with the response head. */
export function upgradeOn(socket) {
  const chunks = [];
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.on('data', (d) => {
        chunks.push(d);
        const b = Buffer.concat(chunks).toString('latin1');
        if (b.includes('\r\n\r\n')) resolve(b);
      });
      socket.once('close', () => reject(new Error('closed before a response')));
      socket.write(upgradeRequest({}).text);
    }),
    5000,
    'upgrade response',
  );
}

/** The gateway's record of a closed connection from our local port: {device, pid, ...}. */
export async function closedConn(gw, localPort) {
  const line = await gw.waitForLog(new RegExp(`event=conn_closed .*peer=127\\.0\\.0\\.1:${localPort} `), 5000);
  return parseLogLine(line);
}

/** Where the session ID sits in a DER-encoded OpenSSL session (SEQUENCE { INTEGER, INTEGER,
 *  OCTET STRING cipher, OCTET STRING session_id, ... }): {offset, len}; throws on another layout. */
export function sessionIdAt(der) {
  const b = Buffer.from(der);
  let i = 0;
  const header = () => {
    const tag = b[i++];
    let len = b[i++];
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + b[i++];
    }
    return { tag, len };
  };
  const expect = (h, tag) => {
    if (h.tag !== tag) throw new Error(`session DER: tag 0x${h.tag.toString(16)} where 0x${tag.toString(16)} was expected`);
    return h;
  };
  expect(header(), 0x30);
  for (const tag of [0x02, 0x02, 0x04]) {
    const h = expect(header(), tag); // header() moves i: read it before adding
    i += h.len;
  }
  const id = expect(header(), 0x04);
  return { offset: i, len: id.len };
}
