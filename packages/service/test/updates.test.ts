// Update delivery, service side of the device agent (issue 5): devices report update steps over
// mTLS, a deployment shows per-device progress from them, and attestation refuses a measured app
// the device's group may not run (appDevelopment devices excepted). On SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type CertifiedDevice, tlsCall } from './support/device-tls.ts';
import { appPackage, octet } from './support/images.ts';
import { allowTestRuntime, attestDevice, reattest, TEST_RUNTIME } from './support/mqtt.ts';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';
import { wire } from './support/soft-device.ts';

for (const backend of backends()) {
  describe(`update status and deployment progress on ${backend}`, () => {
    let svc: TestService;
    let a: SeededTenant;
    let b: SeededTenant;
    const group = 'DW100/Field Test';
    const image = async (o: Parameters<typeof appPackage>[0] = {}) => {
      const r = await svc.call('POST', '/v1/images', {
        token: a.tokens.Contributor,
        raw: appPackage(o),
        headers: octet,
      });
      assert.equal(r.status, 201, r.body);
      return {
        id: String(r.json['id']),
        digest: String(r.json['digest']),
        componentId: String(r.json['componentId']),
      };
    };
    const deploy = async (imageIds: string[]) => {
      const r = await svc.call('POST', '/v1/deployments', {
        token: a.tokens.Contributor,
        body: { deviceGroup: group, imageIds },
      });
      assert.equal(r.status, 201, r.body);
      return String(r.json['id']);
    };
    const device = async (): Promise<CertifiedDevice> => {
      const d = await attestDevice(svc, a.tokens.Administrator, group);
      return { device: d.device, id: d.id, serial: d.serial, certPem: d.chainPem, keyPem: d.keyPem };
    };
    const report = (d: CertifiedDevice, statuses: unknown[]) =>
      tlsCall(svc, 'POST', '/v1/device/update-status', {
        cert: d.certPem,
        key: d.keyPem,
        body: { statuses },
      });
    const progress = async (id: string, query = '') => {
      const r = await svc.call('GET', `/v1/deployments/${id}/progress${query}`, { token: a.tokens.Reader });
      assert.equal(r.status, 200, r.body);
      return r.json as unknown as {
        current: boolean;
        summary: Record<string, number>;
        items: Array<{
          deviceId: string;
          state: string;
          images: Array<{ imageId: string; state: string; code?: string }>;
        }>;
      };
    };
    const rows = async () =>
      svc.store.db.selectFrom('device_update_status').selectAll().orderBy('device_id').execute();

    before(async () => {
      svc = await createTestService(backend, 'updates', { https: true });
      a = await seedTenant(svc, 'Updates A');
      b = await seedTenant(svc, 'Updates B');
      assert.equal(
        (await svc.call('POST', '/v1/products', { token: a.tokens.Contributor, body: { name: 'DW100' } }))
          .status,
        201,
      );
      await allowTestRuntime(svc);
    });
    after(() => svc.close());

    test("progress per device follows the devices' reports; a device is as far as its least advanced image", async () => {
      const blink = await image({ name: 'blink' });
      const tele = await image({ name: 'telemetry' });
      const dep = await deploy([blink.id, tele.id]);
      const d1 = await device();
      const d2 = await device();
      const d3 = await device();
      let p = await progress(dep);
      assert.equal(p.current, true);
      assert.deepEqual(p.summary, {
        devices: 3,
        installed: 0,
        pending: 3,
        downloading: 0,
        failed: 0,
        rolledBack: 0,
      });
      const at = new Date(svc.now.getTime() - 1000).toISOString();
      const line = (img: { id: string; componentId: string }, state: string, code?: string) => ({
        componentId: img.componentId,
        imageId: img.id,
        state,
        ...(code ? { code } : {}),
        at,
      });
      assert.equal(
        (await report(d1, [line(blink, 'installed'), line(tele, 'installed')])).json['accepted'],
        2,
      );
      await report(d2, [line(blink, 'installed'), line(tele, 'downloading')]);
      await report(d3, [
        line(blink, 'rolled-back', 'UPDATE_ROLLED_BACK'),
        line(tele, 'failed', 'UPDATE_TARGET_CORRUPT'),
      ]);
      p = await progress(dep);
      assert.deepEqual(p.summary, {
        devices: 3,
        installed: 1,
        pending: 0,
        downloading: 1,
        failed: 1,
        rolledBack: 0,
      });
      const by = new Map(p.items.map((i) => [i.deviceId, i]));
      assert.equal(by.get(d1.id)?.state, 'installed');
      assert.equal(by.get(d2.id)?.state, 'downloading');
      assert.equal(by.get(d3.id)?.state, 'failed');
      assert.deepEqual(
        by.get(d3.id)?.images.map((i) => [i.state, i.code]),
        [
          ['rolled-back', 'UPDATE_ROLLED_BACK'],
          ['failed', 'UPDATE_TARGET_CORRUPT'],
        ],
      );
      // A report about another image of the component (an older version) is not progress on this one.
      const old = await image({ componentId: blink.componentId, name: 'blink', version: '0.9.0' });
      await report(d1, [{ ...line(old, 'installed'), at: new Date(svc.now.getTime()).toISOString() }]);
      p = await progress(dep);
      assert.equal(new Map(p.items.map((i) => [i.deviceId, i])).get(d1.id)?.state, 'pending');
      // Paging: limit and after.
      const page = await progress(dep, '?limit=1');
      assert.equal(page.items.length, 1);
      const rest = await progress(dep, `?after=${page.items[0]?.deviceId}`);
      assert.equal(rest.items.length, 2);
      assert.equal(rest.summary['devices'], 3);
    });

    test('an older line never replaces a newer one; lines too far in the future are ignored', async () => {
      const img = await image({ name: 'clocked' });
      const d = await device();
      const t = (ms: number) => new Date(svc.now.getTime() + ms).toISOString();
      const l = (state: string, at: string) => ({ componentId: img.componentId, imageId: img.id, state, at });
      await report(d, [l('installed', t(-1000))]);
      await report(d, [l('downloading', t(-5000))]);
      await report(d, [l('failed', t(48 * 3_600_000))]);
      const mine = (await rows()).filter((r) => r.device_id === d.id);
      assert.deepEqual(
        mine.map((r) => r.state),
        ['installed'],
      );
    });

    test('refused and nothing stored: no certificate, an operator token, bad lines, too many lines', async () => {
      const d = await device();
      const before = await rows();
      const good = {
        componentId: randomUUID(),
        imageId: randomUUID(),
        state: 'installed',
        at: svc.now.toISOString(),
      };
      assert.equal(
        (await tlsCall(svc, 'POST', '/v1/device/update-status', { body: { statuses: [good] } })).json.code,
        'AUTH_DEVICE_CERT_MISSING',
      );
      assert.equal(
        (
          await tlsCall(svc, 'POST', '/v1/device/update-status', {
            token: a.tokens.Administrator,
            body: { statuses: [good] },
          })
        ).json.code,
        'AUTH_DEVICE_CERT_MISSING',
      );
      for (const bad of [
        { ...good, state: 'done' },
        { ...good, componentId: 'not-a-uuid' },
        { ...good, code: 'lower case' },
        { ...good, at: 'yesterday' },
        { ...good, extra: 1 },
      ]) {
        const r = await report(d, [bad]);
        assert.equal(r.status, 400, JSON.stringify(bad));
        assert.equal(r.json.code, 'REQUEST_INVALID');
      }
      assert.equal((await report(d, [])).json.code, 'REQUEST_INVALID');
      assert.equal(
        (
          await report(
            d,
            Array.from({ length: 65 }, () => good),
          )
        ).json.code,
        'REQUEST_INVALID',
      );
      assert.deepEqual(await rows(), before);
    });

    test("a device gets its tenant's production image keys (and only its tenant's)", async () => {
      await image({ name: 'keyed' });
      const d = await device();
      const r = await tlsCall(svc, 'GET', '/v1/device/image-keys', { cert: d.certPem, key: d.keyPem });
      assert.equal(r.status, 200, r.body);
      const mine = await svc.call('GET', '/v1/tenants/current/image-signing-key', { token: a.tokens.Reader });
      assert.equal(r.json['keysPem'], mine.json['publicKeyPem']);
      // Tenant B has no image yet: its devices get none (never A's).
      const bDev = await attestDevice(svc, b.tokens.Administrator);
      const rb = await tlsCall(svc, 'GET', '/v1/device/image-keys', {
        cert: bDev.chainPem,
        key: bDev.keyPem,
      });
      assert.equal(rb.json['keysPem'], '');
      assert.equal(
        (await tlsCall(svc, 'GET', '/v1/device/image-keys')).json.code,
        'AUTH_DEVICE_CERT_MISSING',
      );
    });

    test("progress of another tenant's deployment is not found", async () => {
      const img = await image({ name: 'hidden' });
      const dep = await deploy([img.id]);
      const r = await svc.call('GET', `/v1/deployments/${dep}/progress`, { token: b.tokens.Reader });
      assert.equal(r.status, 404);
      assert.equal(r.json['code'], 'DEPLOYMENT_NOT_FOUND');
    });

    test('attestation: a measured app must be in the current or previous deployment of the group; appDevelopment devices may run any', async () => {
      const v1 = await image({ name: 'policy' });
      const v2 = await image({ componentId: v1.componentId, name: 'policy', version: '2.0.0' });
      const v3 = await image({ componentId: v1.componentId, name: 'policy', version: '3.0.0' });
      const stray = await image({ name: 'stray' });
      await deploy([v1.id]);
      await deploy([v2.id]);
      const d = await attestDevice(svc, a.tokens.Administrator, group);
      // Previous (v1) and current (v2) deployments: allowed.
      await d.device.measure({ kind: 'app', digest: v1.digest, componentId: v1.componentId, imageId: v1.id });
      await reattest(svc, d.device);
      await d.device.measure({ kind: 'app', digest: v2.digest, componentId: v2.componentId, imageId: v2.id });
      await reattest(svc, d.device);
      // A third deployment pushes v1 out of the window: the device still measures v1, so refused.
      await deploy([v3.id]);
      const refused = async (code: string) => {
        const e = await d.device.evidence(await d.device.challenge());
        const r = await svc.call('POST', '/v1/attestation/evidence', { body: wire(e) });
        assert.equal(r.status, 403, r.body);
        assert.equal(r.json['code'], code);
      };
      const certsBefore = (await svc.store.db.selectFrom('device_certificates').select('serial').execute())
        .length;
      await refused('ATTEST_APP_NOT_ALLOWED');
      const events = await svc.store.db
        .selectFrom('security_events')
        .selectAll()
        .where('device_id', '=', d.id)
        .where('reason', '=', 'ATTEST_APP_NOT_ALLOWED')
        .execute();
      assert.equal(events.length, 1, 'a security event is stored');
      assert.equal(
        (await svc.store.db.selectFrom('device_certificates').select('serial').execute()).length,
        certsBefore,
      );
      // An app never deployed at all: refused too.
      const d2 = await attestDevice(svc, a.tokens.Administrator, group);
      await d2.device.measure({
        kind: 'app',
        digest: stray.digest,
        componentId: stray.componentId,
        imageId: stray.id,
      });
      const e2 = await d2.device.evidence(await d2.device.challenge());
      const r2 = await svc.call('POST', '/v1/attestation/evidence', { body: wire(e2) });
      assert.equal(r2.json['code'], 'ATTEST_APP_NOT_ALLOWED');
      // appDevelopment: any app (a developer's), and the capability comes back with the certificate.
      const cap = await svc.call('POST', `/v1/devices/${d2.id}/capabilities`, {
        token: a.tokens.Administrator,
        body: { capability: 'appDevelopment' },
      });
      assert.equal(cap.status, 201);
      const e3 = await d2.device.evidence(await d2.device.challenge());
      const r3 = await svc.call('POST', '/v1/attestation/evidence', { body: wire(e3) });
      assert.equal(r3.status, 201, r3.body);
      assert.deepEqual(r3.json['capabilities'], ['appDevelopment']);
    });

    test('attestation answers with no capabilities for a device without any, and the runtime-only log still passes', async () => {
      const d = await attestDevice(svc, a.tokens.Administrator, group);
      const e = await d.device.evidence(await d.device.challenge());
      const r = await svc.call('POST', '/v1/attestation/evidence', { body: wire(e) });
      assert.equal(r.status, 201);
      assert.deepEqual(r.json['capabilities'], []);
      assert.equal(d.device.log[0]?.digest, TEST_RUNTIME);
    });
  });
}
