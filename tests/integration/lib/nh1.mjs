// NH1 shared-secret signing as nerves_hub_link does it, written from device-protocol.md §2.3 with
// node:crypto — independent of the project's C implementation (ops/platform/pure_nh1.c).
import { createHmac, pbkdf2Sync } from 'node:crypto';

export const b64url = (b) => Buffer.from(b).toString('base64url');

/** ETF of {identifier, signed_at_ms, 86400}: BINARY_EXT, SMALL_BIG_EXT, INTEGER_EXT. */
export function etfMsg(identifier, signedMs) {
  const id = Buffer.from(identifier);
  const big = [];
  for (let v = BigInt(signedMs); v > 0n; v >>= 8n) big.push(Number(v & 0xffn));
  return Buffer.concat([
    Buffer.from([0x83, 0x68, 0x03, 0x6d]),
    Buffer.from([id.length >>> 24, (id.length >>> 16) & 255, (id.length >>> 8) & 255, id.length & 255]),
    id,
    Buffer.from([0x6e, big.length, 0x00, ...big]),
    Buffer.from([0x62, 0x00, 0x01, 0x51, 0x80]),
  ]);
}

export function nh1Sign({ key, secret, identifier, time, alg = 'NH1-HMAC-sha256-1000-32' }) {
  const salt = `NH1:device-socket:shared-secret:connect\n\nx-nh-alg=${alg}\nx-nh-key=${key}\nx-nh-time=${time}\n`;
  const dk = pbkdf2Sync(Buffer.from(secret), Buffer.from(salt), 1000, 32, 'sha256');
  const head = `SFMyNTY.${b64url(etfMsg(identifier, time * 1000))}`;
  return `${head}.${b64url(createHmac('sha256', dk).update(head).digest())}`;
}

/** The four x-nh-* headers a device sends. */
export function nh1Headers(key, secret, identifier, time = Math.floor(Date.now() / 1000)) {
  return {
    'x-nh-alg': 'NH1-HMAC-sha256-1000-32',
    'x-nh-key': key,
    'x-nh-time': String(time),
    'x-nh-signature': nh1Sign({ key, secret, identifier, time }),
  };
}
