// Tenant CA material: a self-signed root (pathLen 1) and issuing CAs signed by it (pathLen 0),
// checked with node:crypto, @peculiar/x509 and `openssl verify`, not only with the code that
// made them. Time is injected: validity follows the given `now`, far from today.

import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as x509 from '@peculiar/x509';
import { HeptadError } from '../src/errors.ts';
import { readCertificateParts } from '../src/pki/certificate.ts';
import { createDeviceCertificateIssuer } from '../src/pki/device-cert-issuer.ts';
import { fromPem, toPem } from '../src/pki/pem.ts';
import { createSerialNumber } from '../src/pki/profile.ts';
import { CA_BACKDATE_MS, createTenantIssuingCa, createTenantRootCa } from '../src/pki/tenant-ca.ts';
import { createCertificateAuthority } from '../src/x509.ts';

const DAY_MS = 86_400_000;
const NOW = new Date('2031-06-01T00:00:00.000Z');
const TENANT = '2f1d2c3b-4a59-4687-9a1b-0c2d3e4f5a6b';

const workDir = mkdtempSync(join(tmpdir(), 'heptad-pki-ca-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

const root = await createTenantRootCa({ tenantId: TENANT, now: NOW, validityDays: 7300 });
const issuing = await createTenantIssuingCa({ root, now: NOW, validityDays: 3650, generation: 2 });
const rootCert = new X509Certificate(root.certDer);
const issuingCert = new X509Certificate(issuing.certDer);

function pointOf(cert: X509Certificate): Buffer {
  return cert.publicKey.export({ format: 'der', type: 'spki' }).subarray(26);
}

async function assertRefused(p: Promise<unknown>, fields: readonly string[], label: string): Promise<void> {
  await assert.rejects(
    p,
    (e: unknown) => {
      assert.ok(e instanceof HeptadError, `${label}: ${String(e)}`);
      assert.equal(e.code, 'PKI_CA_OPTIONS_INVALID', label);
      assert.deepEqual(
        e.fields.map((f) => f.field),
        fields,
        label,
      );
      return true;
    },
    label,
  );
}

describe('createTenantRootCa', () => {
  test('is a self-signed EC P-256 CA named O=<tenant>, CN=Heptad Tenant Root CA', () => {
    assert.equal(rootCert.subject, `O=${TENANT}\nCN=Heptad Tenant Root CA`);
    assert.equal(rootCert.issuer, rootCert.subject);
    assert.equal(rootCert.verify(rootCert.publicKey), true);
    assert.equal(rootCert.ca, true);
    assert.equal(rootCert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(rootCert.signatureAlgorithm, 'ecdsa-with-SHA256');
  });

  test('has BasicConstraints CA pathLen 1 and KeyUsage keyCertSign|cRLSign, both critical, and an SKI (method 1)', () => {
    const c = new x509.X509Certificate(root.certDer);
    const bc = c.getExtension(x509.BasicConstraintsExtension);
    assert.equal(bc?.ca, true);
    assert.equal(bc?.pathLength, 1);
    assert.equal(bc?.critical, true);
    const ku = c.getExtension(x509.KeyUsagesExtension);
    assert.equal(ku?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(ku?.critical, true);
    assert.equal(
      c.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
      createHash('sha1').update(pointOf(rootCert)).digest('hex'),
    );
  });

  test('is valid from now − 5 min for the given days; PEM and DER agree; the key matches', () => {
    assert.equal(rootCert.validFromDate.getTime(), NOW.getTime() - CA_BACKDATE_MS);
    assert.equal(rootCert.validToDate.getTime(), NOW.getTime() + 7300 * DAY_MS);
    assert.deepEqual(fromPem(root.certPem, 'CERTIFICATE'), root.certDer);
    assert.equal(
      rootCert.checkPrivateKey(createPrivateKey({ key: root.keyPkcs8, format: 'der', type: 'pkcs8' })),
      true,
    );
  });

  test('writes every name string as UTF8String (RFC 5280 §4.1.2.6)', () => {
    const subject = readCertificateParts(root.certDer).subjectDer;
    assert.ok(subject.includes(Buffer.concat([Buffer.from([0x0c, TENANT.length]), Buffer.from(TENANT)])));
    assert.ok(!subject.includes(Buffer.from([0x13])), 'no PrintableString');
  });

  test('refuses a bad tenant id, time or validity, listing every bad field', async () => {
    await assertRefused(
      createTenantRootCa({ tenantId: 'a b', now: new Date(Number.NaN), validityDays: 0 }),
      ['tenantId', 'now', 'validityDays'],
      'all bad',
    );
    for (const tenantId of ['', '-x', 'x'.repeat(65), 'a/b', 'é']) {
      await assertRefused(
        createTenantRootCa({ tenantId, now: NOW, validityDays: 1 }),
        ['tenantId'],
        tenantId,
      );
    }
    for (const validityDays of [-1, Number.POSITIVE_INFINITY, 36_501]) {
      await assertRefused(
        createTenantRootCa({ tenantId: TENANT, now: NOW, validityDays }),
        ['validityDays'],
        `${validityDays}`,
      );
    }
  });
});

describe('createTenantIssuingCa', () => {
  test('is signed by the root, named O=<tenant>, CN=Heptad Tenant Issuing CA <generation>', () => {
    assert.equal(issuingCert.subject, `O=${TENANT}\nCN=Heptad Tenant Issuing CA 2`);
    assert.equal(issuingCert.issuer, rootCert.subject);
    assert.equal(issuingCert.checkIssued(rootCert), true);
    assert.equal(issuingCert.verify(rootCert.publicKey), true);
    assert.equal(issuingCert.ca, true);
  });

  test('copies the root subject into its issuer field octet for octet', () => {
    assert.deepEqual(
      readCertificateParts(issuing.certDer).issuerDer,
      readCertificateParts(root.certDer).subjectDer,
    );
  });

  test('has pathLen 0, keyCertSign|cRLSign critical, SKI, and AKI = the root SKI', () => {
    const c = new x509.X509Certificate(issuing.certDer);
    const bc = c.getExtension(x509.BasicConstraintsExtension);
    assert.equal(bc?.ca, true);
    assert.equal(bc?.pathLength, 0);
    assert.equal(bc?.critical, true);
    const ku = c.getExtension(x509.KeyUsagesExtension);
    assert.equal(ku?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(ku?.critical, true);
    const rootSki = new x509.X509Certificate(root.certDer).getExtension(
      x509.SubjectKeyIdentifierExtension,
    )?.keyId;
    assert.equal(c.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, rootSki);
    assert.equal(
      c.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
      createHash('sha1').update(pointOf(issuingCert)).digest('hex'),
    );
  });

  test('chains to the root for OpenSSL', () => {
    writeFileSync(join(workDir, 'root.pem'), root.certPem);
    writeFileSync(join(workDir, 'issuing.pem'), issuing.certPem);
    const r = spawnSync(
      'openssl',
      ['verify', '-attime', String(NOW.getTime() / 1000), '-CAfile', 'root.pem', 'issuing.pem'],
      { cwd: workDir, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /issuing\.pem: OK/);
  });

  test('is valid from now − 5 min; each generation has its own key; works from the root PEM alone', async () => {
    assert.equal(issuingCert.validFromDate.getTime(), NOW.getTime() - CA_BACKDATE_MS);
    assert.equal(issuingCert.validToDate.getTime(), NOW.getTime() + 3650 * DAY_MS);
    const next = await createTenantIssuingCa({
      root: { certPem: root.certPem, keyPkcs8: root.keyPkcs8 },
      tenantId: TENANT,
      now: NOW,
      validityDays: 30,
      generation: 3,
    });
    assert.notDeepEqual(next.keyPkcs8, issuing.keyPkcs8);
    assert.equal(new X509Certificate(next.certDer).verify(rootCert.publicKey), true);
  });

  test('may end exactly when its root ends, even with milliseconds in now, but not a second later', async () => {
    const now = new Date('2031-06-01T00:00:00.789Z');
    const shortRoot = await createTenantRootCa({ tenantId: TENANT, now, validityDays: 10 });
    const same = await createTenantIssuingCa({ root: shortRoot, now, validityDays: 10, generation: 1 });
    assert.equal(
      new X509Certificate(same.certDer).validToDate.getTime(),
      new X509Certificate(shortRoot.certDer).validToDate.getTime(),
    );
    await assertRefused(
      createTenantIssuingCa({ root: shortRoot, now, validityDays: 10 + 1 / 86_400, generation: 1 }),
      ['validityDays'],
      'one second longer',
    );
  });

  test('refuses bad options, listing every bad field', async () => {
    const other = await createTenantRootCa({ tenantId: 'other-tenant', now: NOW, validityDays: 7300 });
    const platform = await createCertificateAuthority({
      commonName: 'not a tenant root',
      now: NOW,
      validityDays: 10,
    });
    const base = { root, now: NOW, validityDays: 30, generation: 1 };
    const device = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const leafDer = createDeviceCertificateIssuer({
      issuerCertDer: issuing.certDer,
      issuerKey: createPrivateKey({ key: issuing.keyPkcs8, format: 'der', type: 'pkcs8' }),
      tenantId: TENANT,
    }).issue({
      deviceId: 'a'.repeat(64),
      publicKeySpkiDer: device.publicKey.export({ format: 'der', type: 'spki' }),
      serial: createSerialNumber(),
      notBefore: NOW,
      notAfter: new Date(NOW.getTime() + DAY_MS),
    });
    const leaf = {
      certPem: toPem(leafDer, 'CERTIFICATE'),
      keyPkcs8: device.privateKey.export({ format: 'der', type: 'pkcs8' }),
    };
    const cases: Array<[string, Parameters<typeof createTenantIssuingCa>[0], string[]]> = [
      ['generation 0', { ...base, generation: 0 }, ['generation']],
      ['generation 1.5', { ...base, generation: 1.5 }, ['generation']],
      [
        'validity 0 and bad now',
        { ...base, validityDays: 0, now: new Date(Number.NaN) },
        ['now', 'validityDays'],
      ],
      ['tenant is not the root tenant', { ...base, tenantId: 'other-tenant' }, ['tenantId']],
      [
        'key of another root',
        { ...base, root: { certPem: root.certPem, keyPkcs8: other.keyPkcs8 } },
        ['root.keyPkcs8'],
      ],
      [
        'key not PKCS#8',
        { ...base, root: { certPem: root.certPem, keyPkcs8: Buffer.from('nope') } },
        ['root.keyPkcs8'],
      ],
      [
        'root PEM garbage',
        { ...base, root: { certPem: 'garbage', keyPkcs8: root.keyPkcs8 } },
        ['root.certPem'],
      ],
      ['root names no tenant', { ...base, root: platform }, ['root.certPem']],
      ['root is not a CA (a device certificate)', { ...base, root: leaf }, ['root.certPem']],
      ['outlives the root', { ...base, validityDays: 7301 }, ['validityDays']],
    ];
    for (const [label, options, fields] of cases) {
      await assertRefused(createTenantIssuingCa(options), fields, label);
    }
  });
});
