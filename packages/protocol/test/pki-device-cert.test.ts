// The template issuer of 24 h device certificates: every certificate verifies with node:crypto
// against its issuing CA and as a chain with `openssl verify -purpose sslclient`; OpenSSL and
// @peculiar/x509 read the profile back (CN, both URIs, clientAuth, digitalSignature, CA:FALSE,
// AKI/SKI, validity); the TBSCertificate is octet for octet what @peculiar/x509 writes for the
// same inputs; certificates differ only in the patched fields; dates from 2050 switch to
// GeneralizedTime; bad inputs and bad issuers are refused with every bad field listed.

import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as x509 from '@peculiar/x509';
import { HeptadError } from '../src/errors.ts';
import { readCertificateParts } from '../src/pki/certificate.ts';
import { derSequence } from '../src/pki/der.ts';
import {
  createDeviceCertificateIssuer,
  type DeviceCertificateRequest,
  type PatchedField,
  parseDeviceCertificate,
} from '../src/pki/device-cert-issuer.ts';
import { derCommonNameOnly } from '../src/pki/name.ts';
import { toPem } from '../src/pki/pem.ts';
import { createSerialNumber } from '../src/pki/profile.ts';
import { createTenantIssuingCa, createTenantRootCa, type TenantCaMaterial } from '../src/pki/tenant-ca.ts';
import { createCertificateAuthority, issueServerCertificate } from '../src/x509.ts';

const NOW = new Date('2031-06-01T12:00:00.000Z');
const HOUR_MS = 3_600_000;
const TENANT = 'tenant-a';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const workDir = mkdtempSync(join(tmpdir(), 'heptad-pki-cert-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

const keyOf = (ca: TenantCaMaterial) => createPrivateKey({ key: ca.keyPkcs8, format: 'der', type: 'pkcs8' });
const root = await createTenantRootCa({ tenantId: TENANT, now: NOW, validityDays: 36_500 });
const issuing = await createTenantIssuingCa({ root, now: NOW, validityDays: 36_000, generation: 1 });
const issuingCert = new X509Certificate(issuing.certDer);
const issuer = createDeviceCertificateIssuer({
  issuerCertDer: issuing.certDer,
  issuerKey: keyOf(issuing),
  tenantId: TENANT,
});
const otherRoot = await createTenantRootCa({ tenantId: 'tenant-b', now: NOW, validityDays: 36_500 });
const otherIssuing = await createTenantIssuingCa({
  root: otherRoot,
  now: NOW,
  validityDays: 36_000,
  generation: 1,
});

interface DeviceKey {
  readonly privateKey: KeyObject;
  readonly spki: Buffer;
  readonly id: string;
}
function newDevice(): DeviceKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey, spki, id: createHash('sha256').update(spki).digest('hex') };
}
function requestFor(d: DeviceKey, now = NOW): DeviceCertificateRequest {
  return {
    deviceId: d.id,
    publicKeySpkiDer: d.spki,
    serial: createSerialNumber(),
    notBefore: new Date(now.getTime() - 5 * 60_000),
    notAfter: new Date(now.getTime() + 24 * HOUR_MS),
  };
}

function openssl(
  args: readonly string[],
  files: Record<string, string> = {},
): { status: number | null; out: string } {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(workDir, name), text);
  const r = spawnSync('openssl', args, { cwd: workDir, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
const at = (d: Date) => String(Math.floor(d.getTime() / 1000));

function assertRefused(fn: () => unknown, code: string, fields: readonly string[], label: string): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof HeptadError, `${label}: ${String(e)}`);
      assert.equal(e.code, code, label);
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

const device = newDevice();
const request = requestFor(device);
const leafDer = issuer.issue(request);
const leaf = new X509Certificate(leafDer);

describe('issued certificates verify', () => {
  test('every certificate of a batch verifies with node:crypto against the issuing CA', () => {
    for (let i = 0; i < 200; i++) {
      const cert = new X509Certificate(issuer.issue(requestFor(newDevice())));
      assert.equal(cert.verify(issuingCert.publicKey), true, `certificate ${i}`);
      assert.equal(cert.checkIssued(issuingCert), true, `certificate ${i}`);
    }
  });

  test('the chain device ← issuing ← root verifies with openssl verify -purpose sslclient', () => {
    const r = openssl(
      [
        'verify',
        '-attime',
        at(NOW),
        '-CAfile',
        'root.pem',
        '-untrusted',
        'issuing.pem',
        '-purpose',
        'sslclient',
        'leaf.pem',
      ],
      { 'root.pem': root.certPem, 'issuing.pem': issuing.certPem, 'leaf.pem': toPem(leafDer, 'CERTIFICATE') },
    );
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /leaf\.pem: OK/);
  });

  test("does not verify against another tenant's CA chain, nor outside its validity", () => {
    assert.equal(leaf.verify(new X509Certificate(otherIssuing.certDer).publicKey), false);
    const files = { 'root-b.pem': otherRoot.certPem, 'issuing-b.pem': otherIssuing.certPem };
    const foreign = openssl(
      [
        'verify',
        '-attime',
        at(NOW),
        '-CAfile',
        'root-b.pem',
        '-untrusted',
        'issuing-b.pem',
        '-purpose',
        'sslclient',
        'leaf.pem',
      ],
      files,
    );
    assert.notEqual(foreign.status, 0, foreign.out);
    const late = openssl([
      'verify',
      '-attime',
      at(new Date(NOW.getTime() + 25 * HOUR_MS)),
      '-CAfile',
      'root.pem',
      '-untrusted',
      'issuing.pem',
      'leaf.pem',
    ]);
    assert.notEqual(late.status, 0);
    assert.match(late.out, /expired/);
  });

  test('the issued certificate is for the requested key (checkPrivateKey)', () => {
    assert.equal(leaf.checkPrivateKey(device.privateKey), true);
    assert.equal(leaf.checkPrivateKey(newDevice().privateKey), false);
  });
});

describe('the profile', () => {
  test('openssl x509 -text shows CN, both SAN URIs, clientAuth, KU critical, CA:FALSE critical, validity', () => {
    const r = openssl(['x509', '-in', 'leaf.pem', '-noout', '-text']);
    assert.equal(r.status, 0, r.out);
    const text = r.out;
    assert.match(text, /Version: 3 \(0x2\)/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(text, new RegExp(`Subject: CN ?= ?${device.id}\\n`));
    assert.match(text, /Issuer: O ?= ?tenant-a, CN ?= ?Heptad Tenant Issuing CA 1/);
    assert.match(text, /Not Before: Jun {2}1 11:55:00 2031 GMT/);
    assert.match(text, /Not After : Jun {2}2 12:00:00 2031 GMT/);
    assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature\n/);
    assert.match(text, /X509v3 Extended Key Usage: ?\s+TLS Web Client Authentication\n/);
    assert.match(
      text,
      new RegExp(
        `X509v3 Subject Alternative Name: ?\\s+URI:urn:heptad:device:${device.id}, URI:urn:heptad:tenant:tenant-a\\n`,
      ),
    );
    assert.match(text, /X509v3 Authority Key Identifier: ?\s+[0-9A-F:]{59}/);
    assert.match(text, /X509v3 Subject Key Identifier: ?\s+[0-9A-F:]{59}/);
    assert.match(text, /ASN1 OID: prime256v1/);
  });

  test('node:crypto reads subject, SAN, EKU, CA flag and the exact validity', () => {
    assert.equal(leaf.subject, `CN=${device.id}`);
    assert.equal(leaf.subjectAltName, `URI:urn:heptad:device:${device.id}, URI:urn:heptad:tenant:${TENANT}`);
    assert.deepEqual(leaf.keyUsage, [CLIENT_AUTH]);
    assert.equal(leaf.ca, false);
    assert.equal(leaf.validFromDate.getTime(), request.notBefore.getTime());
    assert.equal(leaf.validToDate.getTime(), request.notAfter.getTime());
    assert.equal(leaf.serialNumber.toLowerCase(), Buffer.from(request.serial).toString('hex'));
  });

  test('@peculiar/x509 reads every extension back as the profile says', () => {
    const c = new x509.X509Certificate(leafDer);
    const bc = c.getExtension(x509.BasicConstraintsExtension);
    assert.equal(bc?.ca, false);
    assert.equal(bc?.critical, true);
    const ku = c.getExtension(x509.KeyUsagesExtension);
    assert.equal(ku?.usages, x509.KeyUsageFlags.digitalSignature);
    assert.equal(ku?.critical, true);
    const eku = c.getExtension(x509.ExtendedKeyUsageExtension);
    assert.deepEqual([...(eku?.usages ?? [])], [CLIENT_AUTH]);
    assert.equal(eku?.critical, false);
    const san = c.getExtension(x509.SubjectAlternativeNameExtension);
    assert.deepEqual(
      san?.names.toJSON().map((n) => [n.type, n.value]),
      [
        ['url', `urn:heptad:device:${device.id}`],
        ['url', `urn:heptad:tenant:${TENANT}`],
      ],
    );
    assert.equal(san?.critical, false);
    const issuingSki = new x509.X509Certificate(issuing.certDer).getExtension(
      x509.SubjectKeyIdentifierExtension,
    )?.keyId;
    assert.equal(c.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, issuingSki);
    assert.equal(
      c.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
      createHash('sha1').update(device.spki.subarray(26)).digest('hex'),
      'RFC 5280 §4.2.1.2 method 1',
    );
    assert.equal(c.extensions.length, 6);
  });

  test('the TBSCertificate is octet for octet what @peculiar/x509 writes for the same inputs', async () => {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
    const reference = await x509.X509CertificateGenerator.create({
      serialNumber: Buffer.from(request.serial).toString('hex'),
      subject: new x509.Name(derCommonNameOnly(device.id)),
      issuer: new x509.Name(issuer.issuerSubjectDer),
      notBefore: request.notBefore,
      notAfter: request.notAfter,
      publicKey: await x509.PublicKey.create(device.spki),
      signingKey: keyOf(issuing).toCryptoKey(alg, false, ['sign']),
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([
          { type: 'url', value: `urn:heptad:device:${device.id}` },
          { type: 'url', value: `urn:heptad:tenant:${TENANT}` },
        ]),
        new x509.AuthorityKeyIdentifierExtension(issuer.issuerKeyIdentifier.toString('hex')),
        new x509.SubjectKeyIdentifierExtension(
          createHash('sha1').update(device.spki.subarray(26)).digest('hex'),
        ),
      ],
    });
    assert.deepEqual(
      readCertificateParts(leafDer).tbs,
      readCertificateParts(Buffer.from(reference.rawData)).tbs,
    );
  });

  test('parseDeviceCertificate returns the device, the tenant and the patched fields', () => {
    const info = parseDeviceCertificate(leafDer);
    assert.equal(info.deviceId, device.id);
    assert.equal(info.tenantId, TENANT);
    assert.equal(info.serialHex, Buffer.from(request.serial).toString('hex'));
    assert.equal(info.notBefore.getTime(), request.notBefore.getTime());
    assert.equal(info.notAfter.getTime(), request.notAfter.getTime());
    assert.deepEqual(info.publicKeySpkiDer, device.spki);
    assert.deepEqual(info.issuerDer, issuer.issuerSubjectDer);
  });

  test('parseDeviceCertificate refuses certificates outside the profile and non-certificates', async () => {
    const ca = await createCertificateAuthority({ commonName: 'platform', now: NOW, validityDays: 10 });
    const server = await issueServerCertificate({ ca, hosts: ['localhost'], now: NOW, validityDays: 1 });
    for (const [label, der] of [
      ['a TLS server certificate', Buffer.from(new X509Certificate(server.certPem).raw)],
      ['the issuing CA', issuing.certDer],
      ['the root CA', root.certDer],
    ] as const) {
      assertRefused(() => parseDeviceCertificate(der), 'PKI_CERT_PROFILE_MISMATCH', [], label);
    }
    for (const [label, der] of [
      ['truncated', leafDer.subarray(0, -1)],
      ['trailing byte', Buffer.concat([leafDer, Buffer.from([0])])],
      ['garbage', Buffer.from('garbage')],
      ['not bytes', 'pem' as unknown as Uint8Array],
    ] as const) {
      assertRefused(() => parseDeviceCertificate(der), 'PKI_CERT_MALFORMED', [], label);
    }
  });
});

describe('the template', () => {
  /** Offsets (in the TBS) where two TBSCertificates differ. */
  function differences(a: Buffer, b: Buffer): number[] {
    const ta = readCertificateParts(a).tbs;
    const tb = readCertificateParts(b).tbs;
    assert.equal(ta.length, tb.length, 'same TBS length');
    const out: number[] = [];
    for (let i = 0; i < ta.length; i++) if (ta[i] !== tb[i]) out.push(i);
    return out;
  }
  const inside = (fields: readonly PatchedField[]) => (i: number) =>
    fields.some((f) => i >= f.offset && i < f.offset + f.length);

  const L = issuer.layout;
  const other = newDevice();
  const variations: Array<[string, Partial<DeviceCertificateRequest>, PatchedField[]]> = [
    ['serial', { serial: createSerialNumber() }, [L.serial]],
    ['notBefore', { notBefore: new Date(request.notBefore.getTime() - 1000) }, [L.notBefore]],
    ['notAfter', { notAfter: new Date(request.notAfter.getTime() + 3_600_000) }, [L.notAfter]],
    ['deviceId', { deviceId: other.id }, [L.commonName, L.deviceUri]],
    ['public key', { publicKeySpkiDer: other.spki }, [L.publicKey, L.subjectKeyIdentifier]],
  ];
  for (const [name, change, fields] of variations) {
    test(`a different ${name} changes bytes only inside ${fields.length === 1 ? 'its field' : 'its fields'}`, () => {
      const diff = differences(leafDer, issuer.issue({ ...request, ...change }));
      assert.ok(diff.length > 0);
      assert.deepEqual(
        diff.filter((i) => !inside(fields)(i)),
        [],
      );
      for (const f of fields)
        assert.ok(
          diff.some((i) => inside([f])(i)),
          `field at ${f.offset} changed`,
        );
    });
  }

  test('certificates with every input different differ only inside the patched fields', () => {
    const diff = differences(leafDer, issuer.issue(requestFor(other, new Date(NOW.getTime() + 7 * HOUR_MS))));
    assert.deepEqual(
      diff.filter((i) => !inside(Object.values(L).filter((v) => typeof v === 'object'))(i)),
      [],
    );
  });

  test('the same inputs give the same TBSCertificate (only the ECDSA signature differs)', () => {
    assert.deepEqual(differences(leafDer, issuer.issue(request)), []);
  });

  test('the layout points at the fields it names', () => {
    const tbs = readCertificateParts(leafDer).tbs;
    const slice = (f: PatchedField) => tbs.subarray(f.offset, f.offset + f.length);
    assert.equal(L.tbsLength, tbs.length);
    assert.deepEqual(slice(L.serial), Buffer.from(request.serial));
    assert.equal(slice(L.notBefore).toString('latin1'), '310601115500Z');
    assert.equal(slice(L.notAfter).toString('latin1'), '310602120000Z');
    assert.equal(slice(L.commonName).toString('latin1'), device.id);
    assert.equal(slice(L.deviceUri).toString('latin1'), device.id);
    assert.deepEqual(slice(L.publicKey), device.spki);
    assert.deepEqual(
      slice(L.subjectKeyIdentifier),
      createHash('sha1').update(device.spki.subarray(26)).digest(),
    );
  });

  test('issue works detached from the issuer object', () => {
    const { issue } = issuer;
    assert.equal(new X509Certificate(issue(request)).verify(issuingCert.publicKey), true);
  });

  test('milliseconds are dropped from the validity (RFC 5280 §4.1.2.5: whole seconds)', () => {
    const c = new X509Certificate(
      issuer.issue({
        ...request,
        notBefore: new Date('2031-06-01T11:55:00.999Z'),
        notAfter: new Date('2031-06-02T12:00:00.500Z'),
      }),
    );
    assert.equal(c.validFromDate.toISOString(), '2031-06-01T11:55:00.000Z');
    assert.equal(c.validToDate.toISOString(), '2031-06-02T12:00:00.000Z');
  });

  test('dates from 2050 are GeneralizedTime (RFC 5280 §4.1.2.5) and still verify', () => {
    for (const [nb, na, texts] of [
      ['2049-12-31T23:00:00Z', '2049-12-31T23:59:59Z', ['491231230000Z', '491231235959Z']],
      ['2049-12-31T23:00:00Z', '2050-01-01T00:00:00Z', ['491231230000Z', '20500101000000Z']],
      ['2050-06-01T00:00:00Z', '2050-06-02T00:00:00Z', ['20500601000000Z', '20500602000000Z']],
    ] as const) {
      const der = issuer.issue({ ...request, notBefore: new Date(nb), notAfter: new Date(na) });
      const c = new X509Certificate(der);
      assert.equal(c.verify(issuingCert.publicKey), true);
      assert.equal(c.validFromDate.toISOString(), new Date(nb).toISOString());
      assert.equal(c.validToDate.toISOString(), new Date(na).toISOString());
      for (const t of texts) assert.ok(der.includes(Buffer.from(t)), `${t} in ${nb}…${na}`);
      const r = openssl(
        [
          'verify',
          '-attime',
          at(new Date(nb)),
          '-CAfile',
          'root.pem',
          '-untrusted',
          'issuing.pem',
          'late.pem',
        ],
        {
          'late.pem': toPem(der, 'CERTIFICATE'),
        },
      );
      assert.equal(r.status, 0, r.out);
      assert.equal(parseDeviceCertificate(der).notAfter.toISOString(), new Date(na).toISOString());
    }
  });
});

describe('refusals', () => {
  test('refuses bad request fields with PKI_ISSUE_INPUT_INVALID, one field at a time', () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({
      format: 'der',
      type: 'spki',
    });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      format: 'der',
      type: 'spki',
    });
    const compressed = Buffer.concat([
      Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'),
      Buffer.from([0x02]),
      device.spki.subarray(27, 59),
    ]);
    const serialWith = (first: number) => Buffer.concat([Buffer.from([first]), Buffer.alloc(15, 1)]);
    const cases: Array<[string, Partial<DeviceCertificateRequest>, string]> = [
      ['uppercase device id', { deviceId: device.id.toUpperCase() }, 'deviceId'],
      ['63-character device id', { deviceId: device.id.slice(1) }, 'deviceId'],
      ['non-hex device id', { deviceId: `${device.id.slice(1)}g` }, 'deviceId'],
      ['P-384 key', { publicKeySpkiDer: p384 }, 'publicKeySpkiDer'],
      ['RSA key', { publicKeySpkiDer: rsa }, 'publicKeySpkiDer'],
      ['compressed P-256 key', { publicKeySpkiDer: compressed }, 'publicKeySpkiDer'],
      [
        'SPKI with a trailing octet',
        { publicKeySpkiDer: Buffer.concat([device.spki, Buffer.from([0])]) },
        'publicKeySpkiDer',
      ],
      ['15-octet serial', { serial: Buffer.alloc(15, 1) }, 'serial'],
      ['17-octet serial', { serial: Buffer.alloc(17, 1) }, 'serial'],
      ['serial with the top bit set (negative)', { serial: serialWith(0x80) }, 'serial'],
      ['serial with a leading zero octet (non-minimal DER)', { serial: serialWith(0x00) }, 'serial'],
      ['invalid notBefore', { notBefore: new Date(Number.NaN) }, 'notBefore'],
      ['notBefore a string', { notBefore: '2031-01-01' as unknown as Date }, 'notBefore'],
      ['notAfter equal to notBefore', { notAfter: request.notBefore }, 'notAfter'],
      ['notAfter before notBefore', { notAfter: new Date(request.notBefore.getTime() - 1000) }, 'notAfter'],
      [
        'notAfter after the issuing CA expires',
        { notAfter: new Date(issuingCert.validToDate.getTime() + 1000) },
        'notAfter',
      ],
      ['notAfter in year 10000', { notAfter: new Date('+010000-01-01T00:00:00Z') }, 'notAfter'],
    ];
    for (const [label, change, field] of cases) {
      assertRefused(() => issuer.issue({ ...request, ...change }), 'PKI_ISSUE_INPUT_INVALID', [field], label);
    }
  });

  test('lists every bad field at once', () => {
    assertRefused(
      () =>
        issuer.issue({
          deviceId: 'x',
          publicKeySpkiDer: Buffer.alloc(3),
          serial: Buffer.alloc(1),
          notBefore: new Date(Number.NaN),
          notAfter: new Date(Number.NaN),
        }),
      'PKI_ISSUE_INPUT_INVALID',
      ['deviceId', 'publicKeySpkiDer', 'serial', 'notBefore', 'notAfter'],
      'all bad',
    );
  });

  test('refuses an issuer that cannot issue device certificates with PKI_ISSUER_INVALID', async () => {
    const leafKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const rsaKey = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    const good = { issuerCertDer: issuing.certDer, issuerKey: keyOf(issuing), tenantId: TENANT };
    const cases: Array<[string, Parameters<typeof createDeviceCertificateIssuer>[0], string[]]> = [
      ['tenant of another CA', { ...good, tenantId: 'tenant-b' }, ['tenantId']],
      ['tenant id with a space', { ...good, tenantId: 'a b' }, ['tenantId']],
      ['key of another CA', { ...good, issuerKey: keyOf(otherIssuing) }, ['issuerKey']],
      ['RSA key', { ...good, issuerKey: rsaKey }, ['issuerKey']],
      ['public key', { ...good, issuerKey: issuingCert.publicKey }, ['issuerKey']],
      [
        'a device certificate as issuer (not a CA, no keyCertSign, not its key)',
        { ...good, issuerCertDer: leafDer, issuerKey: leafKey },
        ['issuerCertDer', 'issuerCertDer', 'issuerKey'],
      ],
      ['garbage certificate', { ...good, issuerCertDer: Buffer.from('garbage') }, ['issuerCertDer']],
      ['truncated certificate', { ...good, issuerCertDer: issuing.certDer.subarray(1) }, ['issuerCertDer']],
    ];
    for (const [label, options, fields] of cases) {
      assertRefused(() => createDeviceCertificateIssuer(options), 'PKI_ISSUER_INVALID', fields, label);
    }
  });

  test('the empty SEQUENCE is how CA:FALSE is written (DER omits the DEFAULT, X.690 §11.5)', () => {
    const bc = readCertificateParts(leafDer).extensions.get('2.5.29.19');
    assert.deepEqual(bc?.value, derSequence());
    assert.equal(bc?.critical, true);
  });
});
