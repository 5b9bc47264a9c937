// Failure reporting end to end through the CLI and a running service (HTTPS, mTLS): a soft
// device is manufactured and attests, its runtime records reports into the durable queue,
// `heptad device reports` shows them, the uploader sends them with the device certificate, and
// the tenant lists, shows and downloads them. Every refusal is one coded line.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createReportSender, DeviceState, FsStorage, ReportQueue, uploadPending } from '@heptad/device';
import { type RunningService, resolveConfig, startService } from '@heptad/service';
import pino from 'pino';
import { createDatabase } from '../../../test/support/postgres.ts';
import { runCaptured } from './support/run-cli.ts';

const backendsToTest = process.env['HEPTAD_TEST_PG_URL'] ? ['sqlite', 'postgres'] : ['sqlite'];
const APP = '6d2c0f7e-52a1-4f44-9a5e-0b4c3f0f6a11';
const IMAGE = '11111111-2222-4333-8444-555555555555';

for (const backend of backendsToTest) {
  describe(`heptad error-report and device reports against a running service (${backend})`, () => {
    let svc: RunningService;
    let dir: string;
    let env: NodeJS.ProcessEnv;
    let adminEnv: NodeJS.ProcessEnv;
    let state: string;
    let deviceId: string;
    const cli = (argv: string[], extra: NodeJS.ProcessEnv = {}) =>
      runCaptured(argv, { ...env, ...extra }, dir);
    const as = (argv: string[]) => cli(argv, adminEnv);

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'heptad-cli-reports-'));
      const db =
        backend === 'postgres'
          ? await createDatabase(String(process.env['HEPTAD_TEST_PG_URL']), `clirep_${process.pid}`)
          : undefined;
      svc = await startService(
        resolveConfig({ data: join(dir, 'data'), listen: '127.0.0.1:0', ...(db ? { db } : {}) }),
        { logger: pino({ level: 'silent' }), env: {} },
      );
      const operator = readFileSync(svc.operatorTokenPath, 'utf8').trim();
      env = { HEPTAD_CONFIG_DIR: join(dir, 'config'), HEPTAD_URL: svc.url, HEPTAD_CA: String(svc.caPath) };
      const opEnv = { HEPTAD_TOKEN: operator };
      assert.equal((await cli(['tenant', 'create', 'Contoso'], opEnv)).code, 0);
      const u = await cli(
        [
          'user',
          'create',
          'reports@contoso.com',
          '--tenant',
          'Contoso',
          '--role',
          'Administrator',
          '--output',
          'json',
        ],
        opEnv,
      );
      assert.equal(u.code, 0, u.err);
      adminEnv = { HEPTAD_TOKEN: String(u.json()['token']) };
      assert.equal((await as(['product', 'create', 'DW100'])).code, 0);
      state = join(dir, 'dev1');
      const made = await cli([
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
        '--output',
        'json',
      ]);
      assert.equal(made.code, 0, made.err);
      deviceId = String(made.json()['deviceId']);
      assert.equal(
        (await cli(['device', 'register', '--from', join(state, 'registration.json')], opEnv)).code,
        0,
      );
      assert.equal((await as(['device', 'claim', deviceId, '--device-group', 'DW100/Field Test'])).code, 0);
      const att = await cli(['device', 'attest', '--state', state]);
      assert.equal(att.code, 0, att.err);
    });
    after(async () => {
      await svc.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('the device queues reports durably, shows them, uploads them over mTLS; the tenant lists, shows and downloads them', async () => {
      const queue = new ReportQueue(new FsStorage(state), { deviceId, bootId: randomUUID() });
      const crash = {
        kind: 'app-crash' as const,
        componentId: APP,
        imageId: IMAGE,
        details: { stack: 'TypeError: x\n    at readSensor (/opt/app/main.js:3:9)', signal: 'SIGABRT' },
      };
      queue.record(crash);
      queue.record(crash); // folded: one report, count 2
      queue.record({ kind: 'app-exit', componentId: APP, imageId: IMAGE, details: { exitCode: 3 } });

      const shown = await cli(['device', 'reports', '--state', state, '--output', 'json']);
      assert.equal(shown.code, 0, shown.err);
      const queued = shown.json()['reports'] as Array<Record<string, unknown>>;
      assert.deepEqual(
        queued.map((r) => [r['kind'], r['count'], r['sealed']]),
        [
          ['app-crash', 2, false],
          ['app-exit', 1, false],
        ],
      );
      const table = await cli(['device', 'reports', '--state', state]);
      assert.match(table.out, /^ID\s+AT\s+KIND\s+COUNT\s+SENT\s+SIGNATURE\n/);
      assert.match(table.err, /2 queued, 0 dropped/);

      const sender = createReportSender(new DeviceState(state));
      try {
        const up = await uploadPending(queue, sender);
        assert.deepEqual(up, { batches: 1, accepted: 2, duplicate: 0, refused: 0 });
      } finally {
        sender.close();
      }
      assert.equal(
        (
          (await cli(['device', 'reports', '--state', state, '--output', 'json'])).json()[
            'reports'
          ] as unknown[]
        ).length,
        0,
      );

      const list = await as([
        'error-report',
        'list',
        '--since',
        '7d',
        '--device-group',
        'DW100/Field Test',
        '--output',
        'json',
      ]);
      assert.equal(list.code, 0, list.err);
      const items = list.json().items ?? [];
      assert.equal(items.length, 2);
      assert.equal(items[0]?.['kind'], 'app-crash', 'most events first among equally many devices');
      assert.equal(items[0]?.['eventCount'], 2);
      const none = await as([
        'error-report',
        'list',
        '--device-group',
        'DW100/Production',
        '--output',
        'json',
      ]);
      assert.equal(none.json().items?.length, 0);
      const byImage = await as(['error-report', 'list', '--image', IMAGE.toUpperCase(), '--output', 'json']);
      assert.equal(byImage.json().items?.length, 2);
      const t = await as(['error-report', 'list']);
      assert.match(t.out, /^BUCKET\s+KIND\s+DEVICES\s+EVENTS\s+IMAGES\s+LAST SEEN\s+SIGNATURE\n/);

      const bucket = String(items[0]?.['id']);
      const show = await as(['error-report', 'show', bucket]);
      assert.equal(show.code, 0, show.err);
      assert.match(show.out, new RegExp(`devices \\(most events first\\):\\n  ${deviceId}  events 2`));

      const csvFile = join(dir, 'reports.csv');
      const dl = await as(['error-report', 'download', '--from', '1d', '--out', csvFile]);
      assert.equal(dl.code, 0, dl.err);
      const csv = readFileSync(csvFile, 'utf8').trimEnd().split('\r\n');
      assert.equal(
        csv[0],
        'DeviceId,EventType,EventClass,EventCategory,EventCount,Description,StartTime,EndTime,ComponentId,ImageId,Bucket',
      );
      assert.equal(csv.length, 3);
      assert.ok(
        csv.some(
          (l) =>
            l.startsWith(`${deviceId},AppCrash,Crash,Application,2,`) &&
            l.endsWith(`,${APP},${IMAGE},${bucket}`),
        ),
      );
      const json = await as(['error-report', 'download', '--format', 'json']);
      assert.equal((JSON.parse(json.out) as unknown[]).length, 2);
    });

    test('every refusal is one coded line, and a refused download leaves no file', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['error-report', 'list', '--since', 'last week'], /^heptad: CLI_USAGE: /],
        [['error-report', 'list', '--device-group', 'Nope/Nope'], /^heptad: DEVICE_GROUP_NOT_FOUND: /],
        [['error-report', 'list', '--limit', '0'], /^heptad: REQUEST_INVALID: /],
        [['error-report', 'show', '../../etc/passwd'], /^heptad: CLI_USAGE: /],
        [['error-report', 'show', '0'.repeat(32)], /^heptad: REPORT_BUCKET_NOT_FOUND: /],
        [['error-report', 'download', '--format', 'xml'], /^heptad: CLI_USAGE: /],
        [['error-report', 'download', '--output', 'json'], /^heptad: CLI_USAGE: /],
        [
          [
            'error-report',
            'download',
            '--from',
            '2026-11-22T10:00:00Z',
            '--to',
            '2026-11-21T10:00:00Z',
            '--out',
            join(dir, 'bad.csv'),
          ],
          /^heptad: REPORT_RANGE_INVALID: /,
        ],
      ];
      for (const [argv, err] of cases) {
        const r = await as(argv);
        assert.equal(r.code, /CLI_USAGE/.test(err.source) ? 2 : 1, argv.join(' '));
        assert.match(r.err, err, argv.join(' '));
        assert.equal(r.err.trim().split('\n').length <= 2, true, r.err);
      }
      assert.ok(!existsSync(join(dir, 'bad.csv')));
      assert.deepEqual(
        readdirSync(dir).filter((f) => f.includes('.part')),
        [],
      );
      const noToken = await cli(['error-report', 'list']);
      assert.match(noToken.err, /^heptad: (AUTH_TOKEN_MISSING|CLI_NOT_CONFIGURED): /);

      // The device's view: not a device folder, a damaged queue.
      assert.match((await cli(['device', 'reports', '--state', dir])).err, /^heptad: DEVICE_STATE_INVALID: /);
      writeFileSync(join(state, 'reports', 'queue.json'), '{"schema":1,"rep');
      assert.match(
        (await cli(['device', 'reports', '--state', state])).err,
        /^heptad: REPORT_QUEUE_INVALID: /,
      );
    });
  });
}
