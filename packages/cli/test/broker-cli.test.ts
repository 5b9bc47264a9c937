import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { runCli } from '../src/run.ts';
import {
  type BrokerFixture,
  deviceSession,
  eventually,
  type FixtureDevice,
  type FixtureTenant,
  startBrokerFixture,
} from './support/broker-fixture.ts';

/** Runs `heptad mqtt sub` in-process; resolves `ready` once it has subscribed. */
function subscribe(fx: BrokerFixture, argv: string[], env: NodeJS.ProcessEnv) {
  let out = '';
  let err = '';
  let markReady: () => void = () => {};
  const ready = new Promise<void>((r) => {
    markReady = r;
  });
  const done = runCli(['mqtt', 'sub', ...argv], {
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
      if (s.includes('subscribed to')) markReady();
    },
    env,
    cwd: fx.dir,
  }).then((code) => ({ code, out, err }));
  void done.then(() => markReady());
  return { ready, done };
}

describe('heptad mqtt pub/sub and device cert export against the embedded broker', () => {
  let fx: BrokerFixture;
  let a: FixtureTenant;
  let b: FixtureTenant;
  let dev: FixtureDevice;
  let ca: string;
  const broker = () => ['--broker', `mqtts://127.0.0.1:${fx.mqttPort}`];

  before(async () => {
    fx = await startBrokerFixture('broker-cli');
    ca = readFileSync(String(fx.svc.caPath), 'utf8');
    a = await startTenant('Alpha');
    b = await startTenant('Beta');
    dev = await fx.device(a, 'dev-a');
  });
  const startTenant = (name: string) => fx.tenant(name);
  after(async () => {
    await fx?.close();
  });

  test('device cert export writes the chain, a 0600 key, the tenant root and the platform CA', () => {
    for (const f of ['device-chain.pem', 'tenant-root.pem', 'platform-ca.pem'])
      assert.ok(existsSync(join(dev.pemDir, f)), f);
    assert.equal(statSync(join(dev.pemDir, 'device-key.pem')).mode & 0o777, 0o600);
    assert.match(dev.chainPem, /BEGIN CERTIFICATE[\s\S]+BEGIN CERTIFICATE/);
  });

  test('device cert export does not overwrite without --force, and refuses a folder others may write to', async () => {
    const before = readFileSync(join(dev.pemDir, 'device-key.pem'), 'utf8');
    const again = await fx.cli(['device', 'cert', 'export', '--state', dev.state, '--out', dev.pemDir]);
    assert.equal(again.code, 1);
    assert.match(again.err, /^heptad: CLI_FILE_EXISTS: /);
    const forced = await fx.cli([
      'device',
      'cert',
      'export',
      '--state',
      dev.state,
      '--out',
      dev.pemDir,
      '--force',
    ]);
    assert.equal(forced.code, 0, forced.err);
    assert.equal(readFileSync(join(dev.pemDir, 'device-key.pem'), 'utf8'), before);
    const open = join(fx.dir, 'world-writable');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const unsafe = await fx.cli(['device', 'cert', 'export', '--state', dev.state, '--out', open, '--force']);
    assert.equal(unsafe.code, 1);
    assert.match(unsafe.err, /^heptad: DEVICE_CERT_OUT_UNSAFE: /);
    assert.deepEqual(readdirSync(open), []);
  });

  test('device cert export refuses a TPM device and a device without a certificate, writing nothing', async () => {
    const fresh = join(fx.dir, 'dev-new');
    const m = await fx.cli([
      'device',
      'manufacture',
      '--state',
      fresh,
      '--rot',
      'soft',
      '--service',
      fx.svc.url,
    ]);
    assert.equal(m.code, 0, m.err);
    const none = await fx.cli(['device', 'cert', 'export', '--state', fresh, '--out', join(fx.dir, 'none')]);
    assert.equal(none.code, 1);
    assert.match(none.err, /^heptad: DEVICE_CERT_NOT_ISSUED: /);
    assert.ok(!existsSync(join(fx.dir, 'none')));
    // The same attested state, as if its root of trust were a TPM.
    const cfgPath = join(dev.state, 'ro', 'device.json');
    const original = readFileSync(cfgPath, 'utf8');
    try {
      writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(original), rot: 'tpm:/dev/tpmrm0' }));
      const tpm = await fx.cli([
        'device',
        'cert',
        'export',
        '--state',
        dev.state,
        '--out',
        join(fx.dir, 'tpm-out'),
      ]);
      assert.equal(tpm.code, 1);
      assert.match(tpm.err, /^heptad: DEVICE_CERT_EXPORT_TPM: /);
      assert.ok(!existsSync(join(fx.dir, 'tpm-out')));
    } finally {
      writeFileSync(cfgPath, original);
    }
  });

  test('an operator subscribes with heptad mqtt sub and receives what mosquitto_pub sends as the device', async () => {
    const sub = subscribe(
      fx,
      ['devices/+/telemetry', '--count', '1', '--timeout', '20', ...broker()],
      a.readerEnv,
    );
    await sub.ready;
    const pub = await new Promise<{ code: number | null; err: string }>((resolve) => {
      execFile(
        'mosquitto_pub',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(fx.mqttPort),
          '--cafile',
          join(dev.pemDir, 'platform-ca.pem'),
          '--cert',
          join(dev.pemDir, 'device-chain.pem'),
          '--key',
          join(dev.pemDir, 'device-key.pem'),
          '-i',
          dev.id,
          '-t',
          `devices/${dev.id}/telemetry`,
          '-m',
          'temp=21',
          '-q',
          '1',
        ],
        { timeout: 10_000 },
        (e, _out, err) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, err }),
      );
    });
    assert.equal(pub.code, 0, pub.err);
    const r = await sub.done;
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `devices/${dev.id}/telemetry temp=21\n`);
  });

  test('heptad mqtt pub reaches the device; --output json of sub lists the items', async () => {
    const s = await deviceSession(fx.mqttPort, ca, dev);
    await s.client.subscribeAsync(`devices/${dev.id}/commands`, { qos: 1 });
    const p = await fx.cli(
      ['mqtt', 'pub', `devices/${dev.id}/commands`, 'reboot', ...broker(), '--output', 'json'],
      a.adminEnv,
    );
    assert.equal(p.code, 0, p.err);
    assert.equal(p.json()['published'], true);
    await eventually(() => s.received.length === 1, 5_000, 'command');
    assert.deepEqual(s.received, [{ topic: `devices/${dev.id}/commands`, payload: 'reboot' }]);
    const sub = subscribe(
      fx,
      [`devices/${dev.id}/telemetry`, '--count', '1', '--timeout', '20', '--output', 'json', ...broker()],
      a.readerEnv,
    );
    await sub.ready;
    await s.client.publishAsync(`devices/${dev.id}/telemetry`, 'x', { qos: 1 });
    const r = await sub.done;
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), { items: [{ topic: `devices/${dev.id}/telemetry`, payload: 'x' }] });
    await s.client.endAsync();
  });

  test('broker config mosquitto refuses bad options and writes nothing', async () => {
    const out = join(fx.dir, 'mosq-refused');
    const file = join(fx.dir, 'a-file');
    writeFileSync(file, 'x');
    const cases: Array<[string[], RegExp]> = [
      [['--listen', '8883'], /^heptad: CLI_USAGE: /],
      [['--listen', '127.0.0.1:99999'], /^heptad: CLI_USAGE: /],
      [['--server-cert', file], /^heptad: CLI_USAGE: /],
      [
        ['--server-cert', join(fx.dir, 'missing.pem'), '--server-key', file],
        /^heptad: CLI_FILE_UNREADABLE: /,
      ],
      [['--max-packet-size', '10'], /^heptad: CLI_USAGE: /],
    ];
    for (const [extra, expected] of cases) {
      const r = await fx.cli(['broker', 'config', 'mosquitto', '--out', out, ...extra], a.adminEnv);
      assert.notEqual(r.code, 0, extra.join(' '));
      assert.match(r.err, expected, extra.join(' '));
      assert.ok(!existsSync(out), `${extra.join(' ')}: nothing written`);
    }
    const onFile = await fx.cli(['broker', 'config', 'mosquitto', '--out', file], a.adminEnv);
    assert.match(onFile.err, /^heptad: CLI_USAGE: /);
    assert.equal(readFileSync(file, 'utf8'), 'x');
    const reader = await fx.cli(['broker', 'config', 'mosquitto', '--out', out], fx.operatorEnv);
    assert.notEqual(reader.code, 0, 'the operator has no tenant CA to configure');
    assert.ok(!existsSync(out));
  });

  const refusals: Array<[string, () => string[], () => NodeJS.ProcessEnv, RegExp]> = [
    [
      'refused/# at the root',
      () => ['mqtt', 'sub', '#', '--timeout', '5', ...broker()],
      () => a.readerEnv,
      /^heptad: MQTT_SUBSCRIBE_REFUSED: /,
    ],
    [
      'refused/another tenant’s device',
      () => ['mqtt', 'sub', `devices/${dev.id}/#`, '--timeout', '5', ...broker()],
      () => b.readerEnv,
      /^heptad: MQTT_SUBSCRIBE_REFUSED: /,
    ],
    [
      'refused/publish to another tenant’s device',
      () => ['mqtt', 'pub', `devices/${dev.id}/commands`, 'x', ...broker()],
      () => b.adminEnv,
      /^heptad: MQTT_PUBLISH_REFUSED: /,
    ],
    [
      'refused/a Reader publishing',
      () => ['mqtt', 'pub', `devices/${dev.id}/commands`, 'x', ...broker()],
      () => a.readerEnv,
      /^heptad: MQTT_PUBLISH_REFUSED: /,
    ],
    [
      // The CLI asks the service for the token's tenant first, so the operator is refused there,
      // before MQTT; the broker's own refusal of the operator token (CONNACK 5) is in
      // packages/service/test/broker.test.ts and in 'refused/the operator token at the broker' below.
      'refused/the operator token (no tenant: before any MQTT)',
      () => ['mqtt', 'sub', 'devices/+/x', '--timeout', '5', ...broker()],
      () => fx.operatorEnv,
      /^heptad: AUTH_TENANT_REQUIRED: /,
    ],
    [
      'refused/no broker there',
      () => ['mqtt', 'pub', 'devices/x/y', 'x', '--broker', 'mqtts://127.0.0.1:1'],
      () => a.adminEnv,
      /^heptad: MQTT_CONNECTION_FAILED: /,
    ],
    [
      'usage/broker not mqtts',
      () => ['mqtt', 'pub', 'devices/x/y', 'x', '--broker', 'mqtt://127.0.0.1:1883'],
      () => a.adminEnv,
      /^heptad: CLI_USAGE: /,
    ],
    [
      'usage/qos 2',
      () => ['mqtt', 'pub', 'devices/x/y', 'x', '--qos', '2', ...broker()],
      () => a.adminEnv,
      /^heptad: CLI_USAGE: /,
    ],
    [
      'usage/bad client id',
      () => ['mqtt', 'pub', 'devices/x/y', 'x', '--client-id', 'a/b', ...broker()],
      () => a.adminEnv,
      /^heptad: CLI_USAGE: /,
    ],
  ];
  test('refused/the operator token at the broker (CONNACK 5, not authorized)', async () => {
    const code = await new Promise<number | undefined>((resolve) => {
      const c = mqtt.connect({
        host: '127.0.0.1',
        port: fx.mqttPort,
        protocol: 'mqtts',
        ca,
        reconnectPeriod: 0,
        clientId: `${a.id}/operator`,
        username: 'token',
        password: String(fx.operatorEnv['HEPTAD_TOKEN']),
      });
      c.once('connect', () => {
        c.end(true);
        resolve(0);
      });
      c.once('error', (e) => {
        c.end(true);
        resolve((e as { code?: number }).code);
      });
    });
    assert.equal(code, 5);
  });

  for (const [name, argv, env, expected] of refusals) {
    test(name, async () => {
      const r = await fx.cli(argv(), env());
      assert.notEqual(r.code, 0);
      assert.match(r.err, expected);
    });
  }
});
