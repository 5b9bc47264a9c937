// Device authentication over mTLS (http/device-auth.ts): the tenant-CA certificate a device
// earned at attestation is its only credential on device routes; every refusal has its code and
// changes nothing.
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, randomUUID, X509Certificate } from 'node:crypto';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';
import { createCertificateAuthority, createDeviceCertificateIssuer, toPem } from '@heptad/protocol';
import { type CertifiedDevice, certifiedDevice, tlsCall } from './support/device-tls.ts';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

const APP = '6d2c0f7e-52a1-4f44-9a5e-0b4c3f0f6a11';
const BOOT = 'b3f8e0a2-1c4d-4e5f-8a9b-0c1d2e3f4a5b';

for (const backend of backends()) {
  describe(`device authentication over mTLS on ${backend}`, () => {
    let svc: TestService;
    let t: SeededTenant;
    let other: SeededTenant;
    const devices: CertifiedDevice[] = [];
    const certified = async (tenant = t) => {
      const d = await certifiedDevice(svc, tenant.tokens.Contributor);
      devices.push(d);
      return d;
    };
    const batch = () => ({
      reports: [
        {
          id: randomUUID(),
          componentId: APP,
          bootId: BOOT,
          at: new Date(svc.now.getTime() - 60_000).toISOString(),
          kind: 'app-exit',
          count: 1,
          details: { exitCode: 3 },
        },
      ],
    });
    const upload = (d: { certPem: string; keyPem: string } | undefined, body: unknown = batch()) =>
      tlsCall(svc, 'POST', '/v1/device/error-reports', {
        body,
        ...(d ? { cert: d.certPem, key: d.keyPem } : {}),
      });
    /** The upload is refused with `code` and the store is unchanged. */
    const refused = async (
      d: { certPem: string; keyPem: string } | undefined,
      code: string,
      status: number,
    ) => {
      const before = await svc.snapshot();
      const r = await upload(d);
      assert.equal(r.json.code, code, r.body);
      assert.equal(r.status, status);
      assert.equal(await svc.snapshot(), before, 'a refused upload changes nothing');
    };

    before(async () => {
      svc = await createTestService(backend, 'devauth', { https: true });
      t = await seedTenant(svc, 'DevAuth');
      other = await seedTenant(svc, 'DevAuth Other');
    });
    after(async () => {
      for (const d of devices) d.device.cleanup();
      await svc.close();
    });

    test('a device with its tenant-CA certificate is let in, as the device the certificate names', async () => {
      const d = await certified();
      const r = await upload(d);
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(r.json, { accepted: 1, duplicate: 0 });
      const rows = await svc.db
        .selectFrom('error_reports')
        .selectAll()
        .where('device_id', '=', d.id)
        .execute();
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.tenant_id, t.id);
    });

    test('401/no client certificate', async () => {
      await refused(undefined, 'AUTH_DEVICE_CERT_MISSING', 401);
    });

    test('401/a bearer token is not a device credential', async () => {
      const before = await svc.snapshot();
      const r = await tlsCall(svc, 'POST', '/v1/device/error-reports', {
        body: batch(),
        token: t.tokens.Administrator,
      });
      assert.equal(r.json.code, 'AUTH_DEVICE_CERT_MISSING', r.body);
      assert.equal(await svc.snapshot(), before);
    });

    test('401/a certificate from another CA, even with the same subject and SANs and a known serial', async () => {
      const d = await certified();
      // A forger's CA issuing the exact device profile for the same device and tenant, reusing
      // the genuine serial: only the signature tells it apart.
      const ca = await createCertificateAuthority({
        commonName: 'Forger CA',
        now: new Date(),
        validityDays: 30,
      });
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const issuer = createDeviceCertificateIssuer({
        issuerCertDer: Buffer.from(new X509Certificate(ca.certPem).raw),
        issuerKey: createPrivateKey({ key: ca.keyPkcs8, format: 'der', type: 'pkcs8' }),
        tenantId: t.id,
      });
      const der = issuer.issue({
        deviceId: d.id,
        publicKeySpkiDer: publicKey.export({ type: 'spki', format: 'der' }),
        serial: Buffer.from(d.serial, 'hex'),
        notBefore: new Date(svc.now.getTime() - 60_000),
        notAfter: new Date(svc.now.getTime() + 3_600_000),
      });
      await refused(
        {
          certPem: toPem(der, 'CERTIFICATE'),
          keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        },
        'AUTH_DEVICE_CERT_UNTRUSTED',
        401,
      );
    });

    test('401/a self-signed certificate', async () => {
      const ca = await createCertificateAuthority({ commonName: 'self', now: new Date(), validityDays: 30 });
      const keyPem = createPrivateKey({ key: ca.keyPkcs8, format: 'der', type: 'pkcs8' })
        .export({ type: 'pkcs8', format: 'pem' })
        .toString();
      await refused({ certPem: ca.certPem, keyPem }, 'AUTH_DEVICE_CERT_UNTRUSTED', 401);
    });

    test('401/an expired certificate (service clock past notAfter)', async () => {
      const d = await certified();
      const saved = svc.now;
      svc.now = new Date(saved.getTime() + 25 * 3_600_000);
      try {
        await refused(d, 'AUTH_DEVICE_CERT_EXPIRED', 401);
      } finally {
        svc.now = saved;
      }
    });

    test('403/a quarantined device', async () => {
      const d = await certified();
      const q = await svc.call('POST', `/v1/devices/${d.id}/quarantine`, {
        token: t.tokens.Contributor,
        body: {},
      });
      assert.equal(q.status, 200, q.body);
      await refused(d, 'AUTH_DEVICE_QUARANTINED', 403);
    });

    test('401/a revoked certificate (quarantined, then released: the certificate stays revoked)', async () => {
      const d = await certified();
      await svc.call('POST', `/v1/devices/${d.id}/quarantine`, { token: t.tokens.Contributor, body: {} });
      const r = await svc.call('DELETE', `/v1/devices/${d.id}/quarantine`, { token: t.tokens.Contributor });
      assert.ok(r.status < 300, r.body);
      await refused(d, 'AUTH_DEVICE_CERT_REVOKED', 401);
    });

    test('403/a device unclaimed since its certificate was issued', async () => {
      const d = await certified();
      const r = await svc.call('POST', `/v1/devices/${d.id}/unclaim`, { token: svc.operatorToken });
      assert.ok(r.status < 300, r.body);
      await refused(d, 'AUTH_DEVICE_NOT_CLAIMED', 403);
    });

    test("reports land in the certificate's tenant only: another tenant never sees them", async () => {
      const mineBefore = await svc.call('GET', '/v1/error-reports/buckets', { token: t.tokens.Reader });
      const d = await certified(other);
      const r = await upload(d);
      assert.equal(r.status, 200, r.body);
      const mine = await svc.call('GET', '/v1/error-reports/buckets', { token: t.tokens.Reader });
      const theirs = await svc.call('GET', '/v1/error-reports/buckets', { token: other.tokens.Reader });
      assert.equal(theirs.json.items?.length, 1);
      assert.equal(theirs.json.items?.[0]?.['deviceCount'], 1);
      assert.equal(mine.body, mineBefore.body, "the other tenant's report changed nothing this tenant sees");
      const rows = await svc.db
        .selectFrom('error_reports')
        .select('tenant_id')
        .where('device_id', '=', d.id)
        .execute();
      assert.deepEqual(
        rows.map((x) => x.tenant_id),
        [other.id],
      );
    });

    test('one TLS connection carries many authenticated requests; a quarantine takes effect on the next one', async () => {
      const d = await certified();
      const agent = new https.Agent({
        keepAlive: true,
        maxSockets: 1,
        ca: svc.caPem,
        cert: d.certPem,
        key: d.keyPem,
      });
      const sockets = new Set<unknown>();
      const post = () =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const payload = Buffer.from(JSON.stringify(batch()));
          const req = https.request(
            new URL('/v1/device/error-reports', svc.url),
            {
              method: 'POST',
              agent,
              headers: { 'content-type': 'application/json', 'content-length': payload.length },
            },
            (res) => {
              sockets.add(res.socket);
              const chunks: Buffer[] = [];
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () =>
                resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
              );
            },
          );
          req.on('error', reject);
          req.end(payload);
        });
      try {
        assert.equal((await post()).status, 200);
        assert.equal((await post()).status, 200);
        await svc.call('POST', `/v1/devices/${d.id}/quarantine`, { token: t.tokens.Contributor, body: {} });
        const r = await post();
        assert.equal(r.status, 403, r.body);
        assert.equal(JSON.parse(r.body).code, 'AUTH_DEVICE_QUARANTINED');
        assert.equal(sockets.size, 1, 'all three requests used one TLS connection');
      } finally {
        agent.destroy();
      }
    });

    test('bearer-token routes on the same listener still work without a client certificate', async () => {
      const r = await tlsCall(svc, 'GET', '/v1/tenants/current', { token: t.tokens.Reader });
      assert.equal(r.status, 200, r.body);
    });
  });
}
