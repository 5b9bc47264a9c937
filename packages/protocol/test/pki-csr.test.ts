// PKCS#10 requests: what createCsr writes is read back by parseCsr and accepted by OpenSSL, what
// OpenSSL writes is read by parseCsr, and every kind of bad request is refused with its own code
// (structure, size, algorithm, key, subject, signature). Bad requests are built here from a good
// one (tampering, re-signing, re-encoding) and by OpenSSL itself (RSA, P-384, compressed point).
// Property runs: arbitrary bytes, and random corruptions of a valid CSR, are parsed or refused
// with a HeptadError, never anything else.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { HeptadError } from '../src/errors.ts';
import { createCsr, MAX_CSR_DER_LENGTH, parseCsr, verifyCsr } from '../src/pki/csr.ts';
import {
  derBitString,
  derExplicit,
  derInteger,
  derNull,
  derOctetString,
  derOid,
  derSequence,
  derSet,
  derTlv,
  derUtf8String,
  TAG,
} from '../src/pki/der.ts';
import { derCommonNameOnly, derName } from '../src/pki/name.ts';
import { ECDSA_WITH_SHA256_DER } from '../src/pki/p256.ts';

const workDir = mkdtempSync(join(tmpdir(), 'heptad-pki-csr-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

function openssl(args: readonly string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { cwd: workDir, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function p256(): { privateKey: KeyObject; publicKey: KeyObject; spki: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicKey, spki: publicKey.export({ format: 'der', type: 'spki' }) };
}

const device = p256();
const deviceId = createHash('sha256').update(device.spki).digest('hex');
const good = createCsr({ privateKey: device.privateKey, subjectCommonName: deviceId });

interface CsrParts {
  readonly version?: Buffer;
  readonly subject?: Buffer;
  readonly spki?: Buffer;
  readonly attributes?: Buffer;
  readonly algorithm?: Buffer;
  /** Signs the CertificationRequestInfo; default: the device key. */
  readonly signer?: (cri: Buffer) => Buffer;
}

/** A CSR assembled from parts, each defaulting to what createCsr writes. */
function buildCsr(parts: CsrParts = {}): Buffer {
  const cri = derSequence(
    parts.version ?? derInteger(0),
    parts.subject ?? derCommonNameOnly(deviceId),
    parts.spki ?? device.spki,
    parts.attributes ?? Buffer.from([0xa0, 0x00]),
  );
  const signature = (parts.signer ?? ((d) => sign('sha256', d, device.privateKey)))(cri);
  return derSequence(cri, parts.algorithm ?? ECDSA_WITH_SHA256_DER, derBitString(signature));
}

function assertRefused(fn: () => unknown, code: string, label: string): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof HeptadError, `${label}: not a HeptadError: ${String(e)}`);
      assert.equal(e.code, code, label);
      return true;
    },
    label,
  );
}

/** A CSR made by OpenSSL for a key it generates with `genArgs`. */
function opensslCsr(
  name: string,
  genArgs: readonly string[],
  subject = `/CN=${deviceId}`,
  compressed = false,
): Buffer {
  let key = join(workDir, `${name}.key`);
  const out = join(workDir, `${name}.csr`);
  const gen = openssl([...genArgs, '-out', key]);
  assert.equal(gen.status, 0, gen.out);
  if (compressed) {
    const conv = openssl(['ec', '-in', key, '-conv_form', 'compressed', '-out', `${key}.c`]);
    assert.equal(conv.status, 0, conv.out);
    key = `${key}.c`;
  }
  const req = openssl([
    'req',
    '-new',
    '-key',
    key,
    '-subj',
    subject,
    '-sha256',
    '-outform',
    'DER',
    '-out',
    out,
  ]);
  assert.equal(req.status, 0, req.out);
  return readFileSync(out);
}

describe('createCsr and parseCsr', () => {
  test('round-trips the subject, key and signed bytes; verifyCsr accepts and returns the same', () => {
    const parsed = verifyCsr(good);
    assert.equal(parsed.subjectCommonName, deviceId);
    assert.deepEqual(parsed.spkiDer, device.spki);
    assert.equal(parsed.spkiDer.length, 91);
    assert.equal(parsed.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.deepEqual(parsed.publicKey.export({ format: 'jwk' }), device.publicKey.export({ format: 'jwk' }));
    assert.deepEqual(parseCsr(good).certificationRequestInfo, parsed.certificationRequestInfo);
    assert.ok(good.length < 300, `a Heptad CSR is small (${good.length} octets)`);
  });

  test('is accepted by OpenSSL (openssl req -verify) with the subject CN', () => {
    writeFileSync(join(workDir, 'good.der'), good);
    const r = openssl(['req', '-inform', 'DER', '-in', 'good.der', '-noout', '-verify', '-subject']);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /verify OK/i);
    assert.match(r.out, new RegExp(`CN ?= ?${deviceId}`));
  });

  test('reads and verifies a P-256 CSR made by OpenSSL, with a multi-attribute subject', () => {
    const csr = opensslCsr(
      'p256',
      ['ecparam', '-name', 'prime256v1', '-genkey', '-noout'],
      `/O=Acme/CN=${deviceId}`,
    );
    const parsed = verifyCsr(csr);
    assert.equal(parsed.subjectCommonName, deviceId);
  });

  test('gives undefined for a subject without a commonName, and accepts a PrintableString CN', () => {
    assert.equal(verifyCsr(buildCsr({ subject: derSequence() })).subjectCommonName, undefined);
    const printable = derSequence(
      derSet(derSequence(derOid('2.5.4.3'), derTlv(TAG.PRINTABLE_STRING, Buffer.from('dev 1')))),
    );
    assert.equal(verifyCsr(buildCsr({ subject: printable })).subjectCommonName, 'dev 1');
  });

  test('ignores attributes such as extensionRequest, checking only their shape', () => {
    const extensionRequest = derSequence(
      derOid('1.2.840.113549.1.9.14'),
      derSet(derSequence(derSequence(derOid('2.5.29.19'), derOctetString(derSequence())))),
    );
    assert.equal(
      verifyCsr(buildCsr({ attributes: derExplicit(0, extensionRequest) })).subjectCommonName,
      deviceId,
    );
  });
});

describe('createCsr refusals', () => {
  test('refuses keys other than EC P-256 private keys', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    for (const [label, key] of [
      ['rsa', rsa],
      ['p-384', p384],
      ['public key', device.publicKey],
      ['not a key', 'pem' as unknown as KeyObject],
    ] as const) {
      assertRefused(
        () => createCsr({ privateKey: key, subjectCommonName: 'x' }),
        'PKI_CSR_KEY_UNSUPPORTED',
        label,
      );
    }
  });

  test('refuses an empty, too long or control-character common name', () => {
    for (const cn of ['', 'x'.repeat(65), 'a\0b', 'line\nbreak', '\ud800', 5 as unknown as string]) {
      assertRefused(
        () => createCsr({ privateKey: device.privateKey, subjectCommonName: cn }),
        'PKI_CSR_SUBJECT_INVALID',
        JSON.stringify(cn),
      );
    }
    assert.ok(
      createCsr({ privateKey: device.privateKey, subjectCommonName: 'é'.repeat(64) }),
      '64 characters pass',
    );
  });
});

describe('parseCsr and verifyCsr refusals', () => {
  const other = p256();
  const cnOffset = good.indexOf(Buffer.from(deviceId));
  const tamperedCri = Buffer.from(good);
  tamperedCri[cnOffset] = tamperedCri[cnOffset] === 0x61 ? 0x62 : 0x61;
  const uncompressed = device.spki.subarray(26);
  const y = uncompressed.subarray(33);
  const compressedSpki = derSequence(
    derSequence(derOid('1.2.840.10045.2.1'), derOid('1.2.840.10045.3.1.7')),
    derBitString(Buffer.concat([Buffer.from([0x02 | ((y.at(-1) ?? 0) & 1)]), uncompressed.subarray(1, 33)])),
  );
  const offCurve = Buffer.from(device.spki);
  offCurve[90] = (offCurve[90] ?? 0) ^ 0x01;
  const withSignature = (signature: Buffer) =>
    derSequence(parseCsr(good).certificationRequestInfo, ECDSA_WITH_SHA256_DER, derBitString(signature));
  let deep: Buffer = derNull();
  for (let i = 0; i < 40; i++) deep = derSequence(deep);
  const huge = buildCsr({
    attributes: derExplicit(0, derSequence(derOid('1.2.3.4'), derSet(derOctetString(Buffer.alloc(5000))))),
  });

  const cases: Array<[name: string, csr: () => Uint8Array, code: string]> = [
    // structure
    ['PKI_CSR_MALFORMED/empty', () => Buffer.alloc(0), 'PKI_CSR_MALFORMED'],
    ['PKI_CSR_MALFORMED/garbage', () => Buffer.from('not a certificate request at all'), 'PKI_CSR_MALFORMED'],
    [
      'PKI_CSR_MALFORMED/PEM text instead of DER',
      () => Buffer.from(`-----BEGIN CERTIFICATE REQUEST-----\n`),
      'PKI_CSR_MALFORMED',
    ],
    ['PKI_CSR_MALFORMED/truncated by one octet', () => good.subarray(0, -1), 'PKI_CSR_MALFORMED'],
    ['PKI_CSR_MALFORMED/trailing octet', () => Buffer.concat([good, Buffer.from([0])]), 'PKI_CSR_MALFORMED'],
    [
      'PKI_CSR_MALFORMED/outer length overflow (4-octet length past the end)',
      () => Buffer.concat([Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xf0]), good.subarray(3)]),
      'PKI_CSR_MALFORMED',
    ],
    [
      'PKI_CSR_MALFORMED/indefinite outer length',
      () => Buffer.concat([Buffer.from([0x30, 0x80]), good.subarray(3), Buffer.from([0, 0])]),
      'PKI_CSR_MALFORMED',
    ],
    [
      'PKI_CSR_MALFORMED/non-minimal outer length',
      () => Buffer.concat([Buffer.from([0x30, 0x83, 0x00]), good.subarray(2)]),
      'PKI_CSR_MALFORMED',
    ],
    ['PKI_CSR_MALFORMED/version 2', () => buildCsr({ version: derInteger(1) }), 'PKI_CSR_MALFORMED'],
    [
      'PKI_CSR_MALFORMED/attributes missing (RFC 2986 makes them mandatory)',
      () => {
        const cri = derSequence(derInteger(0), derCommonNameOnly(deviceId), device.spki);
        return derSequence(cri, ECDSA_WITH_SHA256_DER, derBitString(sign('sha256', cri, device.privateKey)));
      },
      'PKI_CSR_MALFORMED',
    ],
    [
      'PKI_CSR_MALFORMED/signature as OCTET STRING (wrong tag)',
      () =>
        derSequence(
          parseCsr(good).certificationRequestInfo,
          ECDSA_WITH_SHA256_DER,
          derOctetString(Buffer.alloc(70)),
        ),
      'PKI_CSR_MALFORMED',
    ],
    ['PKI_CSR_MALFORMED/subject not a SEQUENCE', () => buildCsr({ subject: derSet() }), 'PKI_CSR_MALFORMED'],
    ['PKI_CSR_MALFORMED/empty RDN', () => buildCsr({ subject: derSequence(derSet()) }), 'PKI_CSR_MALFORMED'],
    [
      'PKI_CSR_MALFORMED/attribute without values',
      () => buildCsr({ attributes: derExplicit(0, derSequence(derOid('1.2.3'), derSet())) }),
      'PKI_CSR_MALFORMED',
    ],
    [
      'PKI_CSR_MALFORMED/nesting 40 deep in an attribute',
      () => buildCsr({ attributes: derExplicit(0, derSequence(derOid('1.2.3'), derSet(deep))) }),
      'PKI_CSR_MALFORMED',
    ],
    ['PKI_CSR_TOO_LARGE/oversized but well-formed', () => huge, 'PKI_CSR_TOO_LARGE'],
    [
      'PKI_CSR_TOO_LARGE/oversized garbage',
      () => Buffer.alloc(MAX_CSR_DER_LENGTH + 1, 0x30),
      'PKI_CSR_TOO_LARGE',
    ],
    // key
    [
      'PKI_CSR_KEY_UNSUPPORTED/RSA (OpenSSL)',
      () => opensslCsr('rsa', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']),
      'PKI_CSR_KEY_UNSUPPORTED',
    ],
    [
      'PKI_CSR_KEY_UNSUPPORTED/P-384 (OpenSSL)',
      () => opensslCsr('p384', ['ecparam', '-name', 'secp384r1', '-genkey', '-noout']),
      'PKI_CSR_KEY_UNSUPPORTED',
    ],
    [
      'PKI_CSR_KEY_UNSUPPORTED/compressed P-256 point (OpenSSL)',
      () =>
        opensslCsr(
          'compressed',
          ['ecparam', '-name', 'prime256v1', '-genkey', '-noout'],
          `/CN=${deviceId}`,
          true,
        ),
      'PKI_CSR_KEY_UNSUPPORTED',
    ],
    [
      'PKI_CSR_KEY_UNSUPPORTED/compressed P-256 point',
      () => buildCsr({ spki: compressedSpki }),
      'PKI_CSR_KEY_UNSUPPORTED',
    ],
    [
      'PKI_CSR_KEY_UNSUPPORTED/point not on the curve',
      () => buildCsr({ spki: offCurve }),
      'PKI_CSR_KEY_UNSUPPORTED',
    ],
    // algorithm
    [
      'PKI_CSR_ALGORITHM_UNSUPPORTED/ecdsa-with-SHA384 OID',
      () => buildCsr({ algorithm: derSequence(derOid('1.2.840.10045.4.3.3')) }),
      'PKI_CSR_ALGORITHM_UNSUPPORTED',
    ],
    [
      'PKI_CSR_ALGORITHM_UNSUPPORTED/ecdsa-with-SHA256 with NULL parameters (RFC 5758 §3.2)',
      () => buildCsr({ algorithm: derSequence(derOid('1.2.840.10045.4.3.2'), derNull()) }),
      'PKI_CSR_ALGORITHM_UNSUPPORTED',
    ],
    [
      'PKI_CSR_ALGORITHM_UNSUPPORTED/sha256WithRSAEncryption OID',
      () => buildCsr({ algorithm: derSequence(derOid('1.2.840.113549.1.1.11'), derNull()) }),
      'PKI_CSR_ALGORITHM_UNSUPPORTED',
    ],
    // subject
    [
      'PKI_CSR_SUBJECT_INVALID/two commonNames',
      () =>
        buildCsr({
          subject: derName([
            ['2.5.4.3', deviceId],
            ['2.5.4.3', 'other'],
          ]),
        }),
      'PKI_CSR_SUBJECT_INVALID',
    ],
    [
      'PKI_CSR_SUBJECT_INVALID/NUL inside the commonName',
      () => buildCsr({ subject: derName([['2.5.4.3', `${deviceId.slice(0, 8)}\0.evil`]]) }),
      'PKI_CSR_SUBJECT_INVALID',
    ],
    [
      'PKI_CSR_SUBJECT_INVALID/commonName of 65 characters',
      () => buildCsr({ subject: derName([['2.5.4.3', 'x'.repeat(65)]]) }),
      'PKI_CSR_SUBJECT_INVALID',
    ],
    [
      'PKI_CSR_SUBJECT_INVALID/commonName as IA5String',
      () =>
        buildCsr({
          subject: derSequence(
            derSet(derSequence(derOid('2.5.4.3'), derTlv(TAG.IA5_STRING, Buffer.from('x')))),
          ),
        }),
      'PKI_CSR_SUBJECT_INVALID',
    ],
    [
      'PKI_CSR_SUBJECT_INVALID/commonName not valid UTF-8',
      () =>
        buildCsr({
          subject: derSequence(
            derSet(derSequence(derOid('2.5.4.3'), derTlv(TAG.UTF8_STRING, Buffer.from([0xc3, 0x28])))),
          ),
        }),
      'PKI_CSR_SUBJECT_INVALID',
    ],
    [
      'PKI_CSR_SUBJECT_INVALID/PrintableString with a character outside its alphabet',
      () =>
        buildCsr({
          subject: derSequence(
            derSet(derSequence(derOid('2.5.4.3'), derTlv(TAG.PRINTABLE_STRING, Buffer.from('a_b')))),
          ),
        }),
      'PKI_CSR_SUBJECT_INVALID',
    ],
    // signature
    ['PKI_CSR_SIGNATURE_INVALID/one CRI octet changed', () => tamperedCri, 'PKI_CSR_SIGNATURE_INVALID'],
    [
      'PKI_CSR_SIGNATURE_INVALID/signed by another key',
      () => buildCsr({ signer: (cri) => sign('sha256', cri, other.privateKey) }),
      'PKI_CSR_SIGNATURE_INVALID',
    ],
    [
      'PKI_CSR_SIGNATURE_INVALID/signed over SHA-384 while claiming SHA-256',
      () => buildCsr({ signer: (cri) => sign('sha384', cri, device.privateKey) }),
      'PKI_CSR_SIGNATURE_INVALID',
    ],
    [
      'PKI_CSR_SIGNATURE_INVALID/signature is not an ECDSA-Sig-Value',
      () => withSignature(Buffer.alloc(64, 0x11)),
      'PKI_CSR_SIGNATURE_INVALID',
    ],
    [
      'PKI_CSR_SIGNATURE_INVALID/signature (r, s) = (0, 0)',
      () => withSignature(derSequence(derInteger(0), derInteger(0))),
      'PKI_CSR_SIGNATURE_INVALID',
    ],
    [
      'PKI_CSR_SIGNATURE_INVALID/signature too long for P-256',
      () =>
        withSignature(derSequence(derInteger(Buffer.alloc(40, 0x7f)), derInteger(Buffer.alloc(40, 0x7f)))),
      'PKI_CSR_SIGNATURE_INVALID',
    ],
    [
      'PKI_CSR_SIGNATURE_INVALID/signature with unused bits',
      () =>
        derSequence(
          parseCsr(good).certificationRequestInfo,
          ECDSA_WITH_SHA256_DER,
          derBitString(Buffer.alloc(70, 0xf0), 4),
        ),
      'PKI_CSR_SIGNATURE_INVALID',
    ],
  ];

  for (const [name, csr, code] of cases) {
    test(name, () => assertRefused(() => verifyCsr(csr()), code, name));
  }

  test('parseCsr alone does not check the signature; verifyCsr does', () => {
    assert.equal(parseCsr(tamperedCri).subjectCommonName?.length, 64);
    assertRefused(() => verifyCsr(tamperedCri), 'PKI_CSR_SIGNATURE_INVALID', 'tampered');
  });

  test('every strict prefix of a valid CSR is PKI_CSR_MALFORMED', () => {
    for (let n = 0; n < good.length; n++)
      assertRefused(() => parseCsr(good.subarray(0, n)), 'PKI_CSR_MALFORMED', `n=${n}`);
  });

  test('refuses input that is not bytes', () => {
    for (const v of ['string', null, undefined, 42, [0x30, 0x00]]) {
      assertRefused(() => parseCsr(v as unknown as Uint8Array), 'PKI_CSR_MALFORMED', String(v));
    }
  });
});

describe('parseCsr properties', () => {
  const isCsrRefusal = (e: unknown) =>
    e instanceof HeptadError &&
    [
      'PKI_CSR_MALFORMED',
      'PKI_CSR_TOO_LARGE',
      'PKI_CSR_ALGORITHM_UNSUPPORTED',
      'PKI_CSR_KEY_UNSUPPORTED',
      'PKI_CSR_SUBJECT_INVALID',
      'PKI_CSR_SIGNATURE_INVALID',
    ].includes(e.code);

  test('on arbitrary bytes, returns or throws a PKI_CSR_* HeptadError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), (bytes) => {
        try {
          parseCsr(bytes);
        } catch (e) {
          assert.ok(isCsrRefusal(e), String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('on random corruptions of a valid CSR, verifyCsr returns or throws a PKI_CSR_* HeptadError', () => {
    const corruption = fc.record({
      at: fc.nat({ max: good.length - 1 }),
      kind: fc.constantFrom('flip', 'insert', 'delete'),
      byte: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(fc.array(corruption, { minLength: 1, maxLength: 4 }), (edits) => {
        let b = Buffer.from(good);
        for (const { at, kind, byte } of edits) {
          const i = Math.min(at, b.length - 1);
          if (kind === 'flip') b[i] = byte;
          else if (kind === 'insert')
            b = Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)]);
          else b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]);
        }
        try {
          verifyCsr(b);
        } catch (e) {
          assert.ok(isCsrRefusal(e), String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('round-trips any acceptable common name', () => {
    const cn = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 32 }).filter(
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are refused by design
      (s) => !/[\x00-\x1f\x7f]/.test(s) && [...s].length <= 64,
    );
    const key = createPrivateKey(device.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    fc.assert(
      fc.property(cn, (name) => {
        assert.equal(
          verifyCsr(createCsr({ privateKey: key, subjectCommonName: name })).subjectCommonName,
          name,
        );
      }),
      { numRuns: 200 },
    );
  });
});

describe('derUtf8String names', () => {
  test('a UTF8String CN is what createCsr writes (RFC 5280 §4.1.2.6)', () => {
    assert.ok(good.includes(derUtf8String(deviceId)));
  });
});
