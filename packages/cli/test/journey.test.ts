// The newcomer's journey (issue 9) as one test: `heptad demo --output json` runs as its own process
// (the service, devices as `heptad device run` processes, swtpm when present), every step must
// report ✓ with what it checked; then the service is started again on the demo's data folder and
// the outcome is asserted through the CLI's JSON output and the API — devices claimed and attested,
// deployments and their progress, error-report buckets, the runtime release withdrawn, the
// quarantined device refused by the CA and the broker. A second run is interrupted (SIGINT) and
// must stop every process it started and remove its temporary folder.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RunningService, resolveConfig, startService } from '@heptad/service';
import pino from 'pino';
import { HEPTAD_BIN } from './support/device-process.ts';
import { runCaptured } from './support/run-cli.ts';

type Json = Record<string, unknown>;
interface Line {
  type: 'step' | 'end';
  step?: number;
  name?: string;
  ok: boolean;
  summary?: string;
  checked?: string[];
  details?: Json;
  error?: { code: string };
  [k: string]: unknown;
}

const IDS = {
  crasher: '0c3d5e7f-1a2b-4c3d-9e4f-5a6b7c8d9e0f',
  intruder: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
};
const RUNTIME = '00000000-0000-0000-0000-000000000000';
/** Goal: under 60 s; bounded far above it, for a loaded 2-core CI machine. */
const DEMO_TIMEOUT_MS = 300_000;

/** Runs `heptad demo ARGS --output json`; resolves with its JSON lines and exit status. */
function runDemo(
  args: string[],
  onLine: (l: Line, child: ReturnType<typeof spawn>) => void = () => {},
): Promise<{ lines: Line[]; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HEPTAD_BIN, 'demo', ...args, '--output', 'json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Line[] = [];
    let buf = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (text.trim() === '') continue;
        const l = JSON.parse(text) as Line;
        lines.push(l);
        onLine(l, child);
      }
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      reject(
        new Error(
          `heptad demo did not finish in ${DEMO_TIMEOUT_MS} ms:\n${JSON.stringify(lines)}\n${stderr}`,
        ),
      );
    }, DEMO_TIMEOUT_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ lines, code, stderr });
    });
  });
}

const gone = (pid: number): boolean => {
  try {
    process.kill(-pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
};

describe('the journey: heptad demo end to end', () => {
  let dir: string;
  let data: string;
  let run: { lines: Line[]; code: number | null; stderr: string };
  let svc: RunningService | undefined;
  let env: NodeJS.ProcessEnv;
  const step = (name: string): Line => {
    const l = run.lines.find((x) => x.type === 'step' && x.name === name);
    assert.ok(l, `no step ${name}: ${run.stderr}`);
    return l;
  };
  const cli = async (argv: string[], operator = false): Promise<Json & { items?: Json[] }> => {
    const r = await runCaptured(
      [...argv, '--output', 'json'],
      operator
        ? { ...env, HEPTAD_TOKEN: readFileSync(join(data, 'service', 'operator-token'), 'utf8').trim() }
        : env,
      dir,
    );
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.err}`);
    return r.json();
  };

  before(
    async () => {
      dir = mkdtempSync(join(tmpdir(), 'heptad-journey-'));
      data = join(dir, 'demo');
      run = await runDemo(['--data', data]);
    },
    { timeout: DEMO_TIMEOUT_MS + 60_000 },
  );
  after(async () => {
    await svc?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every step reports ✓, in order, and the demo exits 0 within its goal', () => {
    assert.equal(run.code, 0, `${run.stderr}\n${JSON.stringify(run.lines, null, 1)}`);
    const steps = run.lines.filter((l) => l.type === 'step');
    assert.deepEqual(
      steps.map((l) => [l.step, l.name, l.ok]),
      [
        [1, 'service', true],
        [2, 'tenant', true],
        [3, 'devices', true],
        [4, 'attest', true],
        [5, 'apps', true],
        [6, 'error-reports', true],
        [7, 'runtime-release', true],
        [8, 'quarantine', true],
        [9, 'done', true],
      ],
    );
    for (const l of steps) assert.ok((l.checked ?? []).length > 0, `step ${l.name} says what it checked`);
    const end = run.lines.at(-1);
    assert.equal(end?.type, 'end');
    assert.equal(end?.['ok'], true);
    assert.equal(end?.['kept'], true);
    assert.equal(end?.['dataDir'], data);
    assert.ok(Number(end?.['wallMs']) > 0);
  });

  test('the devices ran as their own processes, attested, and are all stopped', () => {
    const devices = (step('devices').details?.['devices'] ?? []) as Array<{
      name: string;
      rot: string;
      pid: number;
    }>;
    assert.ok(devices.length >= 3);
    assert.deepEqual(
      devices.slice(0, 3).map((d) => d.rot),
      ['soft', 'soft', 'soft'],
    );
    for (const d of devices) assert.ok(gone(d.pid), `${d.name} (pid ${d.pid}) still runs`);
    const attested = (step('attest').details?.['devices'] ?? []) as Array<{ name: string; hours: number }>;
    assert.equal(attested.length, devices.length);
    for (const a of attested) assert.ok(a.hours > 23 && a.hours <= 24.1, `${a.name}: ${a.hours} h`);
  });

  describe('asserted again through the API, on a service started on the demo’s data', () => {
    let ids: Record<string, string>;
    before(async () => {
      svc = await startService(
        resolveConfig({ data: join(data, 'service'), listen: '127.0.0.1:0', mqttListen: 'off' }),
        { logger: pino({ level: 'silent' }), env: {} },
      );
      // The demo's saved profile (its Administrator), pointed at this service.
      env = {
        HEPTAD_CONFIG_DIR: join(data, 'cli-config'),
        HEPTAD_URL: svc.url,
        HEPTAD_CA: String(svc.caPath),
      };
      ids = Object.fromEntries(
        ((step('devices').details?.['devices'] ?? []) as Array<{ name: string; id: string }>).map((d) => [
          d.name,
          d.id,
        ]),
      );
    });

    test('the tenant holds every device, claimed into its group; dev2 is quarantined', async () => {
      const listed = (await cli(['device', 'list'])).items ?? [];
      assert.deepEqual(listed.map((d) => d['id']).sort(), Object.values(ids).sort());
      const dev2 = await cli(['device', 'show', String(ids['dev2'])]);
      assert.ok(dev2['quarantinedAt'], 'dev2 quarantined');
      const dev1 = await cli(['device', 'show', String(ids['dev1'])]);
      assert.equal(dev1['quarantinedAt'], null);
    });

    test('the Field Test deployments, and the devices’ progress on them', async () => {
      const deps = (await cli(['deployment', 'list', '--device-group', 'DW100/Field Test'])).items ?? [];
      assert.equal(deps.length, 3, 'blink+telemetry, telemetry 1.1.0, crasher+intruder');
      const shown = await cli(['deployment', 'show', String(deps[1]?.['id'])]);
      const items = ((shown['progress'] as Json)['items'] ?? []) as Array<{
        deviceId: string;
        state: string;
      }>;
      const field = Object.entries(ids).filter(([n]) => n !== 'dev3');
      for (const [n, id] of field)
        assert.equal(
          items.find((i) => i.deviceId === id)?.state,
          'installed',
          `${n} installed telemetry 1.1.0`,
        );
    });

    test('the crash and the refused attempts are error-report buckets', async () => {
      const buckets = (await cli(['error-report', 'list', '--since', '1d'])).items ?? [];
      const crash = buckets.find((b) => b['kind'] === 'app-crash' && JSON.stringify(b).includes(IDS.crasher));
      assert.ok(crash, JSON.stringify(buckets));
      assert.equal(crash['deviceCount'], 1);
      const violations = buckets.filter(
        (b) => b['kind'] === 'capability-violation' && JSON.stringify(b).includes(IDS.intruder),
      );
      assert.ok(violations.length > 0, JSON.stringify(buckets));
      assert.ok(
        violations.some((b) => Number(b['deviceCount']) >= 3),
        'every Field Test device recorded the refusals',
      );
    });

    test('runtime 1.1.0 is withdrawn and offered to nobody; the evaluation device kept it', async () => {
      const releases = (await cli(['runtime', 'list'], true)).items ?? [];
      const r11 = releases.find((r) => r['version'] === '1.1.0');
      assert.ok(r11?.['withdrawn'], JSON.stringify(releases));
      for (const g of ['DW100/Field Test', 'DW100/Field Test OS Evaluation']) {
        const offered = await cli(['device-group', 'runtime', g]);
        assert.doesNotMatch(JSON.stringify(offered), /"1\.1\.0"/, `${g} is offered 1.1.0`);
      }
      const rows = (await cli(['device', 'update-status', String(ids['dev3'])])).items ?? [];
      const rt = rows.find((r) => r['componentId'] === RUNTIME);
      // After the withdrawal the feed falls back to 1.0.0, which dev3 (floor 2) refuses.
      assert.equal(rt?.['state'], 'failed');
      assert.equal(rt?.['code'], 'BOOT_ROLLBACK_REFUSED');
      const boot = JSON.parse(readFileSync(join(data, 'devices', 'dev3', 'boot.json'), 'utf8')) as Json;
      assert.deepEqual([boot['committed'], boot['floor']], ['B', 2]);
      const dev1Boot = JSON.parse(readFileSync(join(data, 'devices', 'dev1', 'boot.json'), 'utf8')) as Json;
      assert.deepEqual([dev1Boot['committed'], dev1Boot['floor']], ['A', 1]);
    });

    test('the quarantined device was refused by the CA and by the broker, as security events', async () => {
      const q = step('quarantine');
      assert.match(String(q.details?.['reconnect']), /CONNACK 5|closed/);
      const events = (await cli(['security-event', 'list', '--device', String(ids['dev2'])])).items ?? [];
      const seen = events.map((e) => `${e['kind']} ${e['reason']}`);
      assert.ok(seen.includes('attestation.refused ATTEST_DEVICE_QUARANTINED'), seen.join());
      assert.ok(
        seen.some((s) => s.startsWith('broker.refused ')),
        seen.join(),
      );
      // Nothing refused for the others.
      const dev1Events = (await cli(['security-event', 'list', '--device', String(ids['dev1'])])).items ?? [];
      assert.deepEqual(dev1Events, []);
      // The demo's own refused attestation, as the CLI printed it.
      assert.ok(
        (q.checked ?? []).some((c) => /attestation at boot refused, ATTEST_DEVICE_QUARANTINED/.test(c)),
        JSON.stringify(q.checked),
      );
    });
  });
});

describe('the journey: Ctrl-C', () => {
  test('SIGINT stops every device, swtpm and the service, and removes the temporary folder', {
    timeout: DEMO_TIMEOUT_MS + 60_000,
  }, async () => {
    let pids: number[] = [];
    let dataDir = '';
    const run = await runDemo([], (l, child) => {
      if (l.type === 'step' && l.name === 'service')
        dataDir = String(l.details?.['dataDir']).replace(/\/service$/, '');
      if (l.type === 'step' && l.name === 'devices') {
        pids = ((l.details?.['devices'] ?? []) as Array<{ pid: number }>).map((d) => d.pid);
        child.kill('SIGINT');
      }
    });
    assert.notEqual(run.code, 0, 'interrupted is not success');
    assert.match(run.stderr, /CLI_DEMO_INTERRUPTED/);
    assert.ok(pids.length >= 3, JSON.stringify(run.lines));
    for (const pid of pids) assert.ok(gone(pid), `device process group ${pid} still runs`);
    const end = run.lines.at(-1);
    assert.equal(end?.type, 'end');
    assert.equal(end?.['interrupted'], true);
    assert.ok(dataDir !== '' && !existsSync(dataDir), `${dataDir} removed`);
  });
});
