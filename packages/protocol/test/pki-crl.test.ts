// CRLs of an issuing CA: they list exactly the given serials, verify against the issuing CA with
// `openssl crl -verify` and @peculiar/x509, carry the mandatory AKI and CRL number, make
// `openssl verify -crl_check` refuse a revoked device certificate and accept the others, and
// bad options are refused with every bad field listed.

import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as x509 from '@peculiar/x509';
import { HeptadError } from '../src/errors.ts';
import { type CreateCrlOptions, createCrl } from '../src/pki/crl.ts';
import { readDer } from '../src/pki/der.ts';
import { createDeviceCertificateIssuer } from '../src/pki/device-cert-issuer.ts';
import { fromPem, toPem } from '../src/pki/pem.ts';
import { createSerialNumber } from '../src/pki/profile.ts';
import { createTenantIssuingCa, createTenantRootCa } from '../src/pki/tenant-ca.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const NOW = new Date('2031-06-01T12:00:00.000Z');
const DAY_MS = 86_400_000;
const workDir = mkdtempSync(join(tmpdir(), 'heptad-pki-crl-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

const root = await createTenantRootCa({ tenantId: 'tenant-a', now: NOW, validityDays: 3650 });
const issuing = await createTenantIssuingCa({ root, now: NOW, validityDays: 365, generation: 1 });
const otherIssuing = await createTenantIssuingCa({ root, now: NOW, validityDays: 365, generation: 2 });
const issuer = createDeviceCertificateIssuer({
  issuerCertDer: issuing.certDer,
  issuerKey: createPrivateKey({ key: issuing.keyPkcs8, format: 'der', type: 'pkcs8' }),
  tenantId: 'tenant-a',
});

function deviceCert(): { der: Buffer; serialHex: string } {
  const spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    format: 'der',
    type: 'spki',
  });
  const serial = createSerialNumber();
  const der = issuer.issue({
    deviceId: 'd'.repeat(64),
    publicKeySpkiDer: spki,
    serial,
    notBefore: new Date(NOW.getTime() - 300_000),
    notAfter: new Date(NOW.getTime() + DAY_MS),
  });
  return { der, serialHex: serial.toString('hex') };
}

function openssl(
  args: readonly string[],
  files: Record<string, string> = {},
): { status: number | null; out: string } {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(workDir, name), text);
  const r = spawnSync('openssl', args, { cwd: workDir, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const revokedCert = deviceCert();
const goodCert = deviceCert();
const base: CreateCrlOptions = {
  issuerCertPem: issuing.certPem,
  issuerKeyPkcs8: issuing.keyPkcs8,
  entries: [
    { serialHex: revokedCert.serialHex, revokedAt: new Date(NOW.getTime() - 3_600_000) },
    { serialHex: '00ff01', revokedAt: new Date(NOW.getTime() - 60_000) },
  ],
  thisUpdate: NOW,
  nextUpdate: new Date(NOW.getTime() + DAY_MS),
  crlNumber: 42,
};
const crl = createCrl(base);

describe('createCrl', () => {
  test('verifies against the issuing CA with openssl crl -verify, and lists the given serials', () => {
    const r = openssl(['crl', '-in', 'crl.pem', '-CAfile', 'issuing.pem', '-noout', '-text', '-verify'], {
      'crl.pem': crl.pem,
      'issuing.pem': issuing.certPem,
    });
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /verify OK/);
    assert.match(r.out, /Version 2 \(0x1\)/);
    assert.match(r.out, /Issuer: O ?= ?tenant-a, CN ?= ?Heptad Tenant Issuing CA 1/);
    assert.match(r.out, /X509v3 CRL Number: ?\s+42/);
    assert.match(r.out, /X509v3 Authority Key Identifier/);
    assert.match(
      r.out,
      new RegExp(
        `Serial Number: ${revokedCert.serialHex.toUpperCase()}\\s+Revocation Date: Jun {2}1 11:00:00 2031 GMT`,
      ),
    );
    assert.match(r.out, /Serial Number: FF01\s+Revocation Date: Jun {2}1 11:59:00 2031 GMT/);
    assert.match(r.out, /Last Update: Jun {2}1 12:00:00 2031 GMT/);
    assert.match(r.out, /Next Update: Jun {2}2 12:00:00 2031 GMT/);
  });

  test('does not verify against another issuing CA of the same tenant', () => {
    const r = openssl(['crl', '-in', 'crl.pem', '-CAfile', 'other.pem', '-noout', '-verify'], {
      'other.pem': otherIssuing.certPem,
    });
    assert.doesNotMatch(r.out, /verify OK/);
  });

  test('@peculiar/x509 verifies it and reads the entries, AKI and CRL number', async () => {
    const parsed = new x509.X509Crl(crl.der);
    const issuingCert = new x509.X509Certificate(issuing.certDer);
    assert.equal(await parsed.verify({ publicKey: issuingCert.publicKey }), true);
    assert.deepEqual(
      parsed.entries.map((e) => e.serialNumber.toLowerCase()),
      [revokedCert.serialHex, 'ff01'],
    );
    assert.ok(parsed.findRevoked(revokedCert.serialHex));
    assert.equal(parsed.findRevoked(goodCert.serialHex), null);
    assert.equal(parsed.thisUpdate.getTime(), NOW.getTime());
    assert.equal(parsed.nextUpdate?.getTime(), NOW.getTime() + DAY_MS);
    const aki = parsed.getExtension(x509.AuthorityKeyIdentifierExtension);
    assert.equal(aki?.keyId, issuingCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    const crlNumber = parsed.getExtension('2.5.29.20');
    assert.deepEqual(Buffer.from(crlNumber?.value ?? new ArrayBuffer(0)), Buffer.from([0x02, 0x01, 42]));
  });

  test('makes openssl verify -crl_check refuse the revoked certificate and accept the other', () => {
    const files = {
      'chain.pem': root.certPem + issuing.certPem,
      'crl.pem': crl.pem,
      'revoked.pem': toPem(revokedCert.der, 'CERTIFICATE'),
      'good.pem': toPem(goodCert.der, 'CERTIFICATE'),
    };
    const args = (leaf: string) => [
      'verify',
      '-attime',
      String(NOW.getTime() / 1000 + 60),
      '-crl_check',
      '-CAfile',
      'chain.pem',
      '-CRLfile',
      'crl.pem',
      leaf,
    ];
    const revoked = openssl(args('revoked.pem'), files);
    assert.notEqual(revoked.status, 0);
    assert.match(revoked.out, /certificate revoked/);
    const good = openssl(args('good.pem'));
    assert.equal(good.status, 0, good.out);
  });

  test('leaves out the revoked list when nothing is revoked (RFC 5280 §5.1.2.6), and PEM matches DER', () => {
    const empty = createCrl({ ...base, entries: [] });
    assert.deepEqual(fromPem(empty.pem, 'X509 CRL'), empty.der);
    readDer(empty.der);
    const r = openssl(['crl', '-in', 'empty.pem', '-CAfile', 'issuing.pem', '-noout', '-text', '-verify'], {
      'empty.pem': empty.pem,
    });
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /No Revoked Certificates/);
  });

  test('takes a bigint CRL number and a nextUpdate after 2049 (GeneralizedTime)', () => {
    const later = createCrl({
      ...base,
      crlNumber: 2n ** 159n - 1n,
      nextUpdate: new Date('2051-01-01T00:00:00Z'),
    });
    assert.ok(later.der.includes(Buffer.from('20510101000000Z')));
    const r = openssl(['crl', '-in', 'later.pem', '-CAfile', 'issuing.pem', '-noout', '-verify'], {
      'later.pem': later.pem,
    });
    assert.match(r.out, /verify OK/);
    assert.equal(new X509Certificate(issuing.certDer).ca, true);
  });

  test('refuses bad options with PKI_CRL_OPTIONS_INVALID, listing every bad field', () => {
    const cases: Array<[string, Partial<CreateCrlOptions>, string[]]> = [
      ['serial not hex', { entries: [{ serialHex: 'xyz', revokedAt: NOW }] }, ['entries/0/serialHex']],
      ['serial zero', { entries: [{ serialHex: '00', revokedAt: NOW }] }, ['entries/0/serialHex']],
      [
        'serial of 21 octets',
        { entries: [{ serialHex: 'ff'.repeat(21), revokedAt: NOW }] },
        ['entries/0/serialHex'],
      ],
      [
        'serial listed twice (leading zeros aside)',
        {
          entries: [
            { serialHex: '0abc', revokedAt: NOW },
            { serialHex: 'ABC', revokedAt: NOW },
          ],
        },
        ['entries/1/serialHex'],
      ],
      [
        'revokedAt invalid',
        { entries: [{ serialHex: '01', revokedAt: new Date(Number.NaN) }] },
        ['entries/0/revokedAt'],
      ],
      ['nextUpdate not after thisUpdate', { nextUpdate: NOW }, ['nextUpdate']],
      ['thisUpdate invalid', { thisUpdate: new Date(Number.NaN) }, ['thisUpdate']],
      ['negative CRL number', { crlNumber: -1 }, ['crlNumber']],
      ['fractional CRL number', { crlNumber: 1.5 }, ['crlNumber']],
      ['CRL number of 21 octets', { crlNumber: 2n ** 160n }, ['crlNumber']],
      ['key of another CA', { issuerKeyPkcs8: otherIssuing.keyPkcs8 }, ['issuerKeyPkcs8']],
      ['key not PKCS#8', { issuerKeyPkcs8: Buffer.from('x') }, ['issuerKeyPkcs8']],
      ['issuer not PEM', { issuerCertPem: 'nope' }, ['issuerCertPem']],
      [
        'issuer is a device certificate',
        { issuerCertPem: toPem(goodCert.der, 'CERTIFICATE') },
        ['issuerCertPem'],
      ],
      ['entries not an array', { entries: 'x' as unknown as [] }, ['entries']],
    ];
    for (const [label, change, fields] of cases) {
      assert.throws(
        () => createCrl({ ...base, ...change }),
        (e: unknown) => {
          assert.ok(e instanceof HeptadError, label);
          assert.equal(e.code, 'PKI_CRL_OPTIONS_INVALID', label);
          assert.deepEqual(
            e.fields.map((f) => f.field),
            fields,
            label,
          );
          return true;
        },
      );
    }
  });
});
