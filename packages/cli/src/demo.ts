// `heptad demo`: the whole loop, as a newcomer meets it, on one machine. The security service
// (SQLite, embedded broker) in this process; every other action through the CLI's own commands
// (run in-process, as a user would type them); every device its own `heptad device run` process.
// Each step checks what it claims through the CLI's JSON output, the service's API or the device's
// own state folder, and prints one line: ✓ or ✗, what was checked.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HeptadError, isHeptadError } from '@heptad/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import { str } from './args.ts';
import { DemoDevice, DemoSwtpm, onPath, TelemetryServer } from './demo-parts.ts';
import type { CommandContext, CommandSpec, Io } from './spec.ts';

const EXAMPLES = resolve(import.meta.dirname, '..', '..', '..', 'examples');
const PRODUCT = 'DW100';
const FIELD_TEST = `${PRODUCT}/Field Test`;
const OS_EVAL = `${PRODUCT}/Field Test OS Evaluation`;
const IDS = {
  blink: '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b',
  telemetry: '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b',
  crasher: '0c3d5e7f-1a2b-4c3d-9e4f-5a6b7c8d9e0f',
  intruder: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
} as const;
/** Bounds for waits on the devices: generous, so a loaded machine is slow, not failing. */
const BOOT_MS = 60_000;
const UPDATE_MS = 90_000;
/** `device run` settings: update checks on demand (update-now), apps committed after 1 s up. */
const DEVICE_FLAGS = ['--update-interval', '3600000', '--app-health-period', '1000'];

type Json = Record<string, unknown>;

/** One step's outcome: the line printed, and the same as a JSON line. */
export interface DemoStepResult {
  readonly step: number;
  readonly name: string;
  readonly ok: boolean;
  /** what was shown, in one sentence */
  readonly summary: string;
  /** each thing checked, with its observed value */
  readonly checked: readonly string[];
  readonly details?: Json;
  readonly error?: { code: string; message: string };
  readonly ms: number;
}

export interface DemoOptions {
  /** keep the data here (default: a temporary folder, removed at the end) */
  readonly data?: string;
  readonly keepRunning?: boolean;
  /** one result per step, as it finishes */
  readonly onStep: (r: DemoStepResult) => void;
  /** progress lines ("starting 4 devices…"), for a human; may be ignored */
  readonly onProgress?: (s: string) => void;
  /** resolves when the demo should stop (Ctrl-C); defaults to SIGINT/SIGTERM of this process */
  readonly stopSignal?: Promise<string>;
}

export interface DemoOutcome {
  readonly ok: boolean;
  readonly failedStep?: number;
  readonly interrupted?: boolean;
  /** the step that was running when the demo was interrupted */
  readonly interruptedAt?: number | undefined;
  readonly dataDir: string;
  readonly kept: boolean;
  /** start to step 9 (ms) */
  readonly wallMs: number;
}

class Interrupted extends Error {}

/** Runs the demo's journey; stops everything it started before it returns. */
export async function runDemo(o: DemoOptions): Promise<DemoOutcome> {
  const t0 = Date.now();
  const { runCli } = await import('./run.ts'); // lazily: run.ts → commands.ts → this file
  const keep = o.data !== undefined;
  const data = o.data ? resolve(o.data) : mkdtempSync(join(tmpdir(), 'heptad-demo-'));
  mkdirSync(data, { recursive: true });
  const progress = o.onProgress ?? (() => {});
  const devices: DemoDevice[] = [];
  let swtpm: DemoSwtpm | undefined;
  let telemetry: TelemetryServer | undefined;
  let svc: { close(): Promise<void>; url: string; mqttUrl: string | null; caPath: string | null } | undefined;
  const mqttClients: MqttClient[] = [];

  // Ctrl-C: every wait races this; cleanup below stops what was started.
  let signalled: string | undefined;
  const stop =
    o.stopSignal ??
    new Promise<string>((res) => {
      const on = (s: string) => res(s);
      process.once('SIGINT', on);
      process.once('SIGTERM', on);
    });
  const interrupted = stop.then((s) => {
    signalled = s;
    throw new Interrupted(s);
  });
  interrupted.catch(() => {});

  const env: NodeJS.ProcessEnv = { HEPTAD_CONFIG_DIR: join(data, 'cli-config') };
  let adminToken = '';
  let tenantId = '';
  const cli = async (argv: string[], as: 'operator' | 'admin' | 'none' = 'admin'): Promise<Json> => {
    let out = '';
    let err = '';
    const e = { ...env, ...(as === 'admin' ? { HEPTAD_TOKEN: adminToken } : {}) };
    if (as === 'none') delete e['HEPTAD_TOKEN'];
    const code = await runCli([...argv, '--output', 'json'], {
      stdout: (s) => {
        out += s;
      },
      stderr: (s) => {
        err += s;
      },
      env: e,
      cwd: data,
    });
    if (code !== 0)
      throw new HeptadError('CLI_DEMO_STEP_FAILED', `heptad ${argv.slice(0, 3).join(' ')}: ${err.trim()}`, {
        detail: { argv, stderr: err.trim() },
      });
    return out.trim() === '' ? {} : (JSON.parse(out) as Json);
  };

  let stepNo = 0;
  let failedStep: number | undefined;
  let interruptedAt: number | undefined;
  const step = async (
    name: string,
    fn: () => Promise<{ summary: string; checked: string[]; details?: Json }>,
  ): Promise<void> => {
    const n = ++stepNo;
    const s0 = Date.now();
    try {
      const r = await Promise.race([fn(), interrupted]);
      o.onStep({ step: n, name, ok: true, ...r, ms: Date.now() - s0 });
    } catch (e) {
      if (e instanceof Interrupted) {
        interruptedAt = n;
        throw e;
      }
      failedStep = n;
      const code = isHeptadError(e) ? e.code : ((e as { code?: string }).code ?? 'INTERNAL_ERROR');
      const message = (e as Error).message ?? String(e);
      o.onStep({
        step: n,
        name,
        ok: false,
        summary: `failed: ${message}`,
        checked: [],
        error: { code: String(code), message },
        ms: Date.now() - s0,
      });
      throw e;
    }
  };
  const check = (cond: unknown, what: string): void => {
    if (!cond) throw new HeptadError('CLI_DEMO_STEP_FAILED', what);
  };

  let wallMs = 0;
  let ok = false;
  try {
    // ---- 1. the service ----------------------------------------------------------------------
    await step('service', async () => {
      const [{ resolveConfig, startService }, { default: pino }] = await Promise.all([
        import('@heptad/service'),
        import('pino'),
      ]);
      const s = await startService(
        resolveConfig({ data: join(data, 'service'), listen: '127.0.0.1:0', mqttListen: '127.0.0.1:0' }),
        { logger: pino({ level: 'silent' }), env: {} },
      );
      svc = s;
      env['HEPTAD_URL'] = s.url;
      env['HEPTAD_CA'] = String(s.caPath);
      env['HEPTAD_TOKEN'] = readFileSync(s.operatorTokenPath, 'utf8').trim();
      const tenants = await cli(['tenant', 'list'], 'operator');
      check(Array.isArray(tenants['items']), 'the API answers the operator');
      check(s.mqttUrl, 'the embedded broker listens');
      return {
        summary: `security service at ${s.url} on SQLite (${join(data, 'service')}), embedded MQTT broker at ${s.mqttUrl}`,
        checked: ['the REST API answers the operator token', `broker listening: ${s.mqttUrl}`],
        details: { url: s.url, mqttUrl: s.mqttUrl, dataDir: join(data, 'service') },
      };
    });

    // ---- 2. tenant, user, product ------------------------------------------------------------
    await step('tenant', async () => {
      const tenant = await cli(['tenant', 'create', 'Contoso'], 'operator');
      const user = await cli(
        ['user', 'create', 'admin@contoso.example', '--tenant', 'Contoso', '--role', 'Administrator'],
        'operator',
      );
      adminToken = String(user['token']);
      tenantId = String(tenant['id']);
      await cli(
        [
          'login',
          '--url',
          String(env['HEPTAD_URL']),
          '--token',
          adminToken,
          '--ca',
          String(env['HEPTAD_CA']),
        ],
        'none',
      );
      await cli(['product', 'create', PRODUCT, '--description', 'Dishwasher']);
      const groups = ((await cli(['device-group', 'list', '--product', PRODUCT]))['items'] ?? []) as Json[];
      const names = groups.map((g) => String(g['name'])).sort();
      for (const g of ['Development', 'Field Test', 'Production', 'Field Test OS Evaluation'])
        check(names.includes(g), `default device group ${g} missing (got ${names.join(', ')})`);
      const feeds = groups.map((g) => `${g['name']}→${g['osFeed']}`);
      return {
        summary: `tenant Contoso, Administrator admin@contoso.example, product ${PRODUCT} with ${groups.length} default device groups`,
        checked: [`groups: ${names.join(', ')}`, `OS feeds: ${feeds.join(', ')}`],
        details: { tenantId: tenant['id'], groups: names },
      };
    });

    // ---- 3. devices --------------------------------------------------------------------------
    const keys = join(data, 'keys');
    mkdirSync(keys, { recursive: true });
    const rtFile = (v: string) => join(keys, `heptad-runtime-${v}.hpkg`);
    const packRuntime = async (version: string, sv: number) => {
      await cli(
        [
          'runtime',
          'pack',
          '--out',
          rtFile(version),
          '--version',
          version,
          '--security-version',
          String(sv),
          '--key',
          join(keys, 'build.key'),
        ],
        'none',
      );
      await cli(['runtime', 'sign', rtFile(version), '--key', join(keys, 'platform-runtime.key')], 'none');
    };
    const withTpm = onPath('swtpm');
    const plan: Array<{ name: string; rot: 'soft' | 'tpm'; group: string }> = [
      { name: 'dev1', rot: 'soft', group: FIELD_TEST },
      { name: 'dev2', rot: 'soft', group: FIELD_TEST },
      { name: 'dev3', rot: 'soft', group: OS_EVAL },
      ...(withTpm ? [{ name: 'dev4', rot: 'tpm' as const, group: FIELD_TEST }] : []),
    ];
    const byName = (n: string): DemoDevice => {
      const d = devices.find((x) => x.name === n);
      if (!d) throw new HeptadError('CLI_DEMO_STEP_FAILED', `${n} is not running`);
      return d;
    };
    await step('devices', async () => {
      for (const k of ['build.key', 'platform-runtime.key', 'developer.key'])
        await cli(['key', 'create', '--out', join(keys, k)], 'none');
      progress('packing and signing the device runtime 1.0.0…');
      await packRuntime('1.0.0', 1);
      // The platform operator trusts the runtime signer and releases the factory runtime on every feed.
      await cli(['runtime', 'signer', 'add', join(keys, 'platform-runtime.key.pub')], 'operator');
      await cli(['runtime', 'publish', rtFile('1.0.0')], 'operator');
      await cli(['runtime', 'promote', '1.0.0', '--to', 'retail'], 'operator');
      if (withTpm) swtpm = await DemoSwtpm.start(join(data, 'swtpm'));
      mkdirSync(join(data, 'devices'), { recursive: true });
      mkdirSync(join(data, 'logs'), { recursive: true });
      const made = await Promise.all(
        plan.map(async (p) => {
          const state = join(data, 'devices', p.name);
          const m = await cli(
            [
              'device',
              'manufacture',
              '--state',
              state,
              '--rot',
              p.rot === 'tpm' ? `tpm:127.0.0.1:${swtpm?.port}` : 'soft',
              '--service',
              String(env['HEPTAD_URL']),
              '--platform-ca',
              String(env['HEPTAD_CA']),
              '--runtime',
              rtFile('1.0.0'),
              '--runtime-signer',
              join(keys, 'platform-runtime.key.pub'),
            ],
            'none',
          );
          const id = String(m['deviceId']);
          await cli(['device', 'register', '--from', join(state, 'registration.json')], 'operator');
          await cli(['device', 'claim', id, '--device-group', p.group]);
          return { ...p, state, id };
        }),
      );
      for (const m of made) {
        progress(`starting ${m.name} (${m.rot}) in ${m.group}: heptad device run --state ${m.state}`);
        devices.push(
          new DemoDevice(m.name, m.state, m.id, join(data, 'logs', `${m.name}.log`), DEVICE_FLAGS),
        );
      }
      const listed = ((await cli(['device', 'list']))['items'] ?? []) as Json[];
      check(listed.length === made.length, `${made.length} devices claimed (got ${listed.length})`);
      return {
        summary: `${made.length} devices manufactured (${made.map((m) => `${m.name} ${m.rot}`).join(', ')}${withTpm ? '' : '; no swtpm on PATH, so no TPM device'}), registered, claimed and started as their own heptad device run processes`,
        checked: [
          ...made.map(
            (m) => `${m.name} ${m.id.slice(0, 12)}… in ${m.group}, pid ${byName(m.name).child.pid}`,
          ),
        ],
        details: {
          devices: made.map((m) => ({
            name: m.name,
            id: m.id,
            rot: m.rot,
            group: m.group,
            state: m.state,
            pid: byName(m.name).child.pid,
            log: join(data, 'logs', `${m.name}.log`),
          })),
        },
      };
    });

    // ---- 4. attestation ----------------------------------------------------------------------
    await step('attest', async () => {
      const rows = await Promise.all(
        devices.map(async (d) => {
          const m = await d.waitFor(/attested: certificate (\S+) until (\S+)/, BOOT_MS);
          await d.waitFor(/update check \(boot\): done/, BOOT_MS);
          const notAfter = Date.parse(String(m[2]));
          const hours = (notAfter - Date.now()) / 3_600_000;
          check(
            hours > 23 && hours <= 24.1,
            `${d.name}: certificate valid for ${hours.toFixed(1)} h, not 24 h`,
          );
          const shown = await cli(['device', 'show', d.id]);
          return {
            name: d.name,
            serial: m[1],
            notAfter: m[2],
            hours: Math.round(hours * 10) / 10,
            rotKind: shown['rotKind'],
          };
        }),
      );
      return {
        summary: `${rows.length} devices attested at boot (quote over a fresh nonce, measured runtime) and each holds a 24 h certificate from the tenant CA`,
        checked: rows.map(
          (r) => `${r.name} (${r.rotKind}): certificate ${String(r.serial).slice(0, 10)}… valid ${r.hours} h`,
        ),
        details: { devices: rows },
      };
    });

    // ---- 5. apps from deployments ------------------------------------------------------------
    const apps = join(data, 'apps');
    mkdirSync(apps, { recursive: true });
    const field = () => devices.filter((d) => d.name !== 'dev3');
    const images: Record<string, string> = {};
    const packApp = async (name: keyof typeof IDS, version: string, edit?: (dir: string) => void) => {
      const src = join(apps, `${name}-${version}`);
      cpSync(join(EXAMPLES, name), src, { recursive: true });
      edit?.(src);
      const out = join(apps, `${name}-${version}.hpkg`);
      await cli(
        ['image', 'pack', src, '--out', out, '--key', join(keys, 'developer.key'), '--version', version],
        'none',
      );
      const added = await cli(['image', 'add', out]);
      images[`${name}@${version}`] = String(added['id']);
      return String(added['id']);
    };
    const updateAll = async (ds: DemoDevice[]) =>
      Promise.all(
        ds.map(async (d) => {
          const r = await cli(
            ['device', 'update-now', '--state', d.state, '--timeout', String(UPDATE_MS)],
            'none',
          );
          return { d, jobs: (r['jobs'] ?? []) as Json[], r };
        }),
      );
    const appsOf = (d: DemoDevice) =>
      JSON.parse(readFileSync(join(d.state, 'run', 'apps.json'), 'utf8')) as {
        apps: Array<{ name: string; version?: string; pid: number | null; state: string }>;
      };
    await step('apps', async () => {
      telemetry = await TelemetryServer.start(join(data, 'telemetry-server'));
      const telemetryEdit = (interval: number) => (src: string) => {
        const m = JSON.parse(readFileSync(join(src, 'app_manifest.json'), 'utf8')) as Json;
        (m['Capabilities'] as Json)['AllowedConnections'] = ['127.0.0.1'];
        // The device certificate is granted to apps of its own tenant only.
        (m['Capabilities'] as Json)['DeviceAuthentication'] = tenantId;
        writeFileSync(join(src, 'app_manifest.json'), `${JSON.stringify(m, null, 2)}\n`);
        writeFileSync(
          join(src, 'config.json'),
          JSON.stringify({
            endpoints: [`https://127.0.0.1:${telemetry?.port}/v1/readings`],
            intervalMs: interval,
            deviceAuth: true,
            ca: telemetry?.caPem,
          }),
        );
      };
      const blink = await packApp('blink', '1.0.0');
      const t1 = await packApp('telemetry', '1.0.0', telemetryEdit(2000));
      const dep1 = await cli([
        'deployment',
        'create',
        '--device-group',
        FIELD_TEST,
        '--image',
        blink,
        '--image',
        t1,
      ]);
      progress(
        `deployed blink 1.0.0 + telemetry 1.0.0 to ${FIELD_TEST}; asking ${field()
          .map((d) => d.name)
          .join(', ')} to check now…`,
      );
      const first = await updateAll(field());
      for (const { d, jobs } of first) {
        const got = jobs.map((j) => `${j['name']} ${j['version']} ${j['state']}`).sort();
        check(
          got.join() === ['blink 1.0.0 installed', 'telemetry 1.0.0 installed'].join(),
          `${d.name}: jobs ${got.join(', ') || 'none'}`,
        );
      }
      const shown1 = await cli(['deployment', 'show', String(dep1['id'])]);
      const prog1 = ((shown1['progress'] as Json)['items'] ?? []) as Array<{
        deviceId: string;
        state: string;
      }>;
      for (const d of field())
        check(
          prog1.find((i) => i.deviceId === d.id)?.state === 'installed',
          `deployment progress for ${d.name}: ${prog1.find((i) => i.deviceId === d.id)?.state ?? 'none'}`,
        );
      // Telemetry runs: each device's certificate reaches the loopback HTTPS server.
      const deadline = Date.now() + BOOT_MS;
      while (field().some((d) => !telemetry?.posts.some((p) => p.subject === d.id))) {
        if (Date.now() > deadline)
          throw new HeptadError('CLI_DEMO_STEP_FAILED', 'no telemetry POST from every device');
        await new Promise((r) => setTimeout(r, 200));
      }

      // A new telemetry: only telemetry is updated and restarted, blink keeps running.
      const blinkPids = new Map(
        field().map((d) => [d.name, appsOf(d).apps.find((a) => a.name === 'blink')?.pid]),
      );
      const t2 = await packApp('telemetry', '1.1.0', telemetryEdit(1000));
      const dep2 = await cli([
        'deployment',
        'create',
        '--device-group',
        FIELD_TEST,
        '--image',
        blink,
        '--image',
        t2,
      ]);
      const marks = new Map(field().map((d) => [d.name, d.out.length]));
      const second = await updateAll(field());
      for (const { d, jobs } of second) {
        const got = jobs.map((j) => `${j['name']} ${j['version']} ${j['state']}`);
        check(
          got.includes('telemetry 1.1.0 installed'),
          `${d.name}: update jobs ${got.join(', ') || 'none'}`,
        );
        await d.waitFor(/supervisor: started telemetry 1\.1\.0/, UPDATE_MS, marks.get(d.name));
        const now = appsOf(d).apps;
        check(
          now.find((a) => a.name === 'blink')?.pid === blinkPids.get(d.name),
          `${d.name}: blink was restarted`,
        );
      }
      const shown2 = await cli(['deployment', 'show', String(dep2['id'])]);
      const prog2 = ((shown2['progress'] as Json)['items'] ?? []) as Array<{
        deviceId: string;
        state: string;
      }>;
      return {
        summary: `blink + telemetry packed, uploaded (re-signed with the tenant key), deployed to ${FIELD_TEST}: installed on ${field().length} devices; telemetry 1.1.0 then updated with only telemetry restarted`,
        checked: [
          ...field().map(
            (d) =>
              `${d.name}: blink 1.0.0 + telemetry 1.0.0 installed, telemetry POSTs with its device certificate, then telemetry 1.1.0 installed and restarted, blink pid ${blinkPids.get(d.name)} unchanged`,
          ),
          `deployment progress: ${prog2.map((i) => `${i.deviceId.slice(0, 8)}… ${i.state}`).join(', ')}`,
        ],
        details: {
          deployments: [dep1['id'], dep2['id']],
          progress: prog2,
          telemetryPosts: telemetry.posts.length,
        },
      };
    });

    // ---- 6. failures become error-report buckets ---------------------------------------------
    await step('error-reports', async () => {
      const crasher = await packApp('crasher', '1.0.0');
      const intruder = await packApp('intruder', '1.0.0', (src) => {
        // Loopback only: its forbidden host is refused by the supervisor before any lookup.
        writeFileSync(
          join(src, 'config.json'),
          JSON.stringify({
            disallowedHost: '127.0.0.2',
            disallowedPort: 9,
            victimComponentId: IDS.blink,
            directConnect: '127.0.0.1:9',
            deviceKeyPath: join(data, 'devices', 'dev1', 'secrets', 'tls-key.pem'),
          }),
        );
      });
      await cli([
        'deployment',
        'create',
        '--device-group',
        FIELD_TEST,
        '--image',
        String(images['blink@1.0.0']),
        '--image',
        String(images['telemetry@1.1.0']),
        '--image',
        crasher,
        '--image',
        intruder,
      ]);
      const marks = new Map(field().map((d) => [d.name, d.out.length]));
      const up = await updateAll(field());
      // The intruder lets a permission-model refusal escape on purpose (an uncaught error per start),
      // so during its trial it is an app that crashes: the update agent rolls it back and removes it.
      const intruderStates = new Map<string, string>();
      for (const { d, jobs } of up) {
        const got = jobs.map((j) => `${j['name']} ${j['state']}`);
        const intr = jobs.find((j) => j['name'] === 'intruder');
        intruderStates.set(d.name, String(intr?.['state']));
        check(
          got.includes('crasher installed') &&
            (intr?.['state'] === 'installed' || intr?.['state'] === 'rolled-back'),
          `${d.name}: jobs ${got.join(', ') || 'none'}`,
        );
      }
      // Its attempts, each refused by the supervisor (and recorded), up to the escaped one.
      await Promise.all(
        field().map((d) =>
          d.waitFor(/supervisor: refused intruder: permission-model/, UPDATE_MS, marks.get(d.name)),
        ),
      );
      // Press BUTTON_A on dev1: the crasher crashes (and is restarted alone).
      const dev1 = byName('dev1');
      const mark = dev1.out.length;
      writeFileSync(
        join(dev1.state, 'peripherals', 'sim-inputs.json'),
        JSON.stringify({ gpio: { BUTTON_A: 1 } }),
      );
      await dev1.waitFor(/supervisor: crasher exited with code 1/, UPDATE_MS, mark);
      writeFileSync(join(dev1.state, 'peripherals', 'sim-inputs.json'), JSON.stringify({ gpio: {} }));
      const uploads = await Promise.all(
        field().map(async (d) => ({
          d,
          r: await cli(['device', 'upload-reports', '--state', d.state], 'none'),
        })),
      );
      const buckets = ((await cli(['error-report', 'list', '--since', '1h']))['items'] ?? []) as Json[];
      const find = (kind: string, componentId: string) =>
        buckets.find(
          (b) =>
            b['kind'] === kind &&
            (b['componentId'] === componentId || JSON.stringify(b).includes(componentId)),
        );
      const crash = find('app-crash', IDS.crasher);
      check(crash, `no app-crash bucket for crasher (buckets: ${buckets.map((b) => b['kind']).join(', ')})`);
      const violations = buckets.filter(
        (b) => b['kind'] === 'capability-violation' && JSON.stringify(b).includes(IDS.intruder),
      );
      check(violations.length > 0, 'no capability-violation bucket for intruder');
      const intruderDevices = Math.max(...violations.map((b) => Number(b['deviceCount'] ?? 0)));
      return {
        summary: `crasher and intruder deployed; dev1's crash and every device's refused intruder attempts arrived as ${buckets.length} error-report buckets`,
        checked: [
          `uploads: ${uploads.map(({ d, r }) => `${d.name} ${r['accepted']} accepted`).join(', ')}`,
          `bucket app-crash (crasher): ${crash?.['eventCount']} event(s) on ${crash?.['deviceCount']} device(s)`,
          `intruder: ${[...intruderStates].map(([n, st]) => `${n} ${st}`).join(', ')} (it crashes on purpose after its attempts; a crashing update is rolled back)`,
          `${violations.length} capability-violation bucket(s) for intruder, up to ${intruderDevices} devices each`,
        ],
        details: { buckets },
      };
    });

    // ---- 7. a runtime release on retail-eval, then withdrawn ---------------------------------
    await step('runtime-release', async () => {
      const dev3 = byName('dev3');
      const dev1 = byName('dev1');
      progress('packing and signing the device runtime 1.1.0…');
      await packRuntime('1.1.0', 2);
      await cli(['runtime', 'publish', rtFile('1.1.0')], 'operator');
      const mark = dev3.out.length;
      const [evalUp, fieldUp] = await updateAll([dev3, dev1]);
      // dev1's answer also lists its (unchanged) apps: what matters is that no runtime is offered.
      const runtimeJobs = (jobs: Json[] | undefined) => (jobs ?? []).filter((j) => j['kind'] === 'runtime');
      const ej = (evalUp?.jobs ?? []).map((j) => `${j['kind']} ${j['version']} ${j['state']}`);
      check(
        ej.join() === 'runtime 1.1.0 activating',
        `dev3 (OS evaluation): jobs ${ej.join(', ') || 'none'}`,
      );
      check(
        runtimeJobs(fieldUp?.jobs).length === 0,
        `dev1 (Field Test, retail feed) was offered ${JSON.stringify(runtimeJobs(fieldUp?.jobs))}`,
      );
      await dev3.waitFor(/runtime 1\.1\.0 committed; anti-rollback floor 2/, UPDATE_MS, mark);
      await dev3.waitFor(/update check \(boot\): done/, UPDATE_MS, mark);
      const status3 = await cli(['device', 'update-status', dev3.id]);
      // Withdrawn: nobody is offered 1.1.0 any more.
      await cli(['runtime', 'withdraw', '1.1.0'], 'operator');
      const [evalAfter, fieldAfter] = await updateAll([dev3, dev1]);
      const offered = [...runtimeJobs(evalAfter?.jobs), ...runtimeJobs(fieldAfter?.jobs)].filter(
        (j) => j['version'] === '1.1.0',
      );
      check(offered.length === 0, 'a withdrawn release was still offered');
      check(
        runtimeJobs(fieldAfter?.jobs).length === 0,
        `dev1 was offered ${JSON.stringify(runtimeJobs(fieldAfter?.jobs))}`,
      );
      const back = runtimeJobs(evalAfter?.jobs).map((j) =>
        `${j['version']} ${j['state']} ${j['code'] ?? ''}`.trim(),
      );
      const releases = ((await cli(['runtime', 'list'], 'operator'))['items'] ?? []) as Json[];
      const boot3 = JSON.parse(readFileSync(join(dev3.state, 'boot.json'), 'utf8')) as Json;
      return {
        summary:
          'runtime 1.1.0 published to retail-eval: the OS-evaluation device took it (reboot, trial, commit), the Field Test device was not offered it; withdrawn, nobody is offered it',
        checked: [
          `dev3: runtime 1.1.0 installed, committed, floor ${boot3['floor']}, slot ${boot3['committed']}`,
          'dev1 (retail feed): offered no runtime',
          `after withdraw: dev1 offered no runtime; dev3 offered ${back.join(', ') || 'nothing'} (the feed's fallback, refused below its floor), never 1.1.0`,
        ],
        details: {
          releases,
          dev3Status: status3['items'] ?? status3,
          dev3Boot: boot3,
          dev3AfterWithdraw: evalAfter?.jobs,
        },
      };
    });

    // ---- 8. quarantine -----------------------------------------------------------------------
    await step('quarantine', async () => {
      const dev2 = byName('dev2');
      const pem = join(data, 'dev2-pem');
      await cli(['device', 'cert', 'export', '--state', dev2.state, '--out', pem, '--force'], 'none');
      const opts = () => ({
        host: '127.0.0.1',
        port: Number(new URL(String(svc?.mqttUrl)).port),
        protocol: 'mqtts' as const,
        ca: readFileSync(join(pem, 'platform-ca.pem')),
        cert: readFileSync(join(pem, 'device-chain.pem')),
        key: readFileSync(join(pem, 'device-key.pem')),
        clientId: dev2.id,
        protocolVersion: 4 as const,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 15_000,
      });
      const connect = () =>
        new Promise<{ client: MqttClient; connected: boolean; why: string }>((res) => {
          const c = mqtt.connect(opts());
          mqttClients.push(c);
          let done = false;
          const finish = (connected: boolean, why: string) => {
            if (done) return;
            done = true;
            res({ client: c, connected, why });
          };
          c.once('connect', () => finish(true, 'CONNACK 0'));
          c.once('error', (e: Error & { code?: string | number }) =>
            finish(false, typeof e.code === 'number' ? `CONNACK ${e.code}` : String(e.code ?? e.message)),
          );
          c.once('close', () => finish(false, 'connection closed without CONNACK'));
        });
      const live = await connect();
      check(live.connected, `dev2 could not connect to the broker with its certificate: ${live.why}`);
      const closed = new Promise<void>((res) => live.client.once('close', () => res()));
      await cli(['device', 'quarantine', dev2.id, '--reason', 'heptad demo: suspected clone']);
      const dropped = await Promise.race([
        closed.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 15_000).unref()),
      ]);
      check(dropped, 'the broker did not end dev2’s live session within 15 s of the quarantine');
      live.client.end(true);
      const again = await connect();
      again.client.end(true);
      check(!again.connected, 'dev2 could connect again after the quarantine');
      // The device asks for a certificate itself: power it off and on; it attests at boot and is
      // refused. (Not `heptad device attest` beside the running runtime: its apps extend the
      // measurement log meanwhile, and the quote would race them.)
      await dev2.stop();
      const reborn = new DemoDevice('dev2', dev2.state, dev2.id, dev2.logFile, DEVICE_FLAGS);
      devices[devices.indexOf(dev2)] = reborn;
      const refusal = await reborn.waitFor(/attestation failed: (\S+)/, BOOT_MS);
      const attest = String(refusal[1]);
      check(attest === 'ATTEST_DEVICE_QUARANTINED', `dev2's attestation at boot: ${attest}`);
      const shown = await cli(['device', 'show', dev2.id]);
      const events = ((await cli(['security-event', 'list', '--device', dev2.id]))['items'] ?? []) as Json[];
      const kinds = [...new Set(events.map((e) => `${e['kind']}${e['reason'] ? ` ${e['reason']}` : ''}`))];
      return {
        summary:
          'dev2 quarantined: its live MQTT session was ended at once, a new connection is refused, and it is refused a certificate',
        checked: [
          `MQTT with dev2's exported certificate: connected (${live.why}), closed by the broker on quarantine, reconnect refused (${again.why})`,
          `dev2 powered off and on: its attestation at boot refused, ${attest}`,
          `security events: ${kinds.join(', ') || 'none'}`,
        ],
        details: { device: shown, securityEvents: events, reconnect: again.why },
      };
    });

    // ---- 9. where things are -----------------------------------------------------------------
    await step('done', async () => {
      wallMs = Date.now() - t0;
      const cfg = `HEPTAD_CONFIG_DIR=${env['HEPTAD_CONFIG_DIR']}`;
      const commands = [
        `${cfg} heptad device list`,
        `${cfg} heptad deployment list --device-group "${FIELD_TEST}"`,
        `${cfg} heptad error-report list --since 1h`,
        `${cfg} heptad security-event list`,
        `${cfg} heptad audit list`,
        `heptad device status --state ${join(data, 'devices', 'dev1')}`,
        `heptad device apps --state ${join(data, 'devices', 'dev1')}`,
        `heptad device peripherals --state ${join(data, 'devices', 'dev1')}`,
        `tail -f ${join(data, 'logs', 'dev1.log')}`,
      ];
      return {
        summary: `the whole loop in ${(wallMs / 1000).toFixed(1)} s; data in ${data}${o.keepRunning ? ' (running until Ctrl-C)' : keep ? ' (kept; stopped)' : ' (removed at exit: --data DIR keeps it, --keep-running leaves it up)'}`,
        checked: commands.map((c) => `try: ${c}`),
        details: {
          dataDir: data,
          url: svc?.url,
          mqttUrl: svc?.mqttUrl,
          wallMs,
          commands,
          operatorToken: join(data, 'service', 'operator-token'),
        },
      };
    });
    ok = true;
    if (o.keepRunning) {
      progress('running; Ctrl-C stops everything');
      await interrupted.catch(() => {});
    }
  } catch (e) {
    if (!(e instanceof Interrupted) && failedStep === undefined) throw e;
  } finally {
    progress('stopping devices, servers and the service…');
    for (const c of mqttClients) c.end(true);
    const s0 = Date.now();
    await Promise.all(devices.map((d) => d.stop()));
    const s1 = Date.now();
    await swtpm?.stop();
    await telemetry?.stop();
    const s2 = Date.now();
    await svc?.close();
    progress(`stopped: devices ${s1 - s0} ms, servers ${s2 - s1} ms, service ${Date.now() - s2} ms`);
    // A failed run keeps its data to look at; a clean one removes a temporary folder.
    if (!keep && (ok || signalled !== undefined)) rmSync(data, { recursive: true, force: true });
  }
  return {
    ok: ok,
    ...(failedStep !== undefined ? { failedStep } : {}),
    ...(signalled !== undefined && !ok ? { interrupted: true, interruptedAt } : {}),
    dataDir: data,
    kept: keep || (!ok && signalled === undefined),
    wallMs: wallMs || Date.now() - t0,
  };
}

/** The `heptad demo` command: prints each step as a line (or a JSON line) as it finishes. */
export const demoCommand: CommandSpec = {
  path: ['demo'],
  summary: 'Run the whole loop on this machine: service, devices, apps, updates, failures, quarantine',
  description:
    'Starts the security service (SQLite, embedded MQTT broker) on loopback, creates a tenant, a user and a ' +
    'product, manufactures three soft devices (and a fourth on swtpm when swtpm is on the PATH), starts each ' +
    'as its own heptad device run process and shows it attest; deploys the blink and telemetry examples and ' +
    'updates telemetry; deploys crasher and intruder and shows their failures as error-report buckets; ' +
    'publishes a runtime to retail-eval, shows the OS-evaluation device take it, withdraws it; quarantines a ' +
    'device and shows it refused by the broker and the CA. Each step prints one line with ✓ or ✗ and what ' +
    'was checked (--output json: one JSON object per line). A failing step stops the demo (exit 1) and its ' +
    'data is kept. Ctrl-C stops every device, the service and the servers.',
  args: [],
  options: [
    {
      name: 'data',
      type: 'string',
      valueName: 'DIR',
      description: 'keep the data here (default: a temporary folder, removed at the end)',
    },
    {
      name: 'keep-running',
      type: 'boolean',
      description: 'leave the service and devices running after step 9, until Ctrl-C',
    },
  ],
  service: false,
  examples: ['heptad demo', 'heptad demo --data ./demo --keep-running', 'heptad demo --output json'],
  async run(ctx: CommandContext) {
    const json = ctx.options['output'] === 'json';
    const io: Io = ctx.io;
    const data = str(ctx, 'data');
    const outcome = await runDemo({
      ...(data !== undefined ? { data: resolve(io.cwd, data) } : {}),
      keepRunning: ctx.options['keep-running'] === true,
      onStep: (r) => {
        if (json) io.stdout(`${JSON.stringify({ type: 'step', ...r })}\n`);
        else {
          io.stdout(`${r.ok ? '✓' : '✗'} ${r.step}. ${r.summary}  (${(r.ms / 1000).toFixed(1)} s)\n`);
          for (const c of r.checked) io.stdout(`    ${c}\n`);
        }
      },
      onProgress: (s) => {
        if (!json) io.stderr(`  … ${s}\n`);
      },
    });
    if (json) io.stdout(`${JSON.stringify({ type: 'end', ...outcome })}\n`);
    if (outcome.interrupted) {
      // Everything the demo started is stopped; a CLI call still polling a device that is gone
      // (update-now waits up to its timeout) must not hold the process: leave in 2 s at the latest.
      setTimeout(() => process.exit(130), 2_000).unref();
      throw new HeptadError('CLI_DEMO_INTERRUPTED', `stopped during step ${outcome.interruptedAt ?? '?'}`);
    }
    if (!outcome.ok && !outcome.interrupted)
      throw new HeptadError(
        'CLI_DEMO_STEP_FAILED',
        `step ${outcome.failedStep} failed; data kept in ${outcome.dataDir}`,
      );
    return { data: outcome, printed: true };
  },
};
