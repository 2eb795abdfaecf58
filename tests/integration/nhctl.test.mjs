// nhctl (build/nhctl) against (a) no NATS at all, (b) a real nats-server with no platform, and
// (c) a real nats-server plus a fake platform responder written here with the official `nats`
// client: every command must send exactly the request JSON of api.md on <prefix>.api.<verb> and
// render replies and {"error"} answers with the documented exit codes (0 ok, 1 error reply,
// 2 usage, 3 unreachable). The end-to-end run against the real platform is elsewhere.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, StringCodec } from 'nats';
import { REPO } from './lib/certs.mjs';
import { freePort, waitFor } from './lib/gateway.mjs';
import { startNats } from './lib/stack.mjs';

const NHCTL = process.env.NHCTL_BIN || join(REPO, 'build', 'nhctl');
const sc = StringCodec();

/** Runs nhctl; resolves {code, stdout, stderr}. Async so the in-process responder can answer. */
function nhctl(args, { env = {}, onStderr } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(NHCTL, args, { env: { ...process.env, NHCTL_NATS: '', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => {
      stderr += d;
      if (onStderr) onStderr(stderr);
    });
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('nhctl binary exists', () => {
  assert.ok(existsSync(NHCTL), `${NHCTL} missing: run make build/nhctl`);
});

describe('usage and offline commands', () => {
  test('--help and per-command help exit 0 on stdout', async () => {
    const r = await nhctl(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /usage: nhctl \[global options\] <command>/);
    for (const c of ['devices', 'deployment create', 'events', 'product-key create', 'sign-shared-secret'])
      assert.ok(r.stdout.includes(`  ${c}`), `--help lists ${c}`);
    const d = await nhctl(['deployment', 'create', '--help']);
    assert.equal(d.code, 0);
    assert.match(d.stdout, /usage: nhctl deployment create --name N/);
    assert.match(d.stdout, /--version-requirement R/);
    const h = await nhctl(['help', 'events']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /usage: nhctl events/);
  });

  test('usage errors exit 2 without touching NATS', async () => {
    // A NATS URL nobody listens on: a usage error must be reported before any connect.
    const nats = `nats://127.0.0.1:${await freePort()}`;
    const cases = [
      [[], /usage: nhctl/],
      [['bogus'], /unknown command "bogus"/],
      [['devices', '--name', 'x'], /unknown option --name for this command/],
      [['devices', '--frobnicate'], /unknown option --frobnicate/],
      [['device', 'show'], /missing argument/],
      [['device', 'show', 'a', 'b'], /unexpected argument "b"/],
      [['reboot', ''], /empty argument/],
      [['devices', '--timeout', 'soon'], /--timeout must be a duration/],
      [['devices', '--prefix', 'a.b'], /--prefix must be/],
      [['devices', '--json=1'], /--json takes no value/],
      [['deployment', 'create', '--name', 'n', '--name', 'm'], /--name given twice/],
      [['deployment', 'create', '--firmware-uuid', 'u', '--version', '1', '--url', 'x'], /--name is required/],
      [['deployment', 'create', '--name', 'n', '--version', '1', '--url', 'x'], /--firmware-uuid is required/],
      [['deployment', 'create', '--name', 'n', '--firmware-uuid', 'u', '--version', '1'], /--url is required/],
      [['deployment', 'create', '--name', 'n', '--firmware-uuid', 'u', '--version', '1', '--url', 'x', '--size', '-1'], /--size must be a byte count/],
      [['deployment', 'delete', 'abc'], /deployment id must be a number/],
      [['device', 'create', 'd', '--fingerprint', 'abc'], /--fingerprint must be a SHA-1 fingerprint/],
      [['events', 'a.b'], /"a.b" is not a device id/],
      [['events', '--count', '0'], /--count must be a positive number/],
      [['update', 'dev-1', '--version', '1', '--url', 'x'], /--firmware-uuid is required/],
      [['sign-shared-secret', '--key', 'k', '--secret', 's'], /--identifier is required/],
    ];
    for (const [args, re] of cases) {
      const r = await nhctl([...args, '--nats', nats]);
      assert.equal(r.code, 2, `${args.join(' ')} → exit 2 (stderr: ${r.stderr})`);
      assert.match(r.stderr, re, args.join(' '));
      assert.equal(r.stdout, '', args.join(' '));
    }
    const r = await nhctl(['devices', '--nats']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--nats needs a value/);
  });

  test('sign-shared-secret reproduces the device-protocol.md §2.4 headers', async () => {
    const args = ['sign-shared-secret', '--key', 'nhp_ExampleProductKey00000000000000000000000000',
      '--secret', 'ExampleProductSecret00000000000000000000000', '--identifier', 'nerves-abcd',
      '--time', '1767225600'];
    const r = await nhctl(args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout,
      'x-nh-alg: NH1-HMAC-sha256-1000-32\n' +
      'x-nh-key: nhp_ExampleProductKey00000000000000000000000000\n' +
      'x-nh-time: 1767225600\n' +
      'x-nh-signature: SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg\n');
    const j = await nhctl([...args, '--json']);
    assert.equal(j.code, 0);
    assert.deepEqual(JSON.parse(j.stdout), {
      'x-nh-alg': 'NH1-HMAC-sha256-1000-32',
      'x-nh-key': 'nhp_ExampleProductKey00000000000000000000000000',
      'x-nh-time': '1767225600',
      'x-nh-signature': 'SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg',
    });
    // default time is now: the token's time header is within a minute of ours
    const n = await nhctl(args.slice(0, -2));
    const t = Number(/x-nh-time: (\d+)/.exec(n.stdout)[1]);
    assert.ok(Math.abs(t - Date.now() / 1000) < 60);
  });
});

describe('unreachable', () => {
  test('(a) no NATS at all → exit 3 "cannot reach NATS at URL"', async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const r = await nhctl(['devices', '--nats', url]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, new RegExp(`^nhctl: cannot reach NATS at ${url}`));
    assert.equal(r.stdout, '');
    // NHCTL_NATS is the default URL
    const e = await nhctl(['device', 'show', 'x'], { env: { NHCTL_NATS: url } });
    assert.equal(e.code, 3);
    assert.ok(e.stderr.includes(`cannot reach NATS at ${url}`), e.stderr);
    // events too
    const ev = await nhctl(['events', '--nats', url, '--count', '1']);
    assert.equal(ev.code, 3);
    assert.ok(ev.stderr.includes(`cannot reach NATS at ${url}`), ev.stderr);
  });

  describe('(b) nats-server without a platform', () => {
    let nats;
    before(async () => {
      nats = await startNats();
    });
    after(async () => {
      await nats?.stop();
    });

    test('no responders → exit 3 "no platform answered <subject> within 5s"', async () => {
      const r = await nhctl(['devices', '--nats', nats.url]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /^nhctl: no platform answered nh\.api\.devices\.list within 5s/);
      assert.equal(r.stdout, '');
      const p = await nhctl(['deployment', 'list', '--nats', nats.url, '--prefix', 'fleet2']);
      assert.equal(p.code, 3);
      assert.match(p.stderr, /no platform answered fleet2\.api\.deployment\.list within 5s/);
    });

    test('a subscriber that never answers → exit 3 after --timeout', async () => {
      const nc = await connect({ servers: nats.url });
      try {
        nc.subscribe('nh.api.>', { queue: 'nh.platform', callback: () => {} });
        await nc.flush();
        const t0 = Date.now();
        const r = await nhctl(['reboot', 'dev-1', '--nats', nats.url, '--timeout', '300ms']);
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stderr, /^nhctl: no platform answered nh\.api\.device\.reboot within 300ms\n$/);
        assert.ok(Date.now() - t0 >= 290, 'waited the timeout');
      } finally {
        await nc.close();
      }
    });
  });
});

describe('(c) against a fake platform', () => {
  let nats;
  let nc;
  const requests = []; // {subject, body}
  let answers = {}; // verb → reply object | string (raw) | function(body) → either

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    nc.subscribe('nh.api.>', {
      queue: 'nh.platform',
      callback: (err, msg) => {
        if (err) return;
        const text = sc.decode(msg.data);
        let body;
        try {
          body = JSON.parse(text);
        } catch {
          body = { unparsable: text };
        }
        requests.push({ subject: msg.subject, body });
        const verb = msg.subject.slice('nh.api.'.length);
        let a = answers[verb];
        if (typeof a === 'function') a = a(body);
        if (a === undefined) a = { error: `no answer scripted for ${verb}`, code: 'internal' };
        msg.respond(sc.encode(typeof a === 'string' ? a : JSON.stringify(a)));
      },
    });
    await nc.flush();
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  /** Runs nhctl against the fake with fresh request log and answers. */
  async function run(args, script = {}) {
    requests.length = 0;
    answers = script;
    return nhctl([...args, '--nats', nats.url]);
  }
  function onlyRequest(verb) {
    assert.equal(requests.length, 1, `one request (got ${JSON.stringify(requests)})`);
    assert.equal(requests[0].subject, `nh.api.${verb}`);
    return requests[0].body;
  }

  const DEVICES = {
    devices: [
      {
        id: 'dev-1', identifier: 'nerves-0001', online: true, gateway: 'gw-a', worker: 1,
        connected_at: 1767225600000, firmware_uuid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
        firmware_version: '1.1.0', tags: ['beta', 'eu'], status: 'updating', progress: 57,
      },
      {
        id: 'dev-22', identifier: 'nerves-0022', online: false, gateway: null, worker: null,
        connected_at: null, firmware_uuid: null, firmware_version: null, tags: [], status: null,
        progress: null,
      },
    ],
  };

  test('devices: {} → aligned table', async () => {
    const r = await run(['devices'], { 'devices.list': DEVICES });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('devices.list'), {});
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0], /^ID +IDENTIFIER +ONLINE +GATEWAY +CONNECTED +VERSION +FIRMWARE +TAGS +STATUS$/);
    // every column starts at the same offset in every row
    for (const [h, v1, v2] of [
      ['IDENTIFIER', 'nerves-0001', 'nerves-0022'],
      ['ONLINE', 'yes', 'no'],
      ['GATEWAY', 'gw-a/1', '-'],
      ['CONNECTED', '2026-01-01T00:00:00.000Z', '-'],
      ['TAGS', 'beta,eu', '-'],
      ['STATUS', 'updating 57%', '-'],
    ]) {
      const col = lines[0].indexOf(h);
      assert.equal(lines[1].slice(col, col + v1.length), v1, `${h} row 1: ${lines[1]}`);
      assert.equal(lines[2].slice(col, col + v2.length), v2, `${h} row 2: ${lines[2]}`);
    }
    assert.ok(lines[1].startsWith('dev-1 '));
    assert.ok(lines[1].includes('1.1.0') && lines[1].includes('0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'));
  });

  test('devices --online → {"online":true}; --json prints the reply as received', async () => {
    let r = await run(['devices', '--online'], { 'devices.list': { devices: [] } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('devices.list'), { online: true });
    assert.match(r.stdout, /\(no devices\)/);
    const raw = '{"devices":[{"id":"dev-1","online":true}],"extra":1}';
    r = await run(['--json', 'devices'], { 'devices.list': raw });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, raw + '\n');
  });

  test('device show → {"id"}; all fields listed', async () => {
    const device = {
      ...DEVICES.devices[0], fingerprints: ['AB'.repeat(20)], deployment_id: 42,
      last_status: { status: 'started' }, validated: true, custom_field: 'kept',
    };
    const r = await run(['device', 'show', 'dev-1'], { 'devices.show': { device } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('devices.show'), { id: 'dev-1' });
    const kv = Object.fromEntries(r.stdout.trimEnd().split('\n').map((l) => {
      const m = /^([a-z_]+): +(.*)$/.exec(l);
      assert.ok(m, `key: value line: ${l}`);
      return [m[1], m[2]];
    }));
    assert.equal(kv.id, 'dev-1');
    assert.equal(kv.identifier, 'nerves-0001');
    assert.equal(kv.online, 'yes');
    assert.equal(kv.connected_at, '2026-01-01T00:00:00.000Z');
    assert.equal(kv.tags, 'beta,eu');
    assert.equal(kv.fingerprints, 'AB'.repeat(20));
    assert.equal(kv.deployment_id, '42');
    assert.equal(kv.last_status, '{"status":"started"}');
    assert.equal(kv.validated, 'yes');
    assert.equal(kv.custom_field, 'kept');
    // values are aligned
    const cols = r.stdout.trimEnd().split('\n').map((l) => l.indexOf(':') + 1 + l.slice(l.indexOf(':') + 1).search(/\S/));
    assert.ok(cols.every((c) => c === cols[0]), 'aligned values');
  });

  test('unknown device → exit 1 with the platform message, nothing on stdout', async () => {
    const r = await run(['device', 'show', 'nope'], {
      'devices.show': { error: 'unknown device nope', code: 'not_found' },
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'nhctl: unknown device nope (not_found)\n');
    assert.equal(r.stdout, '');
    // --json: the error reply on stdout too, still exit 1
    const j = await run(['device', 'show', 'nope', '--json'], {
      'devices.show': { error: 'unknown device nope', code: 'not_found' },
    });
    assert.equal(j.code, 1);
    assert.deepEqual(JSON.parse(j.stdout), { error: 'unknown device nope', code: 'not_found' });
  });

  test('platform text cannot drive the terminal', async () => {
    const r = await run(['device', 'show', 'x'], {
      'devices.show': { error: 'bad \u001b[31mred\u001b[0m\r\nline \u009b2J', code: 'bad_request' },
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'nhctl: bad ?[31mred?[0m??line ?2J (bad_request)\n');
    const d = await run(['devices'], { 'devices.list': { devices: [{ id: 'e\u001b]0;x\u0007', tags: [] }] } });
    assert.equal(d.code, 0);
    assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f]/.test(d.stdout), JSON.stringify(d.stdout));
    assert.ok(d.stdout.includes('e?]0;x?'));
  });

  test('unusable replies → exit 1', async () => {
    let r = await run(['devices'], { 'devices.list': 'not json' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid reply on nh\.api\.devices\.list: not a JSON object/);
    r = await run(['devices'], { 'devices.list': '[1,2]' });
    assert.equal(r.code, 1);
    r = await run(['devices'], { 'devices.list': { nodevices: true } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid reply to devices\.list: no "devices" array/);
  });

  test('device create → {"identifier","fingerprint","tags"} (fingerprint normalised)', async () => {
    const fp = 'ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01';
    const reply = { device: { id: 'dev-9', identifier: 'nerves-9', online: false, tags: ['a', 'b'] } };
    let r = await run(['device', 'create', 'nerves-9', '--fingerprint', fp, '--tag', 'a', '--tag', 'b'],
      { 'devices.create': reply });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('devices.create'), {
      identifier: 'nerves-9', fingerprint: 'ABCDEF0123456789ABCDEF0123456789ABCDEF01', tags: ['a', 'b'],
    });
    assert.match(r.stdout, /^created device dev-9\n/);
    assert.match(r.stdout, /\nidentifier: +nerves-9\n/);
    r = await run(['device', 'create', 'nerves-10'], { 'devices.create': reply });
    assert.deepEqual(onlyRequest('devices.create'), { identifier: 'nerves-10' });
    r = await run(['device', 'create', 'dup'], { 'devices.create': { error: 'identifier dup already exists', code: 'conflict' } });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'nhctl: identifier dup already exists (conflict)\n');
  });

  const FW_ARGS = ['--firmware-uuid', '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', '--version', '1.1.0',
    '--url', 'https://bucket.example/abc.fw?X-Amz-Signature=1&b=2'];
  const FW_ALL = [...FW_ARGS, '--size', '41943040', '--checksum', '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    '--partial-checksum', 'aa11', '--partial-checksum', 'bb22', '--architecture', 'arm', '--platform', 'rpi4',
    '--product', 'my_product', '--author', 'ACME', '--description', 'a b c', '--misc', 'm', '--vcs-identifier', 'abc123'];
  const FW_ALL_JSON = {
    uuid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', version: '1.1.0', url: 'https://bucket.example/abc.fw?X-Amz-Signature=1&b=2',
    size: 41943040, checksum: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    partials_checksums: ['aa11', 'bb22'], architecture: 'arm', platform: 'rpi4', product: 'my_product',
    author: 'ACME', description: 'a b c', misc: 'm', vcs_identifier: 'abc123',
  };

  test('deployment create → {"name","firmware":{…},"conditions":{…}}', async () => {
    const reply = { deployment: { id: 42, name: 'prod' } };
    let r = await run(['deployment', 'create', '--name', 'prod', ...FW_ALL, '--tag', 'beta', '--tag', 'eu',
      '--version-requirement', '~> 1.0'], { 'deployment.create': reply });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('deployment.create'), {
      name: 'prod', firmware: FW_ALL_JSON, conditions: { tags: ['beta', 'eu'], version: '~> 1.0' },
    });
    assert.equal(r.stdout, 'created deployment 42 (prod)\n');
    // minimal: only the required firmware fields, empty tag condition, no version condition
    r = await run(['deployment', 'create', '--name=min', ...FW_ARGS], { 'deployment.create': reply });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('deployment.create'), {
      name: 'min',
      firmware: { uuid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', version: '1.1.0', url: 'https://bucket.example/abc.fw?X-Amz-Signature=1&b=2' },
      conditions: { tags: [] },
    });
    r = await run(['deployment', 'create', '--name', 'x', ...FW_ARGS], {
      'deployment.create': { error: 'invalid version requirement', code: 'bad_request' },
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'nhctl: invalid version requirement (bad_request)\n');
  });

  test('deployment list → {} ; table', async () => {
    const r = await run(['deployment', 'list'], {
      'deployment.list': {
        deployments: [
          { id: 42, name: 'prod', firmware: { uuid: 'u-1', version: '1.1.0' }, conditions: { tags: ['beta', 'eu'], version: '~> 1.0' } },
          { id: 7, name: 'all', firmware: { uuid: 'u-2', version: '2.0.0' }, conditions: { tags: [] } },
        ],
      },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('deployment.list'), {});
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0], /^ID +NAME +VERSION +FIRMWARE +TAGS +REQUIREMENT$/);
    assert.match(lines[1], /^42 +prod +1\.1\.0 +u-1 +beta,eu +~> 1\.0$/);
    assert.match(lines[2], /^7 +all +2\.0\.0 +u-2 +- +-$/);
    assert.equal(lines[1].indexOf('prod'), lines[0].indexOf('NAME'));
  });

  test('deployment delete → {"id": <number>}; not_found → exit 1', async () => {
    let r = await run(['deployment', 'delete', '42'], { 'deployment.delete': { ok: true } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('deployment.delete'), { id: 42 });
    assert.equal(r.stdout, 'deleted deployment 42\n');
    r = await run(['deployment', 'delete', '99'], { 'deployment.delete': { error: 'unknown deployment 99', code: 'not_found' } });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'nhctl: unknown deployment 99 (not_found)\n');
  });

  test('update → {"id","firmware"}; each status rendered', async () => {
    let r = await run(['update', 'dev-1', ...FW_ALL], { 'device.update': { status: 'ok' } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('device.update'), { id: 'dev-1', firmware: FW_ALL_JSON });
    assert.equal(r.stdout, 'update sent to dev-1\n');
    r = await run(['update', 'dev-1', ...FW_ARGS], { 'device.update': { status: 'offline' } });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'device dev-1 is offline: no update sent\n');
    r = await run(['update', 'dev-1', ...FW_ARGS], { 'device.update': { status: 'gone' } });
    assert.match(r.stdout, /connection is gone: no update sent/);
    r = await run(['update', 'ghost', ...FW_ARGS], { 'device.update': { error: 'unknown device ghost', code: 'not_found' } });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'nhctl: unknown device ghost (not_found)\n');
  });

  test('reboot / identify → {"id"}', async () => {
    let r = await run(['reboot', 'dev-1'], { 'device.reboot': { status: 'ok' } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('device.reboot'), { id: 'dev-1' });
    assert.equal(r.stdout, 'reboot sent to dev-1\n');
    r = await run(['identify', 'dev-2'], { 'device.identify': { status: 'offline' } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('device.identify'), { id: 'dev-2' });
    assert.equal(r.stdout, 'device dev-2 is offline: no identify sent\n');
  });

  test('product-key create / device-key create', async () => {
    const key = { key: 'nhp_' + 'K'.repeat(43), secret: 'S'.repeat(43) };
    let r = await run(['product-key', 'create', '--name', 'fleet'], { 'product_key.create': key });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('product_key.create'), { name: 'fleet' });
    assert.equal(r.stdout, `key:     ${key.key}\nsecret:  ${key.secret}\n`);
    r = await run(['product-key', 'create'], { 'product_key.create': key });
    assert.deepEqual(onlyRequest('product_key.create'), {});
    r = await run(['device-key', 'create', 'dev-1'], { 'device_key.create': { key: 'nhd_x', secret: 'y' } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(onlyRequest('device_key.create'), { id: 'dev-1' });
    assert.match(r.stdout, /^key: +nhd_x\nsecret: +y\n$/);
  });

  test('--prefix moves every subject', async () => {
    const other = await connect({ servers: nats.url });
    const seen = [];
    other.subscribe('fleet2.api.>', {
      queue: 'fleet2.platform',
      callback: (err, msg) => {
        seen.push(msg.subject);
        msg.respond(sc.encode('{"status":"ok"}'));
      },
    });
    await other.flush();
    try {
      const r = await run(['--prefix', 'fleet2', 'reboot', 'dev-1']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(seen, ['fleet2.api.device.reboot']);
      assert.equal(requests.length, 0);
    } finally {
      await other.close();
    }
  });

  /** Starts `nhctl events …`, waits until it is subscribed, then runs `publish`. */
  async function watch(args, publish) {
    let ready;
    const subscribed = new Promise((r) => (ready = r));
    const done = nhctl([...args, '--nats', nats.url], {
      onStderr: (s) => {
        if (s.includes('nhctl: watching')) ready();
      },
    });
    await Promise.race([subscribed, done.then((r) => { throw new Error(`events exited early: ${r.stderr}`); })]);
    await publish();
    return done;
  }

  test('events: one line per event; a device filter; --json', async () => {
    const ev1 = { ts: 1767225600123, dev: 'dev-1', event: 'fwup_progress', stage: 'updating', value: 57 };
    const ev2 = { ts: 1767225601000, dev: 'dev-2', event: 'connect', gateway: 'gw-a', meta: { a: 1 } };
    let r = await watch(['events', '--count', '2', '--timeout', '10s'], async () => {
      nc.publish('nh.events.dev-1', sc.encode(JSON.stringify(ev1)));
      nc.publish('nh.events.dev-2', sc.encode(JSON.stringify(ev2)));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /watching nh\.events\.>/);
    assert.equal(r.stdout,
      '2026-01-01T00:00:00.123Z  dev-1  fwup_progress stage=updating value=57\n' +
      '2026-01-01T00:00:01.000Z  dev-2  connect gateway=gw-a meta={"a":1}\n');

    r = await watch(['events', 'dev-2', '--count', '1', '--timeout', '10s'], async () => {
      nc.publish('nh.events.dev-1', sc.encode(JSON.stringify(ev1)));
      nc.publish('nh.events.dev-2', sc.encode(JSON.stringify(ev2)));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /watching nh\.events\.dev-2/);
    assert.equal(r.stdout.split('\n').length, 2);
    assert.match(r.stdout, /^2026-01-01T00:00:01\.000Z  dev-2  connect /);

    r = await watch(['events', '--json', '--count', '1', '--timeout', '10s'], async () => {
      nc.publish('nh.events.dev-1', sc.encode(JSON.stringify(ev1)));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), ev1);
  });

  test('events: --timeout ends the watch; short of --count → exit 1', async () => {
    let r = await watch(['events', '--timeout', '300ms'], async () => {
      nc.publish('nh.events.dev-1', sc.encode('{"ts":0,"dev":"dev-1","event":"join"}'));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '1970-01-01T00:00:00.000Z  dev-1  join\n');
    r = await watch(['events', '--count', '3', '--timeout', '300ms'], async () => {
      nc.publish('nh.events.dev-1', sc.encode('{"ts":0,"dev":"dev-1","event":"join"}'));
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /timed out after 300ms with 1 of 3 events/);
  });
});
