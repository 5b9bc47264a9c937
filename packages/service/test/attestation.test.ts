import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SoftRootOfTrust } from '@heptad/device';
import { attestationBinding, createCsr, type MeasurementEntry } from '@heptad/protocol';
import * as x509 from '@peculiar/x509';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';
import { createSoftDevice, type SoftDevice, wire } from './support/soft-device.ts';

const RUNTIME = createHash('sha256').update('heptad-runtime-1.0.0').digest('hex');
const APP = createHash('sha256').update('some-app').digest('hex');

for (const backend of backends()) {
  describe(`remote attestation on ${backend}`, () => {
    let svc: TestService;
    let t: SeededTenant;
    const devices: SoftDevice[] = [];
    const device = async (claimed = true) => {
      const d = await createSoftDevice(svc, claimed ? { claimToken: t.tokens.Contributor } : {});
      devices.push(d);
      return d;
    };
    const send = (e: Parameters<typeof wire>[0]) =>
      svc.call('POST', '/v1/attestation/evidence', { body: wire(e) });
    const events = async (deviceId: string) =>
      (await svc.call('GET', `/v1/security-events?deviceId=${deviceId}`, { token: t.tokens.Reader })).json
        .items ?? [];

    /** Sends the evidence and asserts the refusal: its code, a stored security event, no certificate. */
    const refused = async (e: Parameters<typeof wire>[0], code: string, status = 400) => {
      const certsBefore = await svc.db.selectFrom('device_certificates').select('serial').execute();
      const r = await send(e);
      assert.equal(r.json.code, code, r.body);
      assert.equal(r.status, status);
      const certsAfter = await svc.db.selectFrom('device_certificates').select('serial').execute();
      assert.equal(certsAfter.length, certsBefore.length, 'no certificate was issued');
      const ev = await svc.db
        .selectFrom('security_events')
        .selectAll()
        .where('device_id', '=', e.deviceId)
        .orderBy('at', 'desc')
        .execute();
      assert.ok(
        ev.some(
          (x) =>
            x.reason === code &&
            x.kind === 'attestation.refused' &&
            /^[0-9a-f]{64}$/.test(x.evidence_digest ?? ''),
        ),
        `a security event records ${code}`,
      );
    };

    before(async () => {
      svc = await createTestService(backend, 'attest');
      t = await seedTenant(svc, 'Attest');
      const r = await svc.call('POST', '/v1/runtime-images', {
        token: svc.operatorToken,
        body: { digest: RUNTIME, version: '1.0.0', securityVersion: 1 },
      });
      assert.equal(r.status, 201, r.body);
    });
    after(async () => {
      for (const d of devices) d.cleanup();
      await svc.close();
    });

    test('a measured, claimed device earns a 24 h certificate from its tenant CA', async () => {
      const d = await device();
      // Its app is nobody's deployment: allowed because the device is a development device
      // (updates.test.ts checks the app policy itself).
      const cap = await svc.call('POST', `/v1/devices/${d.id}/capabilities`, {
        token: t.tokens.Administrator,
        body: { capability: 'appDevelopment' },
      });
      assert.equal(cap.status, 201, cap.body);
      await d.measure({ kind: 'runtime', digest: RUNTIME, name: 'heptad-runtime', version: '1.0.0' });
      await d.measure({ kind: 'app', digest: APP, name: 'blink' });
      const e = await d.evidence(await d.challenge());
      const r = await send(e);
      assert.equal(r.status, 201, r.body);
      assert.equal(r.json['rotKind'], 'soft');
      assert.equal(r.json['tenantId'], t.id);
      const cert = r.json['certificate'] as Record<string, string>;
      const [leafPem, issuingPem] = String(cert['chainPem']).split(/(?<=-----END CERTIFICATE-----)\n/);
      const leaf = new X509Certificate(String(leafPem));
      const issuing = new X509Certificate(String(issuingPem));
      const root = new X509Certificate(String(cert['rootPem']));
      assert.ok(leaf.verify(issuing.publicKey) && leaf.checkIssued(issuing));
      assert.ok(issuing.verify(root.publicKey) && issuing.checkIssued(root));
      assert.equal(leaf.subject, `CN=${d.id}`);
      assert.equal(leaf.subjectAltName, `URI:urn:heptad:device:${d.id}, URI:urn:heptad:tenant:${t.id}`);
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2']);
      assert.equal(leaf.ca, false);
      assert.ok(leaf.checkPrivateKey(e.tlsKey), 'the certificate is for the CSR key');
      assert.equal(
        new Date(leaf.validFrom).getTime(),
        svc.now.getTime() - 5 * 60_000 - (svc.now.getTime() % 1000),
      );
      assert.equal(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom), 24 * 3_600_000 + 5 * 60_000);
      assert.equal(cert['serial'], leaf.serialNumber.toLowerCase());
      const shown = await svc.call('GET', `/v1/devices/${d.id}`, { token: t.tokens.Reader });
      assert.equal(shown.json['lastAttestedAt'], svc.now.toISOString());
    });

    test('refuses a device that is not registered, not claimed, or quarantined', async () => {
      const unknown = await svc.call('POST', '/v1/attestation/challenge', {
        body: { deviceId: 'a'.repeat(64) },
      });
      assert.equal(unknown.json.code, 'ATTEST_DEVICE_UNKNOWN');
      const unclaimed = await device(false);
      await refused(await unclaimed.evidence(await unclaimed.challenge()), 'ATTEST_DEVICE_UNCLAIMED', 409);
      const q = await device();
      const nonce = await q.challenge();
      await svc.call('POST', `/v1/devices/${q.id}/quarantine`, {
        token: t.tokens.Contributor,
        body: { reason: 'test' },
      });
      await refused(await q.evidence(nonce), 'ATTEST_DEVICE_QUARANTINED', 403);
    });

    test('evidence for an unregistered id is refused and stores nothing (it belongs to no tenant)', async () => {
      const d = await device();
      const e = wire(await d.evidence(await d.challenge()));
      const before = await svc.snapshot();
      const r = await send({ ...e, deviceId: 'c'.repeat(64) });
      assert.equal(r.json.code, 'ATTEST_DEVICE_UNKNOWN');
      assert.equal(r.status, 404);
      assert.equal(await svc.snapshot(), before);
    });

    test('checks the runtime policy before the CSR, in the documented order', async () => {
      const d = await device();
      await d.measure({
        kind: 'runtime',
        digest: createHash('sha256').update('unknown runtime').digest('hex'),
      });
      const e = await d.evidence(await d.challenge(), { csrCommonName: 'e'.repeat(64) });
      await refused(e, 'ATTEST_RUNTIME_UNKNOWN', 403);
    });

    test('refuses unknown, foreign, expired and replayed nonces', async () => {
      const d = await device();
      const other = await device();
      await refused(await d.evidence(randomBytes(76).toString('hex')), 'ATTEST_NONCE_UNKNOWN');
      await refused(await d.evidence(await other.challenge()), 'ATTEST_NONCE_WRONG_DEVICE');
      const stale = await d.challenge();
      const saved = svc.now;
      svc.now = new Date(saved.getTime() + 61_000);
      try {
        await refused(await d.evidence(stale), 'ATTEST_NONCE_EXPIRED');
      } finally {
        svc.now = saved;
      }
      const e = await d.evidence(await d.challenge());
      assert.equal((await send(e)).status, 201);
      await refused(e, 'ATTEST_NONCE_REPLAYED');
    });

    test('a nonce is burnt by a failed attempt too', async () => {
      const d = await device();
      const nonce = await d.challenge();
      const bad = await d.evidence(nonce);
      await refused({ ...bad, log: [{ kind: 'app', digest: APP }] }, 'ATTEST_LOG_MISMATCH');
      await refused(await d.evidence(nonce), 'ATTEST_NONCE_REPLAYED');
    });

    test('refuses a forged quote, a quote by another device key and a tampered quote', async () => {
      const d = await device();
      const impostor = SoftRootOfTrust.create(mkdtempSync(join(tmpdir(), 'heptad-impostor-')));
      const nonce = await d.challenge();
      const good = await d.evidence(nonce);
      const csr = Buffer.from(good.csr, 'base64');
      const forged = await impostor.quote(attestationBinding(Buffer.from(nonce, 'hex'), csr), [15]);
      await refused(
        {
          ...good,
          quote: { attest: forged.attest.toString('base64'), signature: forged.signature.toString('base64') },
        },
        'ATTEST_QUOTE_SIGNATURE_INVALID',
      );
      const other = await device();
      const n2 = await d.challenge();
      const theirs = await other.evidence(n2); // the other device's key quotes this device's nonce
      await refused({ ...theirs, deviceId: d.id }, 'ATTEST_QUOTE_SIGNATURE_INVALID');
      const n3 = await d.challenge();
      const e3 = await d.evidence(n3);
      const attest = Buffer.from(e3.quote.attest, 'base64');
      attest[attest.length - 1] = (attest[attest.length - 1] ?? 0) ^ 1;
      await refused(
        { ...e3, quote: { ...e3.quote, attest: attest.toString('base64') } },
        'ATTEST_QUOTE_SIGNATURE_INVALID',
      );
    });

    test('refuses a quote over another nonce, and a CSR swapped after quoting', async () => {
      const d = await device();
      const nonce = await d.challenge();
      const otherNonce = await d.evidence(randomBytes(32).toString('hex'));
      await refused({ ...otherNonce, nonce }, 'ATTEST_QUOTE_NONCE_MISMATCH');
      const n2 = await d.challenge();
      const e = await d.evidence(n2);
      const swapped = createCsr({
        privateKey: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey,
        subjectCommonName: d.id,
      });
      await refused({ ...e, csr: swapped.toString('base64') }, 'ATTEST_QUOTE_NONCE_MISMATCH');
    });

    test('refuses a quote over the wrong register', async () => {
      const d = await device();
      const nonce = await d.challenge();
      const e = await d.evidence(nonce);
      const q = await d.rot.quote(
        attestationBinding(Buffer.from(nonce, 'hex'), Buffer.from(e.csr, 'base64')),
        [16],
      );
      await refused(
        { ...e, quote: { attest: q.attest.toString('base64'), signature: q.signature.toString('base64') } },
        'ATTEST_QUOTE_PCR_SELECTION_MISMATCH',
      );
    });

    test('refuses a measurement log that is reordered, short, padded or does not replay', async () => {
      const d = await device();
      await d.measure({ kind: 'runtime', digest: RUNTIME });
      await d.measure({ kind: 'app', digest: APP });
      const cases: Array<(log: readonly MeasurementEntry[]) => MeasurementEntry[]> = [
        (log) => [...log].reverse(),
        (log) => log.slice(0, 1),
        (log) => [...log, { kind: 'app', digest: APP }],
        () => [],
        (log) => log.map((e, i) => (i === 1 ? { ...e, digest: RUNTIME } : e)),
      ];
      for (const alter of cases) {
        const e = await d.evidence(await d.challenge());
        await refused({ ...e, log: alter(e.log) }, 'ATTEST_LOG_MISMATCH');
      }
    });

    test('refuses a runtime the platform does not know', async () => {
      const d = await device();
      await d.measure({ kind: 'runtime', digest: createHash('sha256').update('evil runtime').digest('hex') });
      await refused(await d.evidence(await d.challenge()), 'ATTEST_RUNTIME_UNKNOWN', 403);
    });

    test('refuses a bad CSR signature, a CSR for another device and a TLS key certified for another device', async () => {
      const d = await device();
      const nonce = await d.challenge();
      // A CSR whose signature does not verify, bound into the quote so only the CSR check can catch it.
      const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
      const broken = createCsr({ privateKey: key, subjectCommonName: d.id });
      broken[broken.length - 3] = (broken[broken.length - 3] ?? 0) ^ 0x55;
      const q = await d.rot.quote(attestationBinding(Buffer.from(nonce, 'hex'), broken), [15]);
      const base = await d.evidence(nonce);
      await refused(
        {
          ...base,
          csr: broken.toString('base64'),
          quote: { attest: q.attest.toString('base64'), signature: q.signature.toString('base64') },
        },
        'ATTEST_CSR_INVALID',
      );
      await refused(
        await d.evidence(await d.challenge(), { csrCommonName: 'b'.repeat(64) }),
        'ATTEST_CSR_SUBJECT_MISMATCH',
      );
      const first = await device();
      const shared = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
      assert.equal(
        (await send(await first.evidence(await first.challenge(), { tlsKey: shared }))).status,
        201,
      );
      assert.equal(
        (await send(await first.evidence(await first.challenge(), { tlsKey: shared }))).status,
        201,
        'the same device may reuse it',
      );
      await refused(await d.evidence(await d.challenge(), { tlsKey: shared }), 'ATTEST_CSR_KEY_REUSED', 409);
    });

    test('refuses garbage in every field', async () => {
      const d = await device();
      const e = wire(await d.evidence(await d.challenge()));
      const schemaRefusals: unknown[] = [
        { ...e, deviceId: 'not-hex' },
        { ...e, nonce: 'zz' },
        { ...e, quote: { attest: '!!!!', signature: e.quote.signature } },
        { ...e, quote: { attest: 'A'.repeat(5000), signature: e.quote.signature } },
        { ...e, csr: 'A'.repeat(5000) },
        { ...e, log: Array.from({ length: 257 }, () => ({ kind: 'app', digest: APP })) },
        { ...e, log: [{ kind: 'bootloader', digest: APP }] },
        { ...e, extra: 1 },
        { ...e, quote: null },
      ];
      for (const body of schemaRefusals) {
        const r = await svc.call('POST', '/v1/attestation/evidence', { body });
        assert.equal(r.json.code, 'REQUEST_INVALID', JSON.stringify(body).slice(0, 100));
      }
      // A signature that is not a TPMT_SIGNATURE is malformed evidence; attest bytes are not parsed
      // before their signature verifies, so garbage or truncated attest reads as a bad signature.
      const e1 = wire(await d.evidence(await d.challenge()));
      // TPMT_SIGNATURE: ECDSA, SHA-256, then an r whose size field claims more bytes than follow.
      const overlong = Buffer.from([0x00, 0x18, 0x00, 0x0b, 0x00, 0xff, 1, 2, 3]).toString('base64');
      await refused({ ...e1, quote: { ...e1.quote, signature: overlong } }, 'ATTEST_EVIDENCE_MALFORMED');
      const e2 = wire(await d.evidence(await d.challenge()));
      const truncatedSig = Buffer.from(e2.quote.signature, 'base64').subarray(0, 20).toString('base64');
      await refused({ ...e2, quote: { ...e2.quote, signature: truncatedSig } }, 'ATTEST_EVIDENCE_MALFORMED');
      const e4 = wire(await d.evidence(await d.challenge()));
      const truncated = Buffer.from(e4.quote.attest, 'base64').subarray(0, 40).toString('base64');
      await refused({ ...e4, quote: { ...e4.quote, attest: truncated } }, 'ATTEST_QUOTE_SIGNATURE_INVALID');
      const n3 = await d.challenge();
      const e3 = wire(await d.evidence(n3));
      await refused(
        { ...e3, csr: Buffer.from('not a csr').toString('base64') },
        'ATTEST_QUOTE_NONCE_MISMATCH',
      );
    });

    test('a challenge stores nothing; a nonce with a forged MAC or expiry is refused', async () => {
      const d = await device();
      const before = await svc.snapshot();
      for (let i = 0; i < 50; i++) await d.challenge();
      assert.equal(await svc.snapshot(), before, 'anonymous challenges cannot fill the store');
      const nonce = Buffer.from(await d.challenge(), 'hex');
      const forgedMac = Buffer.from(nonce);
      forgedMac[forgedMac.length - 1] = (forgedMac[forgedMac.length - 1] ?? 0) ^ 1;
      await refused(await d.evidence(forgedMac.toString('hex')), 'ATTEST_NONCE_UNKNOWN');
      const longer = Buffer.from(nonce);
      longer.writeBigUInt64BE(longer.readBigUInt64BE(0) + 3_600_000n, 0); // a later expiry breaks the MAC
      await refused(await d.evidence(longer.toString('hex')), 'ATTEST_NONCE_UNKNOWN');
    });

    test('quarantine revokes current certificates onto the CRL; release lets the device attest afresh', async () => {
      const d = await device();
      const first = await send(await d.evidence(await d.challenge()));
      const serial = String((first.json['certificate'] as Record<string, unknown>)['serial']);
      const q = await svc.call('POST', `/v1/devices/${d.id}/quarantine`, {
        token: t.tokens.Contributor,
        body: { reason: 'clone suspected' },
      });
      assert.equal(q.json['quarantineReason'], 'clone suspected');
      const crlPem = (await svc.call('GET', '/v1/tenants/current/crl', { token: t.tokens.Reader })).body;
      const listed = new Set(
        crlPem
          .split(/(?<=-----END X509 CRL-----)\n?/)
          .filter((p) => p.includes('BEGIN X509 CRL'))
          .flatMap((p) =>
            new x509.X509Crl(p).entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, '')),
          ),
      );
      assert.ok(listed.has(serial.replace(/^0+/, '')), 'the certificate is on the CRL');
      const publicCrl = await svc.call('GET', `/pki/tenants/${t.id}/crl.pem`);
      assert.equal(publicCrl.status, 200);
      assert.equal(publicCrl.body, crlPem, 'the public endpoint serves the same CRLs');
      assert.equal(
        (await svc.call('DELETE', `/v1/devices/${d.id}/quarantine`, { token: t.tokens.Contributor })).status,
        200,
      );
      const again = await svc.call('DELETE', `/v1/devices/${d.id}/quarantine`, {
        token: t.tokens.Contributor,
      });
      assert.equal(again.json.code, 'DEVICE_NOT_QUARANTINED');
      const renewed = await send(await d.evidence(await d.challenge()));
      assert.equal(renewed.status, 201);
      const crlAfter = (await svc.call('GET', '/v1/tenants/current/crl', { token: t.tokens.Reader })).body;
      assert.equal(crlAfter, crlPem, 'the old certificate stays revoked');
    });

    test('rotation publishes the next issuing CA first, then issues from it', async () => {
      const rot = await svc.call('POST', '/v1/tenants/current/ca-certificates/rotate', {
        token: t.tokens.Administrator,
        body: { overlapDays: 1 },
      });
      assert.equal(rot.status, 201, rot.body);
      assert.equal(rot.json['status'], 'next');
      const pending = await svc.call('POST', '/v1/tenants/current/ca-certificates/rotate', {
        token: t.tokens.Administrator,
        body: {},
      });
      assert.equal(pending.json.code, 'TENANT_CA_ROTATION_PENDING');
      const bundle = await svc.call('GET', '/v1/tenants/current/ca-certificates/trust-bundle?chain=true', {
        token: t.tokens.Reader,
      });
      assert.equal(
        bundle.body.match(/BEGIN CERTIFICATE/g)?.length,
        3,
        'root + current + next issuing CA are published',
      );
      const d = await device();
      const issuerOf = async () => {
        const r = await send(await d.evidence(await d.challenge()));
        assert.equal(r.status, 201, r.body);
        return new X509Certificate(String((r.json['certificate'] as Record<string, unknown>)['chainPem']))
          .issuer;
      };
      assert.match(await issuerOf(), /Issuing CA 1/);
      const saved = svc.now;
      svc.now = new Date(saved.getTime() + 86_400_000 + 1000);
      try {
        assert.match(await issuerOf(), /Issuing CA 2/);
        const list = await svc.call('GET', '/v1/tenants/current/ca-certificates', { token: t.tokens.Reader });
        const byGen = new Map(
          list.json.items?.filter((c) => c['kind'] === 'issuing').map((c) => [c['generation'], c['status']]),
        );
        assert.equal(byGen.get(1), 'retiring');
        assert.equal(byGen.get(2), 'active');
      } finally {
        svc.now = saved;
      }
    });

    test('repeated refusals fold into one event per device and reason per minute, with a count', async () => {
      const d = await device();
      for (let i = 0; i < 5; i++) {
        const r = await send(await d.evidence(randomBytes(76).toString('hex')));
        assert.equal(r.json.code, 'ATTEST_NONCE_UNKNOWN');
      }
      const list = async () =>
        (await svc.call('GET', `/v1/security-events?deviceId=${d.id}`, { token: t.tokens.Reader })).json
          .items ?? [];
      let items = await list();
      assert.equal(items.length, 1);
      assert.equal(items[0]?.['count'], 5);
      const saved = svc.now;
      svc.now = new Date(saved.getTime() + 61_000);
      try {
        await send(await d.evidence(randomBytes(76).toString('hex')));
        items = await list();
        assert.deepEqual(
          items.map((e) => e['count']),
          [1, 5],
          'after the window a new burst starts a new row',
        );
      } finally {
        svc.now = saved;
      }
    });

    test('security events are the tenant’s own', async () => {
      const other = await seedTenant(svc, 'Attest Other');
      const mine = await events(devices[0]?.id ?? '');
      assert.ok(Array.isArray(mine));
      const theirs = await svc.call('GET', '/v1/security-events', { token: other.tokens.Reader });
      assert.deepEqual(theirs.json.items, []);
    });
  });
}
