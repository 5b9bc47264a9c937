// Device identity: the id is the SHA-256 of the DER SubjectPublicKeyInfo of an ECDSA P-256 key,
// and anything that is not exactly such a key in PEM is refused with DEVICE_PUBLIC_KEY_INVALID.
// Keys are generated per run (no key material checked in); refusals assert class and code only.

import assert from 'node:assert/strict';
import { createHash, ECDH, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  assertDeviceIdentity,
  createCertificateAuthority,
  DEVICE_ID_PATTERN,
  deviceIdOf,
  type ErrorCode,
  HeptadError,
  isDeviceId,
  MAX_PUBLIC_KEY_PEM_LENGTH,
  toIdentityPublicKey,
} from '../src/index.ts';

function spkiPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'spki' }).toString();
}

function pemOf(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Decodes a PEM by hand, so the expected id does not come from the code under test. */
function derOfPem(pem: string): Buffer {
  const body = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, '').replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function assertHeptadCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HeptadError, `expected a HeptadError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const P256_PEM = spkiPem(p256.publicKey);
const P256_DER = derOfPem(P256_PEM);
const P256_ID = sha256Hex(P256_DER);
const otherP256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** The same P-256 key with its point in compressed form (SEC 1 §2.3.3): 33 bytes instead of 65. */
function compressedSpkiPem(): string {
  const point = P256_DER.subarray(P256_DER.length - 65);
  const compressed = ECDH.convertKey(point, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
  const head = Buffer.from(P256_DER.subarray(0, P256_DER.length - 65)); // 30 59 … 03 42 00
  head[1] = (head[1] ?? 0) - 32; // outer SEQUENCE length
  head[head.length - 2] = (head[head.length - 2] ?? 0) - 32; // BIT STRING length
  return pemOf('PUBLIC KEY', Buffer.concat([head, compressed]));
}

describe('toIdentityPublicKey and deviceIdOf', () => {
  test('accepts an ECDSA P-256 SPKI PEM and gives the SHA-256 of its DER as the id', () => {
    const key = toIdentityPublicKey(P256_PEM);
    assert.equal(key.type, 'public');
    assert.equal(key.asymmetricKeyType, 'ec');
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(deviceIdOf(key), P256_ID);
    assert.ok(isDeviceId(P256_ID));
  });

  test('accepts CRLF line endings and gives the same id', () => {
    assert.equal(deviceIdOf(toIdentityPublicKey(P256_PEM.replaceAll('\n', '\r\n'))), P256_ID);
  });

  test('accepts a PEM of exactly MAX_PUBLIC_KEY_PEM_LENGTH characters', () => {
    const padded = P256_PEM.padEnd(MAX_PUBLIC_KEY_PEM_LENGTH, '\n');
    assert.equal(padded.length, MAX_PUBLIC_KEY_PEM_LENGTH);
    assert.equal(deviceIdOf(toIdentityPublicKey(padded)), P256_ID);
  });

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ed25519 = generateKeyPairSync('ed25519');
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const secp256k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  const offCurve = Buffer.from(P256_DER);
  offCurve[offCurve.length - 1] = (offCurve[offCurve.length - 1] ?? 0) ^ 0x01; // y no longer on the curve
  const hugeLength = Buffer.from(P256_DER);
  hugeLength[1] = 0x7f; // outer SEQUENCE claims more bytes than there are
  const base64 = P256_PEM.split('\n')[1] ?? '';

  const refusals: ReadonlyArray<readonly [string, string]> = [
    ['an RSA key', spkiPem(rsa.publicKey)],
    ['an RSA key in PKCS#1 form', rsa.publicKey.export({ format: 'pem', type: 'pkcs1' }).toString()],
    ['an Ed25519 key', spkiPem(ed25519.publicKey)],
    ['a P-384 key', spkiPem(p384.publicKey)],
    ['a secp256k1 key (256 bits, but not P-256)', spkiPem(secp256k1.publicKey)],
    ['a PKCS#8 private key PEM', p256.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()],
    ['a SEC 1 private key PEM', p256.privateKey.export({ format: 'pem', type: 'sec1' }).toString()],
    ['garbage', 'not a key at all'],
    ['an empty string', ''],
    ['only whitespace', ' \n\t\r\n'],
    ['a header with no body', '-----BEGIN PUBLIC KEY-----\n'],
    ['a PEM truncated in its base64', P256_PEM.slice(0, 60)],
    ['a PEM without its END line', P256_PEM.replace('-----END PUBLIC KEY-----\n', '')],
    ['a PEM whose DER is cut short', pemOf('PUBLIC KEY', P256_DER.subarray(0, P256_DER.length - 10))],
    ['a PEM whose DER claims a length it does not have', pemOf('PUBLIC KEY', hugeLength)],
    ['a P-256 key whose point is not on the curve', pemOf('PUBLIC KEY', offCurve)],
    [
      'a PEM with corrupted base64',
      P256_PEM.replace(base64, `${base64.slice(0, 20)}!!!!${base64.slice(24)}`),
    ],
    ['a DER key sent as text', P256_DER.toString('latin1')],
    ['a base64 DER without PEM armour', P256_DER.toString('base64')],
    ['a PEM longer than MAX_PUBLIC_KEY_PEM_LENGTH', P256_PEM.padEnd(MAX_PUBLIC_KEY_PEM_LENGTH + 1, '\n')],
    ['a huge input', `${P256_PEM}${'A'.repeat(10 * 1024 * 1024)}`],
  ];
  for (const [name, pem] of refusals) {
    test(`refuses ${name}`, () =>
      assertHeptadCode(() => toIdentityPublicKey(pem), 'DEVICE_PUBLIC_KEY_INVALID'));
  }

  test('refuses a certificate PEM, even one for a P-256 key', async () => {
    const ca = await createCertificateAuthority({ commonName: 'Test CA', now: new Date(), validityDays: 1 });
    assertHeptadCode(() => toIdentityPublicKey(ca.certPem), 'DEVICE_PUBLIC_KEY_INVALID');
  });

  // OpenSSL's PEM reader falls back to later blocks when the PUBLIC KEY block does not decode, so
  // a private key behind a broken PUBLIC KEY block would be accepted and its public half returned.
  test('refuses a private key hidden behind a broken PUBLIC KEY block', () => {
    const smuggled = `-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n${p256.privateKey
      .export({ format: 'pem', type: 'pkcs8' })
      .toString()}`;
    assertHeptadCode(() => toIdentityPublicKey(smuggled), 'DEVICE_PUBLIC_KEY_INVALID');
  });

  test('refuses trailing bytes after the END line', () => {
    assertHeptadCode(() => toIdentityPublicKey(`${P256_PEM}trailing bytes`), 'DEVICE_PUBLIC_KEY_INVALID');
  });

  // One key must have one id: otherwise the same device registers twice under two ids.
  test('gives a key one id whatever the point encoding (or refuses the compressed form)', () => {
    let id: string | undefined;
    try {
      id = deviceIdOf(toIdentityPublicKey(compressedSpkiPem()));
    } catch (e) {
      assert.ok(e instanceof HeptadError);
      assert.equal(e.code, 'DEVICE_PUBLIC_KEY_INVALID');
      return;
    }
    assert.equal(id, P256_ID);
  });

  test('for any string, returns a P-256 key or throws DEVICE_PUBLIC_KEY_INVALID, never another error', () => {
    const header = '-----BEGIN PUBLIC KEY-----\n';
    const inputs = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.string({ unit: 'binary-ascii', maxLength: 300 }).map((s) => header + s),
      fc.base64String({ maxLength: 200 }).map((s) => `${header}${s}\n-----END PUBLIC KEY-----\n`),
      // One character of a valid PEM replaced: mostly near-misses that reach the DER parser.
      fc
        .tuple(
          fc.nat({ max: P256_PEM.length - 1 }),
          fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }),
        )
        .map(([i, c]) => P256_PEM.slice(0, i) + c + P256_PEM.slice(i + 1)),
    );
    fc.assert(
      fc.property(inputs, (s) => {
        let key: KeyObject;
        try {
          key = toIdentityPublicKey(s);
        } catch (e) {
          return e instanceof HeptadError && e.code === 'DEVICE_PUBLIC_KEY_INVALID';
        }
        return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
      }),
      { numRuns: 2000 },
    );
  });
});

describe('assertDeviceIdentity', () => {
  test('returns the id and the key in canonical PEM when the id matches', () => {
    assert.deepEqual(assertDeviceIdentity(P256_ID, P256_PEM), { id: P256_ID, publicKeyPem: P256_PEM });
  });

  test('returns canonical PEM for a non-canonical but valid input', () => {
    const crlf = P256_PEM.replaceAll('\n', '\r\n');
    assert.deepEqual(assertDeviceIdentity(P256_ID, `\n${crlf}\n\n`), { id: P256_ID, publicKeyPem: P256_PEM });
  });

  test('accepts an uppercase-hex id and returns it lowercase', () => {
    assert.deepEqual(assertDeviceIdentity(P256_ID.toUpperCase(), P256_PEM), {
      id: P256_ID,
      publicKeyPem: P256_PEM,
    });
  });

  test('refuses the id of a different key with DEVICE_ID_MISMATCH and names the expected id', () => {
    const otherId = sha256Hex(derOfPem(spkiPem(otherP256.publicKey)));
    assertHeptadCode(() => assertDeviceIdentity(otherId, P256_PEM), 'DEVICE_ID_MISMATCH');
    try {
      assertDeviceIdentity(otherId, P256_PEM);
    } catch (e) {
      assert.ok(e instanceof HeptadError);
      assert.deepEqual(e.detail, { expected: P256_ID });
    }
  });

  const badIds: ReadonlyArray<readonly [string, string]> = [
    ['an empty id', ''],
    ['an id one character short', P256_ID.slice(1)],
    ['an id with a trailing newline', `${P256_ID}\n`],
    ['an id with surrounding spaces', ` ${P256_ID} `],
    ['the SHA-256 of the PEM text instead of the DER', sha256Hex(Buffer.from(P256_PEM))],
  ];
  for (const [name, id] of badIds) {
    test(`refuses ${name} with DEVICE_ID_MISMATCH`, () =>
      assertHeptadCode(() => assertDeviceIdentity(id, P256_PEM), 'DEVICE_ID_MISMATCH'));
  }

  test('checks the key before the id: a bad key and a bad id give DEVICE_PUBLIC_KEY_INVALID', () => {
    assertHeptadCode(() => assertDeviceIdentity('0'.repeat(64), 'garbage'), 'DEVICE_PUBLIC_KEY_INVALID');
  });
});

describe('isDeviceId', () => {
  const exact = /^[0-9a-f]{64}$/;

  test('uses the published DEVICE_ID_PATTERN', () => {
    assert.equal(DEVICE_ID_PATTERN, exact.source);
  });

  test('accepts every string of 64 lowercase hex characters', () => {
    fc.assert(fc.property(fc.stringMatching(exact), (s) => isDeviceId(s)));
  });

  test('agrees with /^[0-9a-f]{64}$/ on arbitrary strings and near misses', () => {
    const nearMiss = fc
      .tuple(
        fc.stringMatching(exact),
        fc.nat({ max: 63 }),
        fc.string({ unit: 'binary', minLength: 0, maxLength: 2 }),
      )
      .map(([id, i, s]) => id.slice(0, i) + s + id.slice(i + 1));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), nearMiss), (s) => isDeviceId(s) === exact.test(s)),
    );
  });

  test('refuses uppercase hex, a trailing newline and non-strings', () => {
    assert.equal(isDeviceId(P256_ID.toUpperCase()), false);
    assert.equal(isDeviceId(`${P256_ID}\n`), false);
    fc.assert(fc.property(fc.anything(), (v) => typeof v === 'string' || isDeviceId(v) === false));
    assert.equal(isDeviceId(Buffer.from(P256_ID)), false);
    assert.equal(isDeviceId({ toString: () => P256_ID }), false);
  });
});
