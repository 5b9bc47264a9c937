import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningService, resolveConfig, startService } from '@heptad/service';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';
import { type CliRun, runCaptured } from './run-cli.ts';

/** A running service (SQLite, embedded broker on a free port) driven only through the CLI. */
export interface BrokerFixture {
  /** the service's clock runs this far from the real one (to issue already-expired certificates) */
  clockOffsetMs: number;
  readonly svc: RunningService;
  readonly dir: string;
  readonly mqttPort: number;
  readonly operatorEnv: NodeJS.ProcessEnv;
  cli(argv: string[], env?: NodeJS.ProcessEnv): Promise<CliRun>;
  tenant(name: string): Promise<FixtureTenant>;
  /** manufactured (soft), registered, claimed by the tenant, attested, its PEMs exported */
  device(t: FixtureTenant, name: string, group?: string): Promise<FixtureDevice>;
  close(): Promise<void>;
}

export interface FixtureTenant {
  readonly id: string;
  readonly name: string;
  readonly adminEnv: NodeJS.ProcessEnv;
  readonly readerEnv: NodeJS.ProcessEnv;
}

export interface FixtureDevice {
  readonly id: string;
  readonly state: string;
  readonly pemDir: string;
  readonly chainPem: string;
  readonly keyPem: string;
}

export async function startBrokerFixture(tag: string): Promise<BrokerFixture> {
  const dir = mkdtempSync(join(tmpdir(), `heptad-${tag}-`));
  const clock = { offsetMs: 0 };
  const svc = await startService(
    resolveConfig({ data: join(dir, 'data'), listen: '127.0.0.1:0', mqttListen: '127.0.0.1:0' }),
    {
      logger: pino({ level: process.env['HEPTAD_TEST_LOG'] ?? 'silent' }, pino.destination(2)),
      env: {},
      clock: () => new Date(Date.now() + clock.offsetMs),
    },
  );
  const mqttPort = Number(new URL(String(svc.mqttUrl)).port);
  const base = { HEPTAD_CONFIG_DIR: join(dir, 'config'), HEPTAD_URL: svc.url, HEPTAD_CA: String(svc.caPath) };
  const operatorEnv = { ...base, HEPTAD_TOKEN: readFileSync(svc.operatorTokenPath, 'utf8').trim() };
  const cli = (argv: string[], env: NodeJS.ProcessEnv = operatorEnv) => runCaptured(argv, env, dir);
  const ok = async (argv: string[], env: NodeJS.ProcessEnv = operatorEnv) => {
    const r = await cli([...argv, '--output', 'json'], env);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.err}`);
    return r.json();
  };
  const fixture: BrokerFixture = {
    get clockOffsetMs() {
      return clock.offsetMs;
    },
    set clockOffsetMs(ms: number) {
      clock.offsetMs = ms;
    },
    svc,
    dir,
    mqttPort,
    operatorEnv,
    cli,
    async tenant(name) {
      const t = await ok(['tenant', 'create', name]);
      const token = async (role: string) =>
        String(
          (
            await ok([
              'user',
              'create',
              `${role.toLowerCase()}@${name.toLowerCase().replace(/[^a-z0-9]/g, '-')}.example`,
              '--tenant',
              name,
              '--role',
              role,
            ])
          )['token'],
        );
      return {
        id: String(t['id']),
        name,
        adminEnv: { ...base, HEPTAD_TOKEN: await token('Administrator') },
        readerEnv: { ...base, HEPTAD_TOKEN: await token('Reader') },
      };
    },
    async device(t, name, group) {
      const state = join(dir, name);
      const made = await ok([
        'device',
        'manufacture',
        '--state',
        state,
        '--rot',
        'soft',
        '--service',
        svc.url,
        '--platform-ca',
        String(svc.caPath),
      ]);
      const id = String(made['deviceId']);
      await ok(['device', 'register', '--from', join(state, 'registration.json')]);
      await ok(['device', 'claim', id, ...(group ? ['--device-group', group] : [])], t.adminEnv);
      await ok(['device', 'attest', '--state', state]);
      const pemDir = join(dir, `${name}-pem`);
      await ok(['device', 'cert', 'export', '--state', state, '--out', pemDir]);
      return {
        id,
        state,
        pemDir,
        chainPem: readFileSync(join(pemDir, 'device-chain.pem'), 'utf8'),
        keyPem: readFileSync(join(pemDir, 'device-key.pem'), 'utf8'),
      };
    },
    async close() {
      await svc.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fixture;
}

export interface DeviceSession {
  readonly client: MqttClient;
  readonly received: Array<{ topic: string; payload: string }>;
  readonly closed: Promise<void>;
}

/** Connects as the device with its exported PEMs; rejects with code NO_CONNACK when closed or refused first. */
export function deviceSession(
  port: number,
  caPem: string,
  d: { id: string; chainPem: string; keyPem: string },
  extra: Partial<IClientOptions> = {},
): Promise<DeviceSession> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({
      host: '127.0.0.1',
      port,
      protocol: 'mqtts',
      ca: caPem,
      cert: d.chainPem,
      key: d.keyPem,
      clientId: d.id,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...extra,
    });
    const received: DeviceSession['received'] = [];
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    let done = false;
    client.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
    client.once('connect', () => {
      done = true;
      resolve({ client, received, closed });
    });
    const fail = (why: string) => {
      if (done) return;
      done = true;
      client.end(true);
      reject(Object.assign(new Error(`no CONNACK (${why})`), { code: 'NO_CONNACK' }));
    };
    client.once('error', (e) => fail(e.message));
    client.once('close', () => fail('closed'));
  });
}

/** SUBACK's granted QoS (128: refused), without throwing on a refusal. */
export function granted(client: MqttClient, filter: string): Promise<number> {
  return new Promise((resolve, reject) => {
    client.subscribe(filter, { qos: 0 }, (err, g) => {
      const fromErr = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted?.[0];
      if (fromErr !== undefined) return resolve(fromErr);
      if (err) return reject(err);
      resolve(g?.[0]?.qos ?? -1);
    });
  });
}

export async function eventually(check: () => boolean, ms = 5_000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
