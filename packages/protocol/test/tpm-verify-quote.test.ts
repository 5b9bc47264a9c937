// verifyQuote: accepts a real TPM quote and a software quote built with the encoders, and refuses
// every kind of bad evidence with its own code. Cases that must reach the parser (a malformed or
// non-quote TPMS_ATTEST) are re-signed with the test key, since the signature is checked first
// and an unsigned change is already TPM_QUOTE_SIGNATURE_INVALID.
//
// REAL: see tpm-structures.test.ts (swtpm 0.7.1 + tpm2-tools 5.4, PCR 16 extended once with
// SHA-256("heptad test vector: runtime image v1"), quote of sha256:0,16).

import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type ErrorCode, HeptadError } from '../src/index.ts';
import {
  decodeTpm2bPublic,
  encodeEcdsaSignature,
  encodeQuoteAttest,
  extendPcrValue,
  pcrDigest,
  type QuoteAttestInput,
  type VerifyQuoteOptions,
  verifyQuote,
  Writer,
} from '../src/tpm/index.ts';

const hex = (s: string) => Buffer.from(s, 'hex');
const ZERO = Buffer.alloc(32);

const REAL = {
  akPublic: hex(
    '00580023000b00050072000000100018000b0003001000208893edad9480b0e7ac10d3f2a8aad272cec9707dd20f250420718def4ff2f0c50020f81f36861858f6cd966a98d0c06a67c1d72b12d6e12a86e42b29c7a92f050543',
  ),
  attest: hex(
    'ff54434780180022000bccd0f3372d343302bdf600a4a72a0b82bcc611050bc73cf80994c9f150138ccb0020945600d04a474e7cb78bb6791de44cdd455d736a81cb9975500eec3adab27d6700000000000001f6000000010000000001201910230016363600000001000b030100010020906963cb9cdecde7e584e40850608ef413f9a3d37d5bad2a0af4100e8e1a841b',
  ),
  signature: hex(
    '0018000b0020d2580e0fcab846435b01a7fcdfb9904278427c0ff9aa711a6ee6ba764fa60f7e0020ded300a1f7a82e0b340fae959e32ed18a58a6cbda3197ca4871173a8e908aef9',
  ),
};
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest();
/** The event-log replay a verifier does: PCR 16 extended once from zero. */
const REAL_PCRS = new Map([
  [0, ZERO],
  [16, extendPcrValue(ZERO, sha256('heptad test vector: runtime image v1'))],
]);
const REAL_NONCE = sha256('heptad test vector nonce');

const identity = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' });

const NONCE = Buffer.alloc(32, 0x5a);
const PCRS = [0, 7, 16];
const VALUES = new Map(PCRS.map((p) => [p, sha256(`pcr ${p}`)]));

function attestInput(overrides: Partial<QuoteAttestInput> = {}): QuoteAttestInput {
  return {
    qualifiedSigner: Buffer.concat([hex('000b'), sha256('signer')]),
    extraData: NONCE,
    clock: 123456n,
    resetCount: 3,
    restartCount: 1,
    safe: true,
    firmwareVersion: 0x48505444n,
    pcrSelection: { hash: 'sha256', pcrs: PCRS },
    pcrDigest: pcrDigest(PCRS.map((p) => VALUES.get(p) ?? ZERO)),
    ...overrides,
  };
}

/** A TPMT_SIGNATURE by `key` over exactly these TPMS_ATTEST bytes. */
function signAttest(attest: Buffer, key: KeyObject = identity.privateKey): Buffer {
  return encodeEcdsaSignature(sign('sha256', attest, key));
}

function evidence(overrides: Partial<QuoteAttestInput> = {}): { attest: Buffer; signature: Buffer } {
  const attest = encodeQuoteAttest(attestInput(overrides));
  return { attest, signature: signAttest(attest) };
}

function options(overrides: Partial<VerifyQuoteOptions> = {}): VerifyQuoteOptions {
  return {
    ...evidence(),
    publicKey: identity.publicKey,
    expectedExtraData: NONCE,
    expectedPcrs: PCRS,
    pcrValues: VALUES,
    ...overrides,
  };
}

/** `bytes` written over a copy of `b` at `offset`. */
function patch(b: Buffer, offset: number, bytes: string): Buffer {
  const copy = Buffer.from(b);
  hex(bytes).copy(copy, offset);
  return copy;
}

/** A copy of `b` with one bit of the byte at `offset` inverted. */
function flip(b: Buffer, offset: number): Buffer {
  const copy = Buffer.from(b);
  copy[offset] = (copy[offset] ?? 0) ^ 1;
  return copy;
}

/** Re-signed attest bytes, so the case reaches the parser. */
function resigned(attest: Buffer): Partial<VerifyQuoteOptions> {
  return { attest, signature: signAttest(attest) };
}

function assertCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HeptadError, `expected a HeptadError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

describe('verifyQuote accepts', () => {
  test('a quote made by a TPM (swtpm, tpm2_quote) with the replayed PCR values', () => {
    const q = verifyQuote({
      attest: REAL.attest,
      signature: REAL.signature,
      publicKey: decodeTpm2bPublic(REAL.akPublic).publicKey,
      expectedExtraData: REAL_NONCE,
      expectedPcrs: [16, 0],
      pcrValues: REAL_PCRS,
    });
    assert.equal(q.clock, 502n);
    assert.equal(q.resetCount, 1);
    assert.equal(q.restartCount, 0);
    assert.equal(q.safe, true);
    assert.equal(q.firmwareVersion, 0x2019102300163636n);
    assert.deepEqual(q.pcrs, [0, 16]);
    assert.deepEqual(q.extraData, REAL_NONCE);
  });

  test('a quote built with the encoders and signed by node:crypto (the software root of trust)', () => {
    const q = verifyQuote(options());
    assert.equal(q.clock, 123456n);
    assert.equal(q.resetCount, 3);
    assert.equal(q.restartCount, 1);
    assert.equal(q.firmwareVersion, 0x48505444n);
    assert.deepEqual(q.pcrs, PCRS);
  });

  test('a quote of no PCRs when none are expected, and a 64-byte nonce', () => {
    const nonce = Buffer.alloc(64, 1);
    const e = evidence({
      extraData: nonce,
      pcrSelection: { hash: 'sha256', pcrs: [] },
      pcrDigest: pcrDigest([]),
    });
    verifyQuote(options({ ...e, expectedExtraData: nonce, expectedPcrs: [], pcrValues: new Map() }));
  });

  test('a P1363 signature as well as a DER one', () => {
    const { attest } = evidence();
    const p1363 = sign('sha256', attest, { key: identity.privateKey, dsaEncoding: 'ieee-p1363' });
    verifyQuote(options({ attest, signature: encodeEcdsaSignature(p1363) }));
  });
});

describe('verifyQuote refuses', () => {
  const good = evidence();
  const otherSelection = evidence({ pcrSelection: { hash: 'sha256', pcrs: [0, 7] } });
  const sha1Bank = evidence({ pcrSelection: { hash: 'sha1', pcrs: PCRS } });
  // Offsets into a software TPMS_ATTEST: extraData size at 42, safe at 92, pcrSelect count at 101.
  const twoBanks = (() => {
    const w = new Writer().bytes(good.attest.subarray(0, 101)).u32(2);
    w.u16(0x000b).u8(3).bytes(hex('810001')).u16(0x0004).u8(3).bytes(hex('000000'));
    return w.bytes(good.attest.subarray(111)).finish();
  })();
  const noBanks = Buffer.concat([good.attest.subarray(0, 101), hex('00000000'), good.attest.subarray(111)]);

  const cases: [ErrorCode, string, Partial<VerifyQuoteOptions>][] = [
    ['TPM_QUOTE_SIGNATURE_INVALID', 'a byte of the attestation changed', { attest: flip(good.attest, 50) }],
    ['TPM_QUOTE_SIGNATURE_INVALID', 'a byte of the PCR digest changed', { attest: flip(good.attest, 120) }],
    [
      'TPM_QUOTE_SIGNATURE_INVALID',
      'a byte of the signature changed',
      { signature: flip(good.signature, 10) },
    ],
    [
      'TPM_QUOTE_SIGNATURE_INVALID',
      'signed by another key',
      { signature: signAttest(good.attest, stranger.privateKey) },
    ],
    ['TPM_QUOTE_SIGNATURE_INVALID', 'verified with another key', { publicKey: stranger.publicKey }],
    [
      'TPM_QUOTE_SIGNATURE_INVALID',
      'the signature of another quote',
      { signature: otherSelection.signature },
    ],
    ['TPM_QUOTE_SIGNATURE_INVALID', 'ECDSA with SHA-1', { signature: patch(good.signature, 2, '0004') }],
    ['TPM_QUOTE_SIGNATURE_INVALID', 'ECDAA', { signature: patch(good.signature, 0, '001a') }],
    ['TPM_QUOTE_SIGNATURE_INVALID', 'an RSASSA signature', { signature: hex('0014000b0002aabb') }],
    [
      'TPM_QUOTE_SIGNATURE_INVALID',
      'r of 33 non-zero bytes',
      {
        signature: Buffer.concat([
          hex('0018000b0021'),
          Buffer.alloc(33, 1),
          hex('0020'),
          Buffer.alloc(32, 1),
        ]),
      },
    ],
    ['TPM_QUOTE_SIGNATURE_INVALID', 'garbage attestation bytes', { attest: Buffer.alloc(145, 0x41) }],
    ['TPM_QUOTE_SIGNATURE_INVALID', 'an empty attestation', { attest: Buffer.alloc(0) }],
    ['TPM_QUOTE_NONCE_MISMATCH', 'another nonce', { expectedExtraData: Buffer.alloc(32, 0x5b) }],
    [
      'TPM_QUOTE_NONCE_MISMATCH',
      'a nonce that is a prefix of the quoted one',
      { expectedExtraData: NONCE.subarray(0, 31) },
    ],
    ['TPM_QUOTE_NONCE_MISMATCH', 'an empty nonce', { expectedExtraData: Buffer.alloc(0) }],
    ['TPM_QUOTE_NONCE_MISMATCH', 'a quote without a nonce', { ...evidence({ extraData: Buffer.alloc(0) }) }],
    ['TPM_QUOTE_PCR_SELECTION_MISMATCH', 'fewer PCRs than required', { ...otherSelection }],
    ['TPM_QUOTE_PCR_SELECTION_MISMATCH', 'more PCRs than required', { expectedPcrs: [0, 16] }],
    ['TPM_QUOTE_PCR_SELECTION_MISMATCH', 'another PCR set', { expectedPcrs: [1, 7, 16] }],
    ['TPM_QUOTE_PCR_SELECTION_MISMATCH', 'the sha1 bank', { ...sha1Bank }],
    ['TPM_QUOTE_PCR_SELECTION_MISMATCH', 'two banks', resigned(twoBanks)],
    ['TPM_QUOTE_PCR_SELECTION_MISMATCH', 'no selection at all', resigned(noBanks)],
    ['TPM_QUOTE_PCR_DIGEST_MISMATCH', 'a wrong PCR value', { pcrValues: new Map([...VALUES, [7, ZERO]]) }],
    ['TPM_QUOTE_PCR_DIGEST_MISMATCH', 'a missing PCR value', { pcrValues: new Map([...VALUES].slice(1)) }],
    [
      'TPM_QUOTE_PCR_DIGEST_MISMATCH',
      'values of two PCRs swapped',
      { pcrValues: new Map([...VALUES, [0, VALUES.get(7) ?? ZERO], [7, VALUES.get(0) ?? ZERO]]) },
    ],
    [
      'TPM_QUOTE_PCR_DIGEST_MISMATCH',
      'a 31-byte value',
      { pcrValues: new Map([...VALUES, [16, Buffer.alloc(31)]]) },
    ],
    [
      'TPM_QUOTE_PCR_DIGEST_MISMATCH',
      'a digest over other values',
      { ...evidence({ pcrDigest: sha256('other') }) },
    ],
    ['TPM_QUOTE_INVALID', 'wrong magic (signed)', resigned(patch(good.attest, 0, '00544347'))],
    ['TPM_QUOTE_INVALID', 'an ATTEST_CERTIFY structure (signed)', resigned(patch(good.attest, 4, '8017'))],
    ['TPM_STRUCTURE_INVALID', 'truncated (signed)', resigned(good.attest.subarray(0, 100))],
    ['TPM_STRUCTURE_INVALID', 'a trailing byte (signed)', resigned(Buffer.concat([good.attest, hex('00')]))],
    ['TPM_STRUCTURE_INVALID', 'extraData size 0xffff (signed)', resigned(patch(good.attest, 42, 'ffff'))],
    ['TPM_STRUCTURE_INVALID', 'safe = 2 (signed)', resigned(patch(good.attest, 92, '02'))],
    [
      'TPM_STRUCTURE_INVALID',
      'PCR selection count 2^32-1 (signed)',
      resigned(patch(good.attest, 101, 'ffffffff')),
    ],
    ['TPM_STRUCTURE_INVALID', 'an oversized attestation', { attest: Buffer.alloc(4096) }],
    ['TPM_STRUCTURE_INVALID', 'a truncated signature', { signature: good.signature.subarray(0, 50) }],
    [
      'TPM_STRUCTURE_INVALID',
      'a trailing byte after the signature',
      { signature: Buffer.concat([good.signature, hex('00')]) },
    ],
    ['TPM_STRUCTURE_INVALID', 'an empty signature', { signature: Buffer.alloc(0) }],
    ['TPM_STRUCTURE_INVALID', 'an oversized signature', { signature: Buffer.alloc(4096, 0x18) }],
    [
      'TPM_QUOTE_SIGNATURE_INVALID',
      'a DER signature instead of TPMT_SIGNATURE',
      { signature: sign('sha256', good.attest, identity.privateKey) },
    ],
    [
      'TPM_KEY_UNSUPPORTED',
      'an RSA verification key',
      { publicKey: generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey },
    ],
    [
      'TPM_KEY_UNSUPPORTED',
      'a P-384 verification key',
      { publicKey: generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey },
    ],
  ];
  for (const [code, name, overrides] of cases) {
    test(`${code}/${name}`, () => assertCode(() => verifyQuote(options(overrides)), code));
  }

  test('TPM_QUOTE_NONCE_MISMATCH/a real TPM quote checked against another nonce', () => {
    assertCode(
      () =>
        verifyQuote({
          attest: REAL.attest,
          signature: REAL.signature,
          publicKey: decodeTpm2bPublic(REAL.akPublic).publicKey,
          expectedExtraData: sha256('another nonce'),
          expectedPcrs: [0, 16],
          pcrValues: REAL_PCRS,
        }),
      'TPM_QUOTE_NONCE_MISMATCH',
    );
  });
});

describe('verifyQuote on arbitrary input', () => {
  test('arbitrary attestation and signature bytes are refused with a HeptadError, never accepted', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ maxLength: 120 }),
        (attest, signature) => {
          assert.throws(
            () => verifyQuote(options({ attest: Buffer.from(attest), signature: Buffer.from(signature) })),
            HeptadError,
          );
        },
      ),
    );
  });

  test('any single-byte change of a signed quote, re-signed, is accepted or refused with a HeptadError', () => {
    const { attest } = evidence();
    fc.assert(
      fc.property(fc.nat(attest.length - 1), fc.nat(255), (at, v) => {
        const changed = Buffer.from(attest);
        changed[at] = v;
        try {
          verifyQuote(options(resigned(changed)));
        } catch (e) {
          if (!(e instanceof HeptadError)) throw e;
        }
      }),
      { numRuns: 300 },
    );
  });
});
