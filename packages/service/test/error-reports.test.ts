// Error reports in the service: ingest over mTLS (idempotent, validated, rate limited, atomic),
// bucketing, the tenant API (filters, paging, detail), export (CSV/JSON) and retention.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect, createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { DeviceServiceClient, FaultyStorage, ReportQueue, uploadPending } from '@heptad/device';
import { type ErrorReport, MAX_REPORT_BATCH } from '@heptad/protocol';
import { sql } from 'kysely';
import { IngestGroupCommit } from '../src/error-reports/group-commit.ts';
import { DEFAULT_ERROR_REPORT_OPTIONS, prepareBatch } from '../src/error-reports/ingest.ts';
import { ErrorReportRetention } from '../src/error-reports/retention.ts';
import { type CertifiedDevice, certifiedDevice, type TlsCallResult, tlsCall } from './support/device-tls.ts';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

const APP = '6d2c0f7e-52a1-4f44-9a5e-0b4c3f0f6a11';
const APP2 = '7e3d1f8f-63b2-4a55-8b6f-1c5d4f1f7b22';
const IMAGE_1 = '11111111-2222-4333-8444-555555555555';
const IMAGE_2 = '21111111-2222-4333-8444-555555555555';
const BOOT = 'b3f8e0a2-1c4d-4e5f-8a9b-0c1d2e3f4a5b';
const RATE_BURST = 300;

/** The same crash, as two installs would report it: other paths, lines, addresses, ids. */
const STACK_A = `TypeError: Cannot read properties of undefined (reading 'x')
    at readSensor (/opt/heptad/apps/${randomUUID()}/main.js:41:13)
    at Timeout.tick [as _onTimeout] (/opt/heptad/apps/x/main.js:88:5)
    at listOnTimeout (node:internal/timers:581:17)`;
const STACK_B = `TypeError: Cannot read properties of null (reading 'y')
    at readSensor (/srv/other/place/main.js:44:9)
    at Timeout.tick [as _onTimeout] (/srv/other/place/main.js:90:1)
    at listOnTimeout (node:internal/timers:594:17)`;
const STACK_OTHER = `RangeError: Invalid array length
    at grow (/opt/heptad/apps/x/buffer.js:10:3)`;

for (const backend of backends()) {
  describe(`error reports on ${backend}`, () => {
    let svc: TestService;
    let t: SeededTenant;
    const devices: CertifiedDevice[] = [];
    const certified = async () => {
      const d = await certifiedDevice(svc, t.tokens.Contributor);
      devices.push(d);
      return d;
    };
    const iso = (msAgo: number) => new Date(svc.now.getTime() - msAgo).toISOString();
    const report = (over: Record<string, unknown> = {}) => ({
      id: randomUUID(),
      componentId: APP,
      imageId: IMAGE_1,
      bootId: BOOT,
      at: iso(60_000),
      kind: 'app-crash',
      count: 1,
      details: { signal: 'SIGSEGV', exitCode: 139 },
      ...over,
    });
    const upload = (d: CertifiedDevice, body: unknown): Promise<TlsCallResult> =>
      tlsCall(svc, 'POST', '/v1/device/error-reports', { body, cert: d.certPem, key: d.keyPem });
    const reader = (url: string) => svc.call('GET', url, { token: t.tokens.Reader });

    before(async () => {
      svc = await createTestService(backend, 'errreports', {
        https: true,
        errorReports: { rateBurst: RATE_BURST, ratePerMinute: 60 },
      });
      t = await seedTenant(svc, 'Reports');
    });
    after(async () => {
      for (const d of devices) d.device.cleanup();
      await svc.close();
    });

    test('a batch is stored once: a retry (lost answer) counts duplicates and stores nothing twice', async () => {
      const d = await certified();
      const batch = { reports: [report(), report(), report({ kind: 'app-exit', details: { exitCode: 2 } })] };
      const first = await upload(d, batch);
      assert.equal(first.status, 200, first.body);
      assert.deepEqual(first.json, { accepted: 3, duplicate: 0 });
      const retry = await upload(d, batch);
      assert.deepEqual(retry.json, { accepted: 0, duplicate: 3 });
      // A retry that adds new reports to the ones already stored: only the new ones count.
      const grown = await upload(d, { reports: [...batch.reports, report()] });
      assert.deepEqual(grown.json, { accepted: 1, duplicate: 3 });
      const n = await svc.db.selectFrom('error_reports').select('id').where('device_id', '=', d.id).execute();
      assert.equal(n.length, 4);
    });

    test('the same report id twice in one batch is stored once', async () => {
      const d = await certified();
      const r = report();
      const res = await upload(d, { reports: [r, r, report()] });
      assert.deepEqual(res.json, { accepted: 2, duplicate: 1 });
    });

    describe('storing several batches at once (the group commit)', () => {
      /** A device id of the right shape; the store does not require the device to exist. */
      const fakeDevice = () => randomUUID().replaceAll('-', '').padEnd(64, '0');
      const prepare = (deviceId: string, reports: Array<Record<string, unknown>>) =>
        prepareBatch(
          { deviceId, tenantId: t.id, serial: '', notAfter: '', deviceGroupId: null },
          reports as unknown as ErrorReport[],
          svc.now,
          DEFAULT_ERROR_REPORT_OPTIONS,
        ).prepared;
      const stored = async (deviceId: string) =>
        (
          await svc.db
            .selectFrom('error_reports')
            .select('id')
            .where('device_id', '=', deviceId)
            .orderBy('id')
            .execute()
        ).map((r) => r.id);

      test('an id inside a batch, in two batches of one group, or after a commit is stored once, new for the first batch', async () => {
        const dev = fakeDevice();
        const other = fakeDevice();
        type R = ReturnType<typeof report>;
        const [r1, r2, r3, r4, r5] = Array.from({ length: 5 }, () => report()) as [R, R, R, R, R];
        const scope = svc.store.forTenant(t.id).errorReports;
        const batch = (deviceId: string, rs: Array<Record<string, unknown>>) => ({
          device: { deviceId, deviceGroupId: null },
          reports: prepare(deviceId, rs),
          now: svc.now,
        });
        const first = await scope.ingestBatches([
          batch(dev, [r1, r2, r3, r3]),
          batch(dev, [r3, r4, r1]),
          // The same report id from another device is another report: the key is (device, id).
          batch(other, [r1]),
        ]);
        assert.deepEqual(first, [3, 1, 1]);
        // After the commit: a retry of some, with one new id.
        const second = await scope.ingestBatches([batch(dev, [r2, r5]), batch(dev, [r5, r4])]);
        assert.deepEqual(second, [1, 0]);
        assert.deepEqual(await stored(dev), [r1, r2, r3, r4, r5].map((r) => r['id']).sort());
        assert.equal((await stored(other)).length, 1);
        // A group whose every report is already stored stores nothing and says so per batch.
        assert.deepEqual(await scope.ingestBatches([batch(dev, [r1]), batch(other, [r1])]), [0, 0]);
        assert.deepEqual(await scope.ingestBatches([]), []);
      });

      test('details with quotes, backslashes, commas, braces, NULL and newlines are stored as sent', async () => {
        const dev = fakeDevice();
        const message = 'say "hi", {a,b} \\ NULL \n\tend é ∑';
        const r = report({ kind: 'runtime-error', details: { message, code: 'X_1' } });
        const n = await svc.store
          .forTenant(t.id)
          .errorReports.ingestBatches([
            { device: { deviceId: dev, deviceGroupId: 'g1' }, reports: prepare(dev, [r]), now: svc.now },
          ]);
        assert.deepEqual(n, [1]);
        const row = await svc.db
          .selectFrom('error_reports')
          .selectAll()
          .where('device_id', '=', dev)
          .executeTakeFirstOrThrow();
        assert.deepEqual(JSON.parse(row.details), { message, code: 'X_1' });
        assert.equal(row.device_group_id, 'g1');
        assert.equal(row.image_id, IMAGE_1);
        assert.equal(row.tenant_id, t.id);
      });

      test('concurrent uploads of overlapping batches from one device store each report once', async () => {
        const d = await certified();
        const rs = Array.from({ length: 30 }, () => report());
        // Five uploads in flight at once, each overlapping the next by 10 reports.
        const results = await Promise.all(
          [0, 5, 10, 15, 20].map((from) => upload(d, { reports: rs.slice(from, from + 10) })),
        );
        for (const r of results) assert.equal(r.status, 200, r.body);
        const accepted = results.reduce((a, r) => a + Number(r.json['accepted']), 0);
        const duplicate = results.reduce((a, r) => a + Number(r.json['duplicate']), 0);
        assert.equal(accepted, 30);
        assert.equal(duplicate, 20);
        assert.deepEqual(await stored(d.id), rs.map((r) => r['id']).sort());
      });

      test('a group holding batches of two tenants stores each in its own tenant', async () => {
        const t2 = await seedTenant(svc, 'Reports 2');
        const dev1 = fakeDevice();
        const dev2 = fakeDevice();
        // One group in flight at a time: the first ingest runs alone, the next two wait and are
        // committed together in one transaction across the two tenants.
        const writer = new IngestGroupCommit(svc.store, 1);
        const r = report();
        const results = await Promise.all([
          writer.ingest(t.id, { deviceId: dev1, deviceGroupId: null }, prepare(dev1, [report()]), svc.now),
          writer.ingest(t.id, { deviceId: dev1, deviceGroupId: null }, prepare(dev1, [r]), svc.now),
          writer.ingest(
            t2.id,
            { deviceId: dev2, deviceGroupId: null },
            prepare(dev2, [r, report()]),
            svc.now,
          ),
        ]);
        assert.deepEqual(results, [1, 1, 2]);
        const tenants = await svc.db
          .selectFrom('error_reports')
          .select(['device_id', 'tenant_id'])
          .where('device_id', 'in', [dev1, dev2])
          .execute();
        assert.deepEqual(
          tenants.map((x) => `${x.device_id === dev1 ? 1 : 2}:${x.tenant_id === t.id ? 1 : 2}`).sort(),
          ['1:1', '1:1', '2:2', '2:2'],
        );
        const buckets = await svc.db
          .selectFrom('error_buckets')
          .select('tenant_id')
          .where('tenant_id', '=', t2.id)
          .execute();
        assert.ok(buckets.length >= 1, "the second tenant's bucket row was made in its tenant");
      });
    });

    test("the device id in a report may be the certificate's own", async () => {
      const d = await certified();
      const res = await upload(d, { reports: [report({ deviceId: d.id })] });
      assert.equal(res.status, 200, res.body);
    });

    test('one crash reported from other paths, lines and addresses is one bucket; another top frame is another', async () => {
      const d1 = await certified();
      const d2 = await certified();
      const crash = (stack: string, image = IMAGE_1) =>
        report({
          componentId: APP2,
          imageId: image,
          kind: 'app-crash',
          details: { stack, signal: 'SIGABRT' },
        });
      assert.equal((await upload(d1, { reports: [crash(STACK_A), crash(STACK_A)] })).status, 200);
      assert.equal(
        (await upload(d2, { reports: [crash(STACK_B, IMAGE_2), crash(STACK_OTHER)] })).status,
        200,
      );
      const list = await reader(`/v1/error-reports/buckets?imageId=${IMAGE_1}`);
      assert.equal(list.status, 200, list.body);
      const all = (await reader('/v1/error-reports/buckets?limit=1000')).json.items ?? [];
      const mine = all.filter((b) => b['componentId'] === APP2);
      assert.equal(mine.length, 2, JSON.stringify(mine));
      const [top, second] = mine;
      assert.equal(top?.['deviceCount'], 2, 'most devices affected first');
      assert.equal(top?.['eventCount'], 3);
      assert.equal(top?.['imageCount'], 2);
      assert.match(String(top?.['signature']), /^TypeError readSensor \(main\.js\) \| Timeout\.tick/);
      assert.doesNotMatch(String(top?.['signature']), /\/opt|:41|[0-9a-f]{8}-/);
      assert.equal(second?.['deviceCount'], 1);
      // Detail: images, devices, newest reports.
      const show = await reader(`/v1/error-reports/buckets/${top?.['id']}`);
      assert.equal(show.status, 200, show.body);
      const images = show.json['images'] as Array<Record<string, unknown>>;
      assert.deepEqual(images.map((i) => i['imageId']).sort(), [IMAGE_1, IMAGE_2]);
      const devs = show.json['devices'] as Array<Record<string, unknown>>;
      assert.deepEqual(devs.map((x) => x['deviceId']).sort(), [d1.id, d2.id].sort());
      assert.equal((show.json['recent'] as unknown[]).length, 3);
    });

    test('without a stack, reports bucket by exit code, signal or violated target', async () => {
      const d = await certified();
      const C = randomUUID();
      const rs = [
        report({ componentId: C, kind: 'app-exit', details: { exitCode: 3 } }),
        report({ componentId: C, kind: 'app-exit', details: { exitCode: 3, uptimeSeconds: 9 } }),
        report({ componentId: C, kind: 'app-exit', details: { exitCode: 4 } }),
        report({
          componentId: C,
          kind: 'capability-violation',
          details: { capability: 'net', target: 'evil.example:443' },
        }),
        report({
          componentId: C,
          kind: 'capability-violation',
          details: { capability: 'net', target: 'evil.example:443' },
        }),
      ];
      assert.equal((await upload(d, { reports: rs })).status, 200);
      const items = ((await reader('/v1/error-reports/buckets?limit=1000')).json.items ?? []).filter(
        (b) => b['componentId'] === C,
      );
      assert.deepEqual(items.map((b) => [b['signature'], b['eventCount']]).sort(), [
        ['capability=net target=evil.example:443', 2],
        ['exit=3', 2],
        ['exit=4', 1],
      ]);
    });

    test('buckets filter by since, device group and image, and page with a cursor', async () => {
      const group = await svc.call('POST', '/v1/products', {
        token: t.tokens.Administrator,
        body: { name: 'Filt' },
      });
      assert.equal(group.status, 201, group.body);
      const d = await certified();
      await svc.call('PATCH', `/v1/devices/${d.id}`, {
        token: t.tokens.Contributor,
        body: { deviceGroup: 'Filt/Field Test' },
      });
      const C = randomUUID();
      const IMG = randomUUID();
      const rs = [
        report({ componentId: C, imageId: IMG, at: iso(3 * 86_400_000), details: { exitCode: 1 } }),
        report({ componentId: C, imageId: IMG, at: iso(60_000), details: { exitCode: 2 } }),
        report({ componentId: C, imageId: IMG, at: iso(60_000), details: { exitCode: 3 } }),
      ];
      assert.equal((await upload(d, { reports: rs })).status, 200);
      const sigs = async (q: string) =>
        ((await reader(`/v1/error-reports/buckets?${q}`)).json.items ?? [])
          .filter((b) => b['componentId'] === C)
          .map((b) => b['signature'])
          .sort();
      assert.deepEqual(await sigs(`imageId=${IMG}`), ['exit=1', 'exit=2', 'exit=3']);
      assert.deepEqual(await sigs(`imageId=${IMG}&since=2d`), ['exit=2', 'exit=3']);
      assert.deepEqual(await sigs(`imageId=${IMG}&since=${iso(2 * 86_400_000)}`), ['exit=2', 'exit=3']);
      assert.deepEqual(await sigs(`deviceGroup=${encodeURIComponent('Filt/Field Test')}`), [
        'exit=1',
        'exit=2',
        'exit=3',
      ]);
      assert.deepEqual(await sigs(`deviceGroup=${encodeURIComponent('Filt/Production')}`), []);
      // Paging: 1 per page, three pages, then none.
      const seen: unknown[] = [];
      let cursor: string | null = null;
      do {
        const page = await reader(
          `/v1/error-reports/buckets?imageId=${IMG}&limit=1${cursor ? `&cursor=${cursor}` : ''}`,
        );
        seen.push(...(page.json.items ?? []).map((b) => b['id']));
        cursor = page.json['nextCursor'] as string | null;
      } while (cursor !== null);
      assert.equal(new Set(seen).size, 3);
    });

    test('export: CSV with the Azure Sphere columns (+ ComponentId, ImageId, Bucket), formula-safe; JSON; a range', async () => {
      const d = await certified();
      const C = randomUUID();
      const at = iso(120_000);
      const rs = [
        report({
          componentId: C,
          at,
          lastAt: iso(60_000),
          count: 4,
          kind: 'app-exit',
          details: { message: '=HYPERLINK("http://evil","x"), "quoted"\nsecond line' },
        }),
      ];
      assert.equal((await upload(d, { reports: rs })).status, 200);
      const csv = await svc.call(
        'GET',
        `/v1/error-reports/export?from=${encodeURIComponent(iso(130_000))}&to=${encodeURIComponent(iso(110_000))}`,
        {
          token: t.tokens.Reader,
        },
      );
      assert.equal(csv.status, 200, csv.body);
      assert.match(String(csv.headers['content-type']), /^text\/csv/);
      const lines = csv.body.trimEnd().split('\r\n');
      assert.equal(
        lines[0],
        'DeviceId,EventType,EventClass,EventCategory,EventCount,Description,StartTime,EndTime,ComponentId,ImageId,Bucket',
      );
      assert.equal(lines.length, 2, csv.body);
      const bucket = (await reader('/v1/error-reports/buckets?limit=1000')).json.items?.find(
        (b) => b['componentId'] === C,
      );
      assert.equal(
        lines[1],
        `${d.id},AppExit,Exit,Application,4,"'=HYPERLINK(""http://evil"",""x""), ""quoted""",${at},${iso(60_000)},${C},${IMAGE_1},${bucket?.['id']}`,
      );
      const json = await svc.call(
        'GET',
        `/v1/error-reports/export?format=json&from=${encodeURIComponent(iso(130_000))}&to=${encodeURIComponent(iso(110_000))}`,
        {
          token: t.tokens.Reader,
        },
      );
      const items = JSON.parse(json.body) as Array<Record<string, unknown>>;
      assert.equal(items.length, 1);
      assert.equal(items[0]?.['count'], 4);
      assert.deepEqual(items[0]?.['details'], rs[0]?.details);
      const empty = await svc.call(
        'GET',
        `/v1/error-reports/export?format=json&from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z`,
        {
          token: t.tokens.Reader,
        },
      );
      assert.deepEqual(JSON.parse(empty.body), []);
    });

    test('export pages through more reports than one page holds, each exactly once', async () => {
      const d = await certified();
      const C = randomUUID();
      const at = iso(30 * 60_000);
      // 2 500 reports at the same instant: the keyset cursor must not skip or repeat across pages.
      // (Stored through the store: the device's rate would not let one device send them quickly.)
      const identity = {
        deviceId: d.id,
        tenantId: t.id,
        serial: d.serial,
        notAfter: '',
        deviceGroupId: null,
      };
      for (let i = 0; i < 25; i++) {
        const { prepared } = prepareBatch(
          identity,
          Array.from({ length: 100 }, () =>
            report({ componentId: C, at, kind: 'app-exit', details: { exitCode: 9 } }),
          ) as ErrorReport[],
          svc.now,
          DEFAULT_ERROR_REPORT_OPTIONS,
        );
        await svc.store.forTenant(t.id).errorReports.ingest(identity, prepared, svc.now);
      }
      const json = await svc.call(
        'GET',
        `/v1/error-reports/export?format=json&from=${encodeURIComponent(at)}&to=${encodeURIComponent(new Date(Date.parse(at) + 1).toISOString())}`,
        { token: t.tokens.Reader },
      );
      const ids = (JSON.parse(json.body) as Array<Record<string, unknown>>)
        .filter((x) => x['componentId'] === C)
        .map((x) => x['id']);
      assert.equal(ids.length, 2_500);
      assert.equal(new Set(ids).size, 2_500);
    });

    test('429/a flood from one device: refused with Retry-After, nothing stored; accepted again after the wait', async () => {
      const d = await certified();
      const full = () => ({ reports: Array.from({ length: 100 }, () => report()) });
      for (let i = 0; i < RATE_BURST / 100; i++) assert.equal((await upload(d, full())).status, 200);
      const before = await svc.snapshot();
      const r = await upload(d, full());
      assert.equal(r.status, 429, r.body);
      assert.equal(r.json.code, 'REPORT_RATE_LIMITED');
      const wait = Number(r.headers['retry-after']);
      assert.ok(wait >= 1 && wait <= 100, `Retry-After ${r.headers['retry-after']}`);
      assert.equal(await svc.snapshot(), before);
      // Another device is not held back by this one.
      const other = await certified();
      assert.equal((await upload(other, full())).status, 200);
      svc.now = new Date(svc.now.getTime() + wait * 1000);
      assert.equal((await upload(d, full())).status, 200);
    });

    test('a batch that fails inside its transaction stores nothing; its retry stores all of it once', async () => {
      const d = await certified();
      const poison = report();
      const batch = { reports: [report(), report({ componentId: randomUUID() }), poison] };
      // A fault in the middle of the ingest transaction (after the bucket insert, during the
      // reports insert), as a crash or a lost database would be.
      if (backend === 'sqlite') {
        await sql
          .raw(
            `CREATE TRIGGER fail_ingest BEFORE INSERT ON error_reports WHEN NEW.id = '${poison.id}' BEGIN SELECT RAISE(ABORT, 'injected fault'); END`,
          )
          .execute(svc.db);
      } else {
        await sql
          .raw(
            `CREATE FUNCTION fail_ingest() RETURNS trigger AS $$ BEGIN IF NEW.id = '${poison.id}' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`,
          )
          .execute(svc.db);
        await sql
          .raw(
            'CREATE TRIGGER fail_ingest BEFORE INSERT ON error_reports FOR EACH ROW EXECUTE FUNCTION fail_ingest()',
          )
          .execute(svc.db);
      }
      const before = await svc.snapshot();
      try {
        const r = await upload(d, batch);
        assert.equal(r.status, 500, r.body);
        assert.equal(r.json.code, 'INTERNAL_ERROR');
        assert.ok(!r.body.includes('injected'), 'the cause stays in the log');
        assert.equal(await svc.snapshot(), before, 'no report and no bucket of the failed batch was kept');
      } finally {
        if (backend === 'sqlite') await sql.raw('DROP TRIGGER fail_ingest').execute(svc.db);
        else {
          await sql.raw('DROP TRIGGER fail_ingest ON error_reports').execute(svc.db);
          await sql.raw('DROP FUNCTION fail_ingest()').execute(svc.db);
        }
      }
      const retry = await upload(d, batch);
      assert.deepEqual(retry.json, { accepted: 3, duplicate: 0 });
    });

    test('concurrent batches commit together; one the store refuses fails alone, the others are stored', async () => {
      const ds = await Promise.all([certified(), certified(), certified(), certified()]);
      const poison = report();
      const trigger = async (on: boolean) => {
        if (backend === 'sqlite') {
          await sql
            .raw(
              on
                ? `CREATE TRIGGER fail_group BEFORE INSERT ON error_reports WHEN NEW.id = '${poison.id}' BEGIN SELECT RAISE(ABORT, 'injected'); END`
                : 'DROP TRIGGER fail_group',
            )
            .execute(svc.db);
        } else if (on) {
          await sql
            .raw(
              `CREATE FUNCTION fail_group() RETURNS trigger AS $$ BEGIN IF NEW.id = '${poison.id}' THEN RAISE EXCEPTION 'injected'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`,
            )
            .execute(svc.db);
          await sql
            .raw(
              'CREATE TRIGGER fail_group BEFORE INSERT ON error_reports FOR EACH ROW EXECUTE FUNCTION fail_group()',
            )
            .execute(svc.db);
        } else {
          await sql.raw('DROP TRIGGER fail_group ON error_reports').execute(svc.db);
          await sql.raw('DROP FUNCTION fail_group()').execute(svc.db);
        }
      };
      await trigger(true);
      let results: TlsCallResult[];
      const batches = ds.map((_, i) => ({ reports: i === 2 ? [report(), poison] : [report(), report()] }));
      try {
        results = await Promise.all(ds.map((d, i) => upload(d, batches[i])));
      } finally {
        await trigger(false);
      }
      assert.deepEqual(
        results.map((r) => r.status),
        [200, 200, 500, 200],
      );
      for (const [i, d] of ds.entries()) {
        const rows = await svc.db
          .selectFrom('error_reports')
          .select('id')
          .where('device_id', '=', d.id)
          .execute();
        assert.equal(rows.length, i === 2 ? 0 : 2);
      }
    });

    test('retention: nothing older than the period is returned, and the job deletes it and its empty buckets', async () => {
      const d = await certified();
      const C = randomUUID();
      const saved = svc.now;
      const r = await upload(d, {
        reports: [report({ componentId: C, at: iso(13 * 86_400_000), details: { exitCode: 13 } })],
      });
      assert.equal(r.status, 200, r.body);
      const visible = async () =>
        ((await reader('/v1/error-reports/buckets?limit=1000')).json.items ?? []).filter(
          (b) => b['componentId'] === C,
        ).length;
      assert.equal(await visible(), 1);
      svc.now = new Date(saved.getTime() + 2 * 86_400_000); // the report is now 15 days old
      try {
        assert.equal(await visible(), 0, 'past the retention period before the job ran');
        const exported = await svc.call('GET', '/v1/error-reports/export?format=json&from=30d', {
          token: t.tokens.Reader,
        });
        assert.ok(!exported.body.includes(C));
        const job = new ErrorReportRetention(svc.store, () => svc.now, 14);
        assert.ok((await job.runOnce()) >= 1);
        const left = await svc.db
          .selectFrom('error_reports')
          .select('id')
          .where('component_id', '=', C)
          .execute();
        assert.equal(left.length, 0);
        const buckets = await svc.db
          .selectFrom('error_buckets')
          .select('id')
          .where('component_id', '=', C)
          .execute();
        assert.equal(buckets.length, 0);
      } finally {
        svc.now = saved;
      }
    });

    describe('an upload cut on the wire (TCP proxy between device and service)', () => {
      /**
       * A TCP proxy in front of the service. `mode` says what happens to the next connection:
       * 'request' cuts it after half the request bytes (the service never gets the batch),
       * 'response' forwards the request and cuts it when the answer starts (the service
       * committed, the device never hears), 'pass' forwards both ways.
       */
      let mode: 'request' | 'response' | 'pass' = 'pass';
      let proxy: Server;
      let proxyUrl = '';
      before(async () => {
        const target = new URL(svc.url);
        proxy = createServer((client) => {
          const m = mode;
          const upstream = connect(Number(target.port), '127.0.0.1');
          let sent = 0;
          client.on('data', (b: Buffer) => {
            sent += b.length;
            // TLS records: after the handshake, a request of a few KB; half of it then cut.
            if (m === 'request' && sent > 6_000) {
              upstream.write(b.subarray(0, 100));
              client.destroy();
              upstream.destroy();
              return;
            }
            upstream.write(b);
          });
          let cutting = false;
          upstream.on('data', (b: Buffer) => {
            // Once the request is on its way, nothing more reaches the device (TLS 1.3 session
            // tickets may come first; the answer follows them); the connection is cut once the
            // service has had time to answer, so the device never hears it.
            if (m === 'response' && sent > 6_000) {
              if (!cutting) {
                cutting = true;
                setTimeout(() => {
                  client.destroy();
                  upstream.destroy();
                }, 500);
              }
              return;
            }
            client.write(b);
          });
          client.on('error', () => upstream.destroy());
          upstream.on('error', () => client.destroy());
          client.on('close', () => upstream.destroy());
          upstream.on('close', () => client.destroy());
        });
        await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
        proxyUrl = `https://127.0.0.1:${(proxy.address() as { port: number }).port}`;
      });
      after(() => new Promise<void>((r) => proxy.close(() => r())));

      for (const cut of ['request', 'response'] as const) {
        test(`cut in the ${cut}: the retry stores every report exactly once`, async () => {
          const d = await certified();
          const queue = new ReportQueue(new FaultyStorage(), {
            deviceId: d.id,
            bootId: randomUUID(),
            clock: () => new Date(svc.now.getTime() - 60_000),
          });
          for (let i = 0; i < 60; i++) {
            queue.record({
              kind: 'app-exit',
              componentId: randomUUID(),
              details: { exitCode: i, message: 'x'.repeat(200) },
            });
          }
          const ids = queue.pending().map((r) => r.id);
          const client = () =>
            new DeviceServiceClient(proxyUrl, svc.caPem, 5_000, { chainPem: d.certPem, keyPem: d.keyPem });
          mode = cut;
          const c1 = client();
          const first = await uploadPending(queue, c1);
          c1.close();
          assert.equal(first.stopped?.code, 'DEVICE_SERVICE_UNREACHABLE', JSON.stringify(first));
          const stored = async () =>
            (await svc.db.selectFrom('error_reports').select('id').where('device_id', '=', d.id).execute())
              .length;
          // (The service may still be committing when the device gives up: wait for it, bounded.)
          for (let i = 0; i < 50 && cut === 'response' && (await stored()) < 60; i++) {
            await new Promise((r) => setTimeout(r, 100));
          }
          assert.equal(
            await stored(),
            cut === 'request' ? 0 : 60,
            'the service commits a whole batch or nothing',
          );
          mode = 'pass';
          const c2 = client();
          const retry = await uploadPending(queue, c2);
          c2.close();
          assert.deepEqual(retry, {
            batches: 1,
            accepted: cut === 'request' ? 60 : 0,
            duplicate: cut === 'request' ? 0 : 60,
            refused: 0,
          });
          const after = await svc.db
            .selectFrom('error_reports')
            .select('id')
            .where('device_id', '=', d.id)
            .execute();
          assert.deepEqual(after.map((r) => r.id).sort(), [...ids].sort());
        });
      }
    });

    describe('bad input: a coded refusal, and nothing stored', () => {
      let d: CertifiedDevice;
      let other: CertifiedDevice;
      before(async () => {
        d = await certified();
        other = await certified();
      });
      const cases: Array<{ name: string; body: () => unknown; code: string; status: number; raw?: boolean }> =
        [
          {
            name: '413/more than 100 reports',
            body: () => ({ reports: Array.from({ length: MAX_REPORT_BATCH + 1 }, () => report()) }),
            code: 'REPORT_BATCH_TOO_LARGE',
            status: 413,
          },
          {
            name: '413/a report over 16 KiB of JSON',
            body: () => ({
              reports: [
                report(),
                report({
                  details: {
                    stack: `Error: x\n${'    at f (a.js:1:1)\n'.repeat(700)}`.slice(0, 16_000),
                    message: 'm'.repeat(4000),
                  },
                }),
              ],
            }),
            code: 'REPORT_TOO_LARGE',
            status: 413,
          },
          { name: '400/no reports', body: () => ({ reports: [] }), code: 'REQUEST_INVALID', status: 400 },
          { name: '400/not an object', body: () => [report()], code: 'REQUEST_INVALID', status: 400 },
          {
            name: '400/an id that is not a UUID',
            body: () => ({ reports: [report({ id: "x'; DROP TABLE error_reports; --" })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/an upper-case UUID',
            body: () => ({ reports: [report({ id: randomUUID().toUpperCase() })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/an unknown kind',
            body: () => ({ reports: [report({ kind: 'reboot' })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/an unknown field',
            body: () => ({ reports: [report({ tenantId: randomUUID() })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/an unknown detail',
            body: () => ({ reports: [report({ details: { password: 'x' } })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/count 0',
            body: () => ({ reports: [report({ count: 0 })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/count as a string',
            body: () => ({ reports: [report({ count: '1' })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/a signal that is not one',
            body: () => ({ reports: [report({ details: { signal: 'KILL ALL' } })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/a control character in a message',
            body: () => ({ reports: [report({ details: { message: 'a\u0000b' } })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/a time that is not UTC ISO',
            body: () => ({ reports: [report({ at: '22/11/2026' })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '400/a batch with no time zone',
            body: () => ({ reports: [report({ at: '2026-11-22T09:00:00' })] }),
            code: 'REQUEST_INVALID',
            status: 400,
          },
          {
            name: '403/a report naming another device',
            body: () => ({ reports: [report(), report({ deviceId: other.id })] }),
            code: 'REPORT_DEVICE_MISMATCH',
            status: 403,
          },
          {
            name: '400/a time in the future beyond the skew',
            body: () => ({ reports: [report({ at: iso(-10 * 60_000) })] }),
            code: 'REPORT_TIME_SKEWED',
            status: 400,
          },
          {
            name: '400/a last time in the future',
            body: () => ({ reports: [report({ lastAt: iso(-10 * 60_000) })] }),
            code: 'REPORT_TIME_SKEWED',
            status: 400,
          },
          {
            name: '400/a time older than the retention period',
            body: () => ({ reports: [report({ at: iso(15 * 86_400_000) })] }),
            code: 'REPORT_TIME_SKEWED',
            status: 400,
          },
          {
            name: '400/a last time before the first',
            body: () => ({ reports: [report({ lastAt: iso(120_000) })] }),
            code: 'REPORT_TIME_SKEWED',
            status: 400,
          },
          {
            name: '400/malformed JSON',
            body: () => '{"reports": [',
            code: 'REQUEST_MALFORMED_JSON',
            status: 400,
            raw: true,
          },
        ];
      for (const c of cases) {
        test(c.name, async () => {
          const before = await svc.snapshot();
          const body = c.body();
          const r = await tlsCall(svc, 'POST', '/v1/device/error-reports', {
            ...(c.raw ? { raw: String(body) } : { body }),
            cert: d.certPem,
            key: d.keyPem,
          });
          assert.equal(r.json.code, c.code, r.body.slice(0, 300));
          assert.equal(r.status, c.status);
          assert.equal(await svc.snapshot(), before);
        });
      }

      test('every bad report is listed, by index', async () => {
        const r = await upload(d, {
          reports: [report({ at: iso(-3_600_000) }), report(), report({ at: iso(-7_200_000) })],
        });
        assert.equal(r.json.code, 'REPORT_TIME_SKEWED');
        assert.deepEqual(
          r.json.errors?.map((e) => e.field),
          ['reports/0/at', 'reports/2/at'],
        );
      });

      test('413/a body over the route limit', async () => {
        const before = await svc.snapshot();
        const r = await tlsCall(svc, 'POST', '/v1/device/error-reports', {
          raw: `{"reports":[],"pad":"${'x'.repeat(5 * 1024 * 1024)}"}`,
          cert: d.certPem,
          key: d.keyPem,
        });
        assert.equal(r.json.code, 'REQUEST_BODY_TOO_LARGE', r.body.slice(0, 200));
        assert.equal(await svc.snapshot(), before);
      });
    });
  });
}
