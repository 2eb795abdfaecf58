// The gateway's Prometheus exposition (--admin-listen) for tests: fetch it, read one series, wait
// for a value (workers publish their counters every 100 ms).
import assert from 'node:assert/strict';
import http from 'node:http';
import { HOST, waitFor } from './gateway.mjs';

/** GET /metrics of the admin port; the body, after asserting a 200. */
export function fetchMetrics(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path: '/metrics', timeout: 5000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        try {
          assert.equal(res.statusCode, 200, `/metrics: ${res.statusCode}`);
          resolve(body);
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('/metrics: timeout')));
    req.on('error', reject);
  });
}

/** In an exposition: `series` as `name` (the sum of all its series) or as `name{labels}` exactly
 * as the gateway prints them; null if absent. */
export function metric(exposition, series) {
  let sum = null;
  for (const line of exposition.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/);
    if (m && (m[1] === series || m[1] + (m[2] ?? '') === series)) sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

/** Waits until `series` on admin port `port` equals `want`; the error names the last value seen. */
export async function waitMetric(port, series, want, ms = 3000) {
  let got;
  try {
    await waitFor(async () => (got = metric(await fetchMetrics(port), series)) === want, ms, `${series} = ${want}`);
  } catch (e) {
    throw new Error(`${e.message} (last seen: ${got})`);
  }
}
