// The device's broker session and the SDK's mqtt, end to end (issue 8): a real `heptad device
// run` (packed runtime: the lazy mqtt import is bundled) against a live service with its embedded
// broker. The runtime connects with its device certificate; a cloud client of the tenant
// exchanges messages with an app through the SDK; an app without DeviceAuthentication, and every
// topic outside the rules, is refused and recorded; quarantine drops the session and the
// reconnects are refused and back off; after release the device attests again and the session
// uses the new certificate.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunningService } from '@heptad/service';
import mqtt, { type MqttClient } from 'mqtt';
import { DeviceProcess, enrollDevice, makeRuntimeKit, readJson } from './support/device-process.ts';
import { startLiveService } from './support/live-service.ts';
import { runCaptured } from './support/run-cli.ts';

const ECHO_ID = '5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const NOAUTH_ID = '7b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e';

const ECHO = `
import { mqtt } from '@heptad/sdk';
const code = async (p) => { try { await p; return 'ok'; } catch (e) { return e.code; } };
// every refusal fed the bad thing
const bad = {
  wildcardTopic: await code(mqtt.publish('a/+', 'x')),
  hashTopic: await code(mqtt.publish('#', 'x')),
  emptyLevel: await code(mqtt.publish('a//b', 'x')),
  leadingSlash: await code(mqtt.publish('/a', 'x')),
  nul: await code(mqtt.publish('a\\u0000b', 'x')),
  tooLong: await code(mqtt.publish('a'.repeat(300), 'x')),
  tooDeep: await code(mqtt.publish(Array(13).fill('a').join('/'), 'x')),
  hugePayload: await code(mqtt.publish('big', 'x'.repeat(70 * 1024))),
  badFilter: await code(mqtt.subscribe('a/b#', () => {})),
  hashNotLast: await code(mqtt.subscribe('#/a', () => {})),
  otherDevice: await code(mqtt.publish('../../devices/other/x', 'x')),
};
console.log('REFUSALS ' + JSON.stringify(bad));
for (;;) {
  try {
    await mqtt.subscribe('commands/#', (topic, payload) => {
      void mqtt.publish('echo/' + topic, Buffer.from(payload).toString().toUpperCase());
    });
    break;
  } catch (e) {
    console.log('subscribe failed ' + e.code);
    await new Promise((r) => setTimeout(r, 500));
  }
}
console.log('SUBSCRIBED');
setInterval(() => {}, 1 << 30);
`;

const NOAUTH = `
import { mqtt } from '@heptad/sdk';
try { await mqtt.publish('x', 'y'); console.log('NOAUTH ok'); } catch (e) { console.log('NOAUTH ' + e.code); }
try { await mqtt.subscribe('#', () => {}); console.log('NOAUTH-SUB ok'); } catch (e) { console.log('NOAUTH-SUB ' + e.code); }
setInterval(() => {}, 1 << 30);
`;

describe('device broker session and SDK mqtt', () => {
  let svc: RunningService;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let state: string;
  let deviceId: string;
  let tenantId: string;
  let adminToken: string;
  let dev: DeviceProcess;
  let cloud: MqttClient;
  const got: Array<{ topic: string; payload: string }> = [];
  const cli = (argv: string[], extra: NodeJS.ProcessEnv = {}) => runCaptured(argv, { ...env, ...extra }, dir);
  const brokerStatus = () =>
    readJson(join(state, 'run', 'broker.json')) as { broker: string; session: { serial?: string } };
  const reports = () =>
    (
      readJson(join(state, 'reports', 'queue.json')) as {
        reports: Array<{ kind: string; componentId: string; details: Record<string, unknown> }>;
      }
    ).reports;

  async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let v: T | undefined | false;
      try {
        v = fn();
      } catch {
        v = undefined;
      }
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; device output:\n${dev?.out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function packApp(name: string, id: string, source: string, caps: Record<string, unknown>) {
    const src = join(dir, `src-${name}`);
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'main.ts'), source);
    writeFileSync(
      join(src, 'app_manifest.json'),
      JSON.stringify({
        SchemaVersion: 1,
        Name: name,
        ComponentId: id,
        EntryPoint: 'main.ts',
        Capabilities: caps,
      }),
    );
    const out = join(dir, `${name}.hpkg`);
    const r = await cli([
      'image',
      'pack',
      src,
      '--out',
      out,
      '--key',
      join(dir, 'dev.key'),
      '--version',
      '1.0.0',
    ]);
    assert.equal(r.code, 0, r.err);
    const s = await cli([
      'device',
      'sideload',
      out,
      '--state',
      state,
      '--developer-key',
      join(dir, 'dev.key.pub'),
    ]);
    assert.equal(s.code, 0, s.err);
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-mqtt-e2e-'));
    ({ svc, env } = await startLiveService(dir));
    assert.ok(svc.mqttUrl, 'the live service runs its broker');
    assert.equal((await cli(['tenant', 'create', 'Mqtt Tenant'])).code, 0);
    const admin = await cli([
      'user',
      'create',
      'mqtt@example.com',
      '--tenant',
      'Mqtt Tenant',
      '--role',
      'Administrator',
      '--output',
      'json',
    ]);
    adminToken = String(admin.json()['token']);
    tenantId = String(
      (await cli(['tenant', 'show', '--output', 'json'], { HEPTAD_TOKEN: adminToken })).json()['id'],
    );
    const kit = await makeRuntimeKit(dir);
    const rt = await kit.pack('rt1', '1.0.0', 1);
    assert.equal(
      (await cli(['runtime-image', 'add', rt.digest, '--version', '1.0.0', '--security-version', '1'])).code,
      0,
    );
    state = join(dir, 'dev');
    deviceId = await enrollDevice(cli, {
      state,
      serviceUrl: svc.url,
      caPath: String(svc.caPath),
      runtime: rt.file,
      runtimeSigner: kit.platformPub,
      adminToken,
      capabilities: ['appDevelopment'],
    });
    assert.equal((await cli(['key', 'create', '--out', join(dir, 'dev.key')])).code, 0);
    await packApp('echo', ECHO_ID, ECHO, { DeviceAuthentication: tenantId });
    await packApp('noauth', NOAUTH_ID, NOAUTH, {});

    const u = new URL(svc.mqttUrl as string);
    cloud = await mqtt.connectAsync({
      host: u.hostname,
      port: Number(u.port),
      protocol: 'mqtts',
      ca: readFileSync(String(svc.caPath), 'utf8'),
      clientId: `${tenantId}/test-cloud`,
      username: 'token',
      password: adminToken,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
    });
    cloud.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
    await cloud.subscribeAsync(`devices/${deviceId}/#`, { qos: 1 });

    dev = new DeviceProcess(state, ['--watchdog', '30000']);
  });

  after(async () => {
    await DeviceProcess.powerCutAll();
    cloud?.end(true);
    await svc?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the runtime connects to the broker the attestation answer named, with its certificate', async () => {
    await dev.waitFor(/broker: connected to mqtts:\/\//, 30_000);
    const s = brokerStatus();
    assert.equal(s.broker, 'connected');
    const cert = new (await import('node:crypto')).X509Certificate(
      readFileSync(join(state, 'certs', 'device-chain.pem')),
    );
    assert.equal(s.session.serial?.toLowerCase(), cert.serialNumber.toLowerCase());
    const st = await cli(['device', 'status', '--state', state, '--output', 'json']);
    assert.equal(st.json()['broker'], 'connected');
  });

  test('a cloud client and an app exchange messages under the device topics', async () => {
    await dev.waitFor(/\[app echo\] SUBSCRIBED/, 30_000);
    await cloud.publishAsync(`devices/${deviceId}/commands/led`, 'on', { qos: 1 });
    const echo = await until('the echo', () =>
      got.find((m) => m.topic === `devices/${deviceId}/echo/commands/led`),
    );
    assert.equal(echo.payload, 'ON');
  });

  test('every bad topic, filter and payload is refused and recorded', async () => {
    await dev.waitFor(/\[app echo\] REFUSALS /, 30_000);
    const line = /\[app echo\] REFUSALS (\{.*\})/.exec(dev.out)?.[1] as string;
    const r = JSON.parse(line) as Record<string, string>;
    for (const k of [
      'wildcardTopic',
      'hashTopic',
      'emptyLevel',
      'leadingSlash',
      'nul',
      'tooLong',
      'tooDeep',
      'hugePayload',
      'badFilter',
      'hashNotLast',
    ])
      assert.equal(r[k], 'APP_CAPABILITY_DENIED', k);
    // `..` is only a level name in MQTT: it stays under the device's own prefix.
    assert.equal(r['otherDevice'], 'ok');
    assert.ok(got.some((m) => m.topic === `devices/${deviceId}/../../devices/other/x`));
    const v = await until('the violations', () => {
      const mine = reports().filter((x) => x.kind === 'capability-violation' && x.componentId === ECHO_ID);
      return mine.length >= 10 ? mine : undefined;
    });
    assert.ok(v.every((x) => x.details['capability'] === 'mqtt'));
  });

  test('an app without DeviceAuthentication is refused and recorded', async () => {
    await dev.waitFor(/\[app noauth\] NOAUTH-SUB /, 30_000);
    assert.match(dev.out, /\[app noauth\] NOAUTH APP_CAPABILITY_DENIED/);
    assert.match(dev.out, /\[app noauth\] NOAUTH-SUB APP_CAPABILITY_DENIED/);
    assert.ok(!got.some((m) => m.topic.endsWith('/x') && m.payload === 'y'));
    const v = await until('the violation', () =>
      reports().find(
        (x) =>
          x.kind === 'capability-violation' &&
          x.componentId === NOAUTH_ID &&
          x.details['capability'] === 'DeviceAuthentication',
      ),
    );
    assert.ok(v);
  });

  test('quarantine drops the session; reconnects are refused and back off; after release the new certificate connects', async () => {
    const before = brokerStatus().session.serial;
    const mark = dev.out.length;
    const q = await cli(['device', 'quarantine', deviceId, '--reason', 'test'], { HEPTAD_TOKEN: adminToken });
    assert.equal(q.code, 0, q.err);
    await until(
      'a refusal',
      () => /broker: connection refused \(CONNACK 5\)/.test(dev.out.slice(mark)),
      20_000,
    );
    assert.equal(brokerStatus().broker, 'refused 5');
    // Back off, never spin: over 6 s, a handful of attempts at most (1 s, 2 s, 4 s … with jitter).
    await new Promise((r) => setTimeout(r, 6_000));
    const refusals = dev.out.slice(mark).match(/broker: connection refused/g)?.length ?? 0;
    assert.ok(refusals >= 1 && refusals <= 4, `refusals in ~6 s: ${refusals}`);
    const st = await cli(['device', 'status', '--state', state, '--output', 'json']);
    assert.equal(st.json()['broker'], 'refused 5');

    const rel = await cli(['device', 'release', deviceId], { HEPTAD_TOKEN: adminToken });
    assert.equal(rel.code, 0, rel.err);
    const after = await until(
      'a new certificate in session',
      () => {
        const s = brokerStatus();
        return s.broker === 'connected' && s.session.serial !== before ? s.session.serial : undefined;
      },
      60_000,
    );
    assert.notEqual(after, before);
    // The app subscribed again (its subscription survives in the runtime) and still answers.
    got.length = 0;
    await cloud.publishAsync(`devices/${deviceId}/commands/again`, 'hi', { qos: 1 });
    const echo = await until('the echo', () => got.find((m) => m.topic.endsWith('/echo/commands/again')));
    assert.equal(echo.payload, 'HI');
  });
});
