import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type DeviceEvent, type DeviceReport, MAX_REPORT_EVENTS } from '@heptad/protocol';
import {
  backends,
  type CallResult,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';
import { createSoftDevice, type SoftDevice, wire } from './support/soft-device.ts';

const RUNTIME_1 = createHash('sha256').update('heptad-runtime-1.0.0').digest('hex');
const RUNTIME_2 = createHash('sha256').update('heptad-runtime-2.0.0').digest('hex');
const APP = createHash('sha256').update('some-app').digest('hex');

const at = (second: number) => new Date(Date.UTC(2026, 10, 22, 9, 0, second)).toISOString();

function reportOf(events: DeviceEvent[] = [], runtime: Partial<DeviceReport['runtime']> = {}): DeviceReport {
  return {
    runtime: {
      slot: 'B',
      version: '2.0.0-rc.1+build.7',
      digest: RUNTIME_2,
      securityVersion: 2,
      trial: true,
      floor: 1,
      ...runtime,
    },
    events,
  };
}

for (const backend of backends()) {
  describe(`the device report on ${backend}`, () => {
    let svc: TestService;
    let t: SeededTenant;
    const devices: SoftDevice[] = [];

    /** A claimed device whose boot chain measured runtime 1, then runtime 2 (the running one). */
    const device = async () => {
      const d = await createSoftDevice(svc, { claimToken: t.tokens.Contributor });
      devices.push(d);
      await d.measure({ kind: 'runtime', digest: RUNTIME_1 });
      await d.measure({ kind: 'runtime', digest: RUNTIME_2 });
      await d.measure({ kind: 'app', digest: APP });
      // The app is in no deployment: a development device may run it (the app policy: updates.test.ts).
      const cap = await svc.call('POST', `/v1/devices/${d.id}/capabilities`, {
        token: t.tokens.Administrator,
        body: { capability: 'appDevelopment' },
      });
      assert.equal(cap.status, 201, cap.body);
      return d;
    };
    const send = (e: unknown) => svc.call('POST', '/v1/attestation/evidence', { body: e });
    const attest = async (d: SoftDevice, report?: DeviceReport): Promise<CallResult> => {
      const r = await send(wire(await d.evidence(await d.challenge(), report ? { report } : {})));
      assert.equal(r.status, 201, r.body);
      return r;
    };
    const show = async (id: string, token = t.tokens.Reader) =>
      (await svc.call('GET', `/v1/devices/${id}`, { token })).json;
    const securityEvents = async (id: string) =>
      ((await svc.call('GET', `/v1/security-events?deviceId=${id}`, { token: t.tokens.Reader })).json.items ??
        []) as Array<Record<string, unknown>>;
    /** What a refused attestation must leave as it was: devices, certificates, raised device events. */
    const deviceState = async () =>
      JSON.stringify([
        await svc.db.selectFrom('devices').selectAll().orderBy('id').execute(),
        await svc.db.selectFrom('device_certificates').selectAll().orderBy('serial').execute(),
        await svc.db
          .selectFrom('security_events')
          .selectAll()
          .where('kind', '<>', 'attestation.refused')
          .orderBy('id')
          .execute(),
      ]);

    before(async () => {
      svc = await createTestService(backend, 'report');
      t = await seedTenant(svc, 'Report');
      for (const [digest, version] of [
        [RUNTIME_1, '1.0.0'],
        [RUNTIME_2, '2.0.0'],
      ] as const) {
        const r = await svc.call('POST', '/v1/runtime-images', {
          token: svc.operatorToken,
          body: { digest, version, securityVersion: 1 },
        });
        assert.equal(r.status, 201, r.body);
      }
    });
    after(async () => {
      for (const d of devices) d.cleanup();
      await svc.close();
    });

    test('evidence without a report still attests; the device shows no runtime', async () => {
      const d = await device();
      await attest(d);
      const shown = await show(d.id);
      assert.equal(shown['lastAttestedAt'], svc.now.toISOString());
      assert.equal(shown['runtime'], null);
    });

    test('stores the reported runtime with the certificate and shows it on the device', async () => {
      const d = await device();
      const started: DeviceEvent = {
        at: at(1),
        kind: 'trial-started',
        slot: 'B',
        version: '2.0.0-rc.1+build.7',
      };
      await attest(d, reportOf([started]));
      const runtime = {
        slot: 'B',
        version: '2.0.0-rc.1+build.7',
        digest: RUNTIME_2,
        securityVersion: 2,
        trial: true,
        floor: 1,
        reportedAt: svc.now.toISOString(),
      };
      assert.deepEqual((await show(d.id))['runtime'], { ...runtime, events: [started] });
      assert.deepEqual(
        (await show(d.id, svc.operatorToken))['runtime'],
        { ...runtime, events: [started] },
        'the operator sees it in the registry',
      );
      const list = await svc.call('GET', '/v1/devices?limit=1000', { token: t.tokens.Reader });
      const listed = list.json.items?.find((x) => x['id'] === d.id);
      assert.deepEqual(listed?.['runtime'], runtime, 'lists carry the runtime without its events');
      assert.deepEqual(await securityEvents(d.id), [], 'a started trial is not a security event');
      const other = await seedTenant(svc, 'Report Other');
      const theirs = await svc.call('GET', `/v1/devices/${d.id}`, { token: other.tokens.Reader });
      assert.equal(theirs.json.code, 'DEVICE_NOT_FOUND', 'another tenant sees nothing');
    });

    test('a later report replaces the runtime; its events join the kept ones, a resent event once', async () => {
      const d = await device();
      const started: DeviceEvent = { at: at(1), kind: 'trial-started', slot: 'B' };
      const committed: DeviceEvent = { at: at(2), kind: 'trial-committed', slot: 'B' };
      await attest(d, reportOf([started]));
      const saved = svc.now;
      svc.now = new Date(saved.getTime() + 3_600_000);
      try {
        await attest(d, reportOf([committed], { trial: false, floor: 2 }));
        // The device never saw that answer, so it sends the same events again.
        await attest(d, reportOf([committed], { trial: false, floor: 2 }));
        const runtime = (await show(d.id))['runtime'] as Record<string, unknown>;
        assert.equal(runtime['trial'], false);
        assert.equal(runtime['floor'], 2);
        assert.equal(runtime['reportedAt'], svc.now.toISOString());
        assert.deepEqual(runtime['events'], [started, committed]);
        await attest(d, reportOf([], { trial: false, floor: 2 }));
        assert.deepEqual(
          ((await show(d.id))['runtime'] as Record<string, unknown>)['events'],
          [started, committed],
          'a report without events keeps the events shown',
        );
        await attest(d);
        assert.equal(
          ((await show(d.id))['runtime'] as Record<string, unknown>)['floor'],
          2,
          'evidence without a report leaves the last report standing',
        );
      } finally {
        svc.now = saved;
      }
    });

    test(`keeps the newest ${MAX_REPORT_EVENTS} events across reports`, async () => {
      const d = await device();
      const started = Array.from(
        { length: 40 },
        (_, i): DeviceEvent => ({ at: at(i), kind: 'trial-started' }),
      );
      await attest(d, reportOf(started.slice(0, 20)));
      await attest(d, reportOf(started.slice(20)));
      const runtime = (await show(d.id))['runtime'] as Record<string, unknown>;
      assert.deepEqual(runtime['events'], started.slice(-MAX_REPORT_EVENTS));
    });

    test('reported failures become security events device.<kind>, reason the code, each raised once', async () => {
      const d = await device();
      const events: DeviceEvent[] = [
        { at: at(1), kind: 'slot-refused', slot: 'A', code: 'IMAGE_SIGNATURE_INVALID' },
        { at: at(2), kind: 'trial-started', slot: 'B', version: '2.0.0' },
        { at: at(3), kind: 'runtime-exited', code: 'SIGSEGV' },
        { at: at(4), kind: 'runtime-exited', code: 'SIGSEGV' },
        { at: at(5), kind: 'watchdog-expired' },
        { at: at(6), kind: 'trial-abandoned', slot: 'B', version: '2.0.0' },
        { at: at(7), kind: 'install-refused', digest: RUNTIME_1, code: 'IMAGE_SIGNATURE_INVALID' },
        { at: at(8), kind: 'trial-committed', slot: 'A' },
      ];
      await attest(d, reportOf(events, { slot: 'A', trial: false }));
      const summary = async () =>
        (await securityEvents(d.id))
          .map((e) => `${e['kind']} ${e['reason']} ×${e['count']}`)
          .sort()
          .join('\n');
      const expected = [
        'device.install-refused IMAGE_SIGNATURE_INVALID ×1',
        'device.runtime-exited SIGSEGV ×2',
        'device.slot-refused IMAGE_SIGNATURE_INVALID ×1',
        'device.trial-abandoned trial-abandoned ×1',
        'device.watchdog-expired watchdog-expired ×1',
      ].join('\n');
      assert.equal(await summary(), expected);
      for (const e of await securityEvents(d.id)) {
        assert.equal(e['tenantId'], t.id);
        assert.equal(e['at'], svc.now.toISOString(), 'stamped with the service clock');
        assert.match(String(e['evidenceDigest']), /^[0-9a-f]{64}$/);
      }
      const saved = svc.now;
      svc.now = new Date(saved.getTime() + 120_000); // past the folding window
      try {
        await attest(d, reportOf(events, { slot: 'A', trial: false }));
      } finally {
        svc.now = saved;
      }
      assert.equal(await summary(), expected, 'events resent by the device are not raised again');
    });

    test('a report changed after quoting, added or removed is a binding mismatch and changes nothing', async () => {
      const d = await device();
      const good = reportOf([{ at: at(1), kind: 'trial-started', slot: 'B' }]);
      await attest(d, good);
      const alterations: Array<[string, (e: ReturnType<typeof wire>) => unknown]> = [
        [
          'version changed',
          (e) => ({ ...e, report: { ...good, runtime: { ...good.runtime, version: '9.9.9' } } }),
        ],
        ['trial hidden', (e) => ({ ...e, report: { ...good, runtime: { ...good.runtime, trial: false } } })],
        ['events dropped', (e) => ({ ...e, report: { ...good, events: [] } })],
        [
          'event added',
          (e) => ({
            ...e,
            report: { ...good, events: [...good.events, { at: at(2), kind: 'trial-committed' }] },
          }),
        ],
        ['report removed', ({ report: _r, ...e }) => e],
      ];
      for (const [name, alter] of alterations) {
        const e = wire(await d.evidence(await d.challenge(), { report: good }));
        const before = await deviceState();
        const r = await send(alter(e));
        assert.equal(r.json.code, 'ATTEST_QUOTE_NONCE_MISMATCH', `${name}: ${r.body}`);
        assert.equal(r.status, 400);
        assert.equal(await deviceState(), before, `${name}: nothing changed`);
      }
      const unreported = wire(await d.evidence(await d.challenge()));
      const before = await deviceState();
      const r = await send({ ...unreported, report: good });
      assert.equal(r.json.code, 'ATTEST_QUOTE_NONCE_MISMATCH', 'report added after quoting');
      assert.equal(await deviceState(), before);
      const refusals = (await securityEvents(d.id)).filter(
        (x) => x['reason'] === 'ATTEST_QUOTE_NONCE_MISMATCH',
      );
      assert.equal(refusals.length, 1, 'each refusal is a stored security event (folded)');
      assert.equal(refusals[0]?.['count'], alterations.length + 1);
    });

    test('refuses a report that does not name the last measured runtime', async () => {
      const d = await device();
      const cases: Array<[string, DeviceReport]> = [
        ['an earlier measured runtime', reportOf([], { digest: RUNTIME_1, slot: 'A' })],
        ['a runtime never measured', reportOf([], { digest: 'e'.repeat(64) })],
      ];
      for (const [name, report] of cases) {
        const before = await deviceState();
        const r = await send(wire(await d.evidence(await d.challenge(), { report })));
        assert.equal(r.json.code, 'ATTEST_REPORT_MISMATCH', `${name}: ${r.body}`);
        assert.equal(r.status, 400);
        assert.equal(await deviceState(), before, `${name}: nothing changed`);
      }
      const refusal = (await securityEvents(d.id)).find((x) => x['reason'] === 'ATTEST_REPORT_MISMATCH');
      assert.equal(refusal?.['kind'], 'attestation.refused');
      const bare = await createSoftDevice(svc, { claimToken: t.tokens.Contributor });
      devices.push(bare);
      const r = await send(wire(await bare.evidence(await bare.challenge(), { report: reportOf() })));
      assert.equal(r.json.code, 'ATTEST_REPORT_MISMATCH', 'a report from a device that measured no runtime');
    });

    test('refuses malformed reports with the validation code, naming the field, and stores nothing', async () => {
      const d = await device();
      const good = reportOf([
        { at: at(1), kind: 'runtime-exited', slot: 'B', version: '2.0.0', code: 'SIGSEGV' },
      ]);
      const ev = good.events[0] as DeviceEvent;
      const rt = good.runtime;
      const withRuntime = (patch: Record<string, unknown>) => ({ ...good, runtime: { ...rt, ...patch } });
      const withEvent = (patch: Record<string, unknown>) => ({ ...good, events: [{ ...ev, ...patch }] });
      const cases: Array<[string, unknown]> = [
        ['400/report is null', null],
        ['400/report is an array', [good]],
        ['400/report has an unknown field', { ...good, signedBy: 'me' }],
        ['400/runtime is missing', { events: [] }],
        ['400/events are missing', { runtime: rt }],
        ['400/runtime has an unknown field', withRuntime({ path: '/boot/a' })],
        ['400/slot is not A or B', withRuntime({ slot: 'C' })],
        ['400/slot is a number', withRuntime({ slot: 1 })],
        ['400/version is a number', withRuntime({ version: 2 })],
        ['400/version is not semver', withRuntime({ version: '2.0' })],
        ['400/version is a path', withRuntime({ version: '../../etc/passwd' })],
        ['400/version is 129 characters', withRuntime({ version: `1.0.0-${'a'.repeat(123)}` })],
        ['400/digest is uppercase', withRuntime({ digest: RUNTIME_2.toUpperCase() })],
        ['400/digest is 63 hex', withRuntime({ digest: RUNTIME_2.slice(1) })],
        ['400/digest is a number', withRuntime({ digest: 7 })],
        ['400/securityVersion is negative', withRuntime({ securityVersion: -1 })],
        ['400/securityVersion is 2^31', withRuntime({ securityVersion: 2 ** 31 })],
        ['400/securityVersion is a fraction', withRuntime({ securityVersion: 1.5 })],
        ['400/securityVersion is a string', withRuntime({ securityVersion: '2' })],
        ['400/floor is negative', withRuntime({ floor: -1 })],
        ['400/floor is 2^31', withRuntime({ floor: 2 ** 31 })],
        ['400/trial is a string', withRuntime({ trial: 'true' })],
        ['400/trial is 1', withRuntime({ trial: 1 })],
        ['400/events is an object', { ...good, events: {} }],
        [
          `400/${MAX_REPORT_EVENTS + 1} events`,
          { ...good, events: Array.from({ length: MAX_REPORT_EVENTS + 1 }, () => ev) },
        ],
        ['400/event is null', { ...good, events: [null] }],
        ['400/event has an unknown field', withEvent({ detail: 'x' })],
        ['400/event kind is unknown', withEvent({ kind: 'reboot' })],
        ['400/event kind is missing', { ...good, events: [{ at: ev.at }] }],
        ['400/event at is missing', { ...good, events: [{ kind: 'trial-started' }] }],
        ['400/event at is not a date', withEvent({ at: 'yesterday' })],
        ['400/event at is month 13', withEvent({ at: '2026-13-01T00:00:00.000Z' })],
        ['400/event at is not UTC', withEvent({ at: '2026-11-22T10:00:00+02:00' })],
        ['400/event at is a number', withEvent({ at: Date.parse(ev.at) })],
        ['400/event slot is not A or B', withEvent({ slot: 'a' })],
        ['400/event version is too long', withEvent({ version: `1.0.0-${'a'.repeat(123)}` })],
        ['400/event version is a path', withEvent({ version: '../../etc/passwd' })],
        ['400/event version is empty', withEvent({ version: '' })],
        ['400/event version is a number', withEvent({ version: 2 })],
        ['400/event digest is not hex', withEvent({ digest: 'z'.repeat(64) })],
        ['400/event code is 65 characters', withEvent({ code: 'C'.repeat(65) })],
        ['400/event code is empty', withEvent({ code: '' })],
        ['400/event code has a space', withEvent({ code: 'EXIT 1' })],
        ['400/event code has a slash', withEvent({ code: 'a/b' })],
        ['400/event code has a control character', withEvent({ code: 'A\u0007B' })],
        ['400/event code is a number', withEvent({ code: 139 })],
      ];
      const e = wire(await d.evidence(await d.challenge(), { report: good }));
      const failures: string[] = [];
      for (const [name, report] of cases) {
        const before = await svc.snapshot();
        const r = await send({ ...e, report });
        if (r.status !== 400 || r.json.code !== 'REQUEST_INVALID') {
          failures.push(`${name}: got ${r.status} ${r.json.code ?? r.body.slice(0, 100)}`);
        }
        const fields = ((r.json['errors'] ?? []) as Array<{ field: string }>).map((x) => x.field);
        if (fields.length === 0 || !fields.every((f) => f.startsWith('body/report'))) {
          failures.push(`${name}: errors name ${JSON.stringify(fields)}`);
        }
        if ((await svc.snapshot()) !== before) failures.push(`${name}: the store changed`);
      }
      assert.deepEqual(failures, []);
      assert.equal((await send(e)).status, 201, 'the nonce was never burnt: the good evidence still attests');
      const odd = reportOf([
        { at: at(2), kind: 'install-refused', version: '7', code: 'IMAGE_MANIFEST_INVALID' },
      ]);
      assert.equal(
        (await send(wire(await d.evidence(await d.challenge(), { report: odd })))).status,
        201,
        'an event may name a version that is not semver: it must not stop the device attesting',
      );
    });

    test('unclaiming a device drops its report: the next owner learns the runtime from the device', async () => {
      const d = await device();
      await attest(d, reportOf([{ at: at(1), kind: 'trial-started' }]));
      const u = await svc.call('POST', `/v1/devices/${d.id}/unclaim`, { token: svc.operatorToken });
      assert.equal(u.status, 200, u.body);
      assert.equal(u.json['runtime'], null);
      const next = await seedTenant(svc, 'Report Next');
      const c = await svc.call('POST', '/v1/devices/claim', {
        token: next.tokens.Contributor,
        body: { deviceIds: [d.id] },
      });
      assert.equal(c.status, 200, c.body);
      assert.equal((await show(d.id, next.tokens.Reader))['runtime'], null);
    });
  });
}
