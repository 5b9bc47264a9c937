// TPM 2.0 structures: the bounds-checked Reader, PCR selections, ECC public areas, the quote's
// TPMS_ATTEST and TPMT_SIGNATURE. Encoders are checked to reproduce a real TPM's bytes exactly
// (the software root of trust relies on that), parsers are fed truncated, oversized and trailing
// input and, with fast-check, arbitrary bytes: they either parse or throw a HeptadError.
//
// REAL is a quote made on this project's test machine by swtpm 0.7.1 + tpm2-tools 5.4:
//   tpm2_createek -c ek.ctx -G ecc; tpm2_createak -C ek.ctx -c ak.ctx -G ecc -g sha256 -s ecdsa \
//     -u ak.pub -n ak.name -f tss; tpm2_pcrextend 16:sha256=SHA256("heptad test vector: runtime image v1")
//   tpm2_quote -c ak.ctx -l sha256:0,16 -q SHA256("heptad test vector nonce") -m quote.msg -s quote.sig
// (the same vector is in tpm-verify-quote.test.ts).

import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type ErrorCode, HeptadError } from '../src/index.ts';
import {
  decodeEccPublic,
  decodeQuoteAttest,
  decodeSignature,
  decodeTpm2bPublic,
  derToP1363,
  type EccPublicArea,
  encodeEccPublic,
  encodeEcdsaSignature,
  encodeQuoteAttest,
  encodeTpm2bPublic,
  extendPcrValue,
  keyToEccPoint,
  pcrDigest,
  pcrSelectionBitmap,
  pcrsOfBitmap,
  type QuoteAttestInput,
  Reader,
  TPM_ALG,
  TPMA_OBJECT,
  toDerSignature,
  toP1363,
  tpmName,
  Writer,
} from '../src/tpm/index.ts';

const hex = (s: string) => Buffer.from(s, 'hex');

const REAL = {
  akPublic: hex(
    '00580023000b00050072000000100018000b0003001000208893edad9480b0e7ac10d3f2a8aad272cec9707dd20f250420718def4ff2f0c50020f81f36861858f6cd966a98d0c06a67c1d72b12d6e12a86e42b29c7a92f050543',
  ),
  akName: hex('000b7a62fb77862cbacc37e693690e6a1a23de4b4111ad51ac13b79fae5c702c3a4a'),
  attest: hex(
    'ff54434780180022000bccd0f3372d343302bdf600a4a72a0b82bcc611050bc73cf80994c9f150138ccb0020945600d04a474e7cb78bb6791de44cdd455d736a81cb9975500eec3adab27d6700000000000001f6000000010000000001201910230016363600000001000b030100010020906963cb9cdecde7e584e40850608ef413f9a3d37d5bad2a0af4100e8e1a841b',
  ),
  signature: hex(
    '0018000b0020d2580e0fcab846435b01a7fcdfb9904278427c0ff9aa711a6ee6ba764fa60f7e0020ded300a1f7a82e0b340fae959e32ed18a58a6cbda3197ca4871173a8e908aef9',
  ),
  nonce: hex('945600d04a474e7cb78bb6791de44cdd455d736a81cb9975500eec3adab27d67'),
};

function assertCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HeptadError, `expected a HeptadError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

/** Runs fn; a HeptadError is an accepted outcome, any other throw fails the property. */
function parsesOrRefuses(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof HeptadError)) throw e;
  }
}

describe('Reader', () => {
  test('reads big-endian integers and TPM2B buffers', () => {
    const bytes = new Writer()
      .u8(1)
      .u16(0x0203)
      .u32(0x04050607)
      .u64(0x08090a0b0c0d0e0fn)
      .tpm2b(hex('aabb'))
      .finish();
    assert.equal(bytes.toString('hex'), '0102030405060708090a0b0c0d0e0f0002aabb');
    const r = new Reader(bytes, 'test');
    assert.equal(r.u8('a'), 1);
    assert.equal(r.u16('b'), 0x0203);
    assert.equal(r.u32('c'), 0x04050607);
    assert.equal(r.u64('d'), 0x08090a0b0c0d0e0fn);
    assert.deepEqual(r.tpm2b('e', 2), hex('aabb'));
    r.end();
  });

  const refusals: [string, () => unknown][] = [
    ['a read past the end', () => new Reader(hex('0001'), 't').u32('x')],
    ['a TPM2B size larger than the bytes left', () => new Reader(hex('0005aabb'), 't').tpm2b('x', 64)],
    [
      'a TPM2B size larger than its maximum',
      () => new Reader(hex(`0041${'00'.repeat(65)}`), 't').tpm2b('x', 64),
    ],
    ['a size of 0xffff', () => new Reader(hex('ffff'), 't').tpm2b('x', 64)],
    [
      'trailing bytes',
      () => {
        const r = new Reader(hex('000100'), 't');
        r.u16('x');
        r.end();
      },
    ],
  ];
  for (const [name, fn] of refusals) {
    test(`TPM_STRUCTURE_INVALID/${name}`, () => assertCode(fn, 'TPM_STRUCTURE_INVALID'));
  }

  test('copies what it returns, so the caller cannot alias the input', () => {
    const input = hex('0002aabb');
    const out = new Reader(input, 't').tpm2b('x', 2);
    input[2] = 0;
    assert.deepEqual(out, hex('aabb'));
  });
});

describe('PCR selections', () => {
  test('pcrSelectionBitmap sets bit n%8 of byte n/8, at least 3 bytes', () => {
    assert.equal(pcrSelectionBitmap([0, 16]).toString('hex'), '010001');
    assert.equal(pcrSelectionBitmap([]).toString('hex'), '000000');
    assert.equal(pcrSelectionBitmap([23, 7, 7, 0]).toString('hex'), '810080');
    assert.equal(pcrSelectionBitmap([24]).toString('hex'), '00000001');
  });

  for (const bad of [-1, 1.5, 32, Number.NaN]) {
    test(`ROT_INPUT_INVALID/PCR index ${bad}`, () =>
      assertCode(() => pcrSelectionBitmap([bad]), 'ROT_INPUT_INVALID'));
  }

  test('pcrsOfBitmap is the inverse of pcrSelectionBitmap', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 31 })), (pcrs) => {
        assert.deepEqual(
          pcrsOfBitmap(pcrSelectionBitmap(pcrs)),
          [...pcrs].sort((a, b) => a - b),
        );
      }),
    );
  });

  test('pcrDigest is SHA-256 over the values concatenated; extendPcrValue is SHA-256(old ‖ digest)', () => {
    const a = Buffer.alloc(32, 1);
    const b = Buffer.alloc(32, 2);
    assert.deepEqual(
      pcrDigest([a, b]),
      createHash('sha256')
        .update(Buffer.concat([a, b]))
        .digest(),
    );
    assert.deepEqual(
      extendPcrValue(a, b),
      createHash('sha256')
        .update(Buffer.concat([a, b]))
        .digest(),
    );
    assertCode(() => extendPcrValue(a, Buffer.alloc(31)), 'ROT_INPUT_INVALID');
  });
});

describe('TPM2B_PUBLIC (ECC)', () => {
  test('a tpm2-tools AK parses to its fields, its key and the name tpm2-tools computed', () => {
    const decoded = decodeTpm2bPublic(REAL.akPublic);
    assert.deepEqual(decoded.name, REAL.akName);
    assert.equal(
      decoded.area.objectAttributes,
      TPMA_OBJECT.fixedTPM |
        TPMA_OBJECT.fixedParent |
        TPMA_OBJECT.sensitiveDataOrigin |
        TPMA_OBJECT.userWithAuth |
        TPMA_OBJECT.restricted |
        TPMA_OBJECT.sign,
    );
    assert.deepEqual(decoded.area.scheme, { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 });
    assert.equal(decoded.area.symmetric, null);
    assert.equal(decoded.area.kdf, null);
    assert.equal(decoded.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const point = keyToEccPoint(decoded.publicKey);
    assert.deepEqual(point.x, decoded.area.x);
    assert.deepEqual(point.y, decoded.area.y);
  });

  test('encodeTpm2bPublic reproduces the TPM bytes exactly', () => {
    const decoded = decodeTpm2bPublic(REAL.akPublic);
    assert.deepEqual(encodeTpm2bPublic(decoded.area), REAL.akPublic);
    assert.deepEqual(tpmName(encodeEccPublic(decoded.area)), REAL.akName);
  });

  test('symmetric, ECDAA and KDF parameters round-trip', () => {
    const area: EccPublicArea = {
      ...decodeTpm2bPublic(REAL.akPublic).area,
      symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB },
      scheme: { scheme: TPM_ALG.ECDAA, hashAlg: TPM_ALG.SHA256, count: 7 },
      kdf: { scheme: 0x0020, hashAlg: TPM_ALG.SHA256 },
    };
    assert.deepEqual(decodeEccPublic(encodeEccPublic(area)).area, area);
  });

  /** The AK's TPMT_PUBLIC with `patch` applied at `offset` (offsets into TPM2B_PUBLIC). */
  const patched = (offset: number, bytes: string) => {
    const b = Buffer.from(REAL.akPublic);
    hex(bytes).copy(b, offset);
    return b;
  };
  const refusals: [ErrorCode, string, Buffer][] = [
    ['TPM_KEY_UNSUPPORTED', 'an RSA key', patched(2, '0001')],
    ['TPM_KEY_UNSUPPORTED', 'a SHA-1 name', patched(4, '0004')],
    ['TPM_KEY_UNSUPPORTED', 'curve P-384', patched(18, '0004')],
    [
      'TPM_KEY_UNSUPPORTED',
      'a point not on the curve',
      patched(89, REAL.akPublic[89] === 0xff ? '00' : 'ff'),
    ],
    ['TPM_STRUCTURE_INVALID', 'truncated', REAL.akPublic.subarray(0, 60)],
    ['TPM_STRUCTURE_INVALID', 'a byte after TPM2B_PUBLIC', Buffer.concat([REAL.akPublic, hex('00')])],
    [
      'TPM_STRUCTURE_INVALID',
      'a byte after TPMT_PUBLIC inside the size',
      Buffer.concat([hex('0059'), REAL.akPublic.subarray(2), hex('00')]),
    ],
    ['TPM_STRUCTURE_INVALID', 'a size larger than the bytes', patched(0, '0100')],
    ['TPM_STRUCTURE_INVALID', 'unique.x larger than any curve', patched(22, '0100')],
    ['TPM_STRUCTURE_INVALID', 'empty', Buffer.alloc(0)],
  ];
  for (const [code, name, bytes] of refusals) {
    test(`${code}/${name}`, () => assertCode(() => decodeTpm2bPublic(bytes), code));
  }

  test('arbitrary bytes either parse or are refused with a HeptadError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => parsesOrRefuses(() => decodeTpm2bPublic(b))),
    );
    fc.assert(
      fc.property(fc.nat(REAL.akPublic.length - 1), fc.nat(255), (at, v) => {
        const b = Buffer.from(REAL.akPublic);
        b[at] = v;
        parsesOrRefuses(() => decodeTpm2bPublic(b));
      }),
    );
  });
});

describe('TPMS_ATTEST (quote)', () => {
  test('a tpm2-tools quote parses to its fields', () => {
    const q = decodeQuoteAttest(REAL.attest);
    assert.deepEqual(q.extraData, REAL.nonce);
    assert.equal(q.clock, 502n);
    assert.equal(q.resetCount, 1);
    assert.equal(q.restartCount, 0);
    assert.equal(q.safe, true);
    assert.equal(q.firmwareVersion, 0x2019102300163636n);
    assert.deepEqual(q.pcrSelect, [{ hashAlg: TPM_ALG.SHA256, pcrs: [0, 16], sizeofSelect: 3 }]);
    assert.equal(q.qualifiedSigner.length, 34);
  });

  test('encodeQuoteAttest reproduces the TPM bytes exactly', () => {
    const q = decodeQuoteAttest(REAL.attest);
    const again = encodeQuoteAttest({ ...q, pcrSelection: { hash: 'sha256', pcrs: [0, 16] } });
    assert.deepEqual(again, REAL.attest);
  });

  test('encode then decode gives the input back', () => {
    const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
    fc.assert(
      fc.property(
        fc.record({
          qualifiedSigner: bytes(66),
          extraData: bytes(64),
          clock: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          resetCount: fc.nat(),
          restartCount: fc.nat(),
          safe: fc.boolean(),
          firmwareVersion: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          pcrs: fc.uniqueArray(fc.integer({ min: 0, max: 23 })),
          pcrDigest: bytes(32),
        }),
        (input) => {
          const pcrs = [...input.pcrs].sort((a, b) => a - b);
          const { pcrs: _, ...fields } = input;
          const q = decodeQuoteAttest(
            encodeQuoteAttest({ ...fields, pcrSelection: { hash: 'sha256', pcrs } }),
          );
          assert.deepEqual(q, { ...fields, pcrSelect: [{ hashAlg: TPM_ALG.SHA256, pcrs, sizeofSelect: 3 }] });
        },
      ),
    );
  });

  test('refuses to encode fields larger than their TPM2B', () => {
    const q = decodeQuoteAttest(REAL.attest);
    const input: QuoteAttestInput = { ...q, pcrSelection: { hash: 'sha256', pcrs: [0] } };
    assertCode(() => encodeQuoteAttest({ ...input, extraData: Buffer.alloc(67) }), 'TPM_STRUCTURE_INVALID');
    assertCode(() => encodeQuoteAttest({ ...input, pcrDigest: Buffer.alloc(65) }), 'TPM_STRUCTURE_INVALID');
  });

  /** REAL.attest with `bytes` written at `offset`. */
  const patched = (offset: number, bytes: string) => {
    const b = Buffer.from(REAL.attest);
    hex(bytes).copy(b, offset);
    return b;
  };
  // Offsets: magic 0, type 4, qualifiedSigner 6 (2+34), extraData 42 (2+32), clockInfo 76 (17),
  // firmwareVersion 93, pcrSelect 101 (count 4, hash 2, sizeofSelect 1, bitmap 3), pcrDigest 111.
  const refusals: [ErrorCode, string, Buffer][] = [
    ['TPM_QUOTE_INVALID', 'wrong magic', patched(0, 'ff544348')],
    ['TPM_QUOTE_INVALID', 'type ATTEST_CERTIFY', patched(4, '8017')],
    ['TPM_STRUCTURE_INVALID', 'truncated in the PCR digest', REAL.attest.subarray(0, REAL.attest.length - 1)],
    ['TPM_STRUCTURE_INVALID', 'truncated in the magic', REAL.attest.subarray(0, 3)],
    ['TPM_STRUCTURE_INVALID', 'a trailing byte', Buffer.concat([REAL.attest, hex('00')])],
    ['TPM_STRUCTURE_INVALID', 'extraData size 0xffff', patched(42, 'ffff')],
    ['TPM_STRUCTURE_INVALID', 'extraData size larger than TPM2B_DATA', patched(42, '0043')],
    ['TPM_STRUCTURE_INVALID', 'qualifiedSigner size larger than TPM2B_NAME', patched(6, '0100')],
    ['TPM_STRUCTURE_INVALID', 'safe neither YES nor NO', patched(92, '02')],
    ['TPM_STRUCTURE_INVALID', 'PCR selection count 2^32-1', patched(101, 'ffffffff')],
    ['TPM_STRUCTURE_INVALID', 'sizeofSelect 200', patched(107, 'c8')],
    ['TPM_STRUCTURE_INVALID', 'pcrDigest size larger than a digest', patched(111, '0041')],
    ['TPM_STRUCTURE_INVALID', 'longer than any TPMS_ATTEST', Buffer.alloc(2048, 0xff)],
  ];
  for (const [code, name, bytes] of refusals) {
    test(`${code}/${name}`, () => assertCode(() => decodeQuoteAttest(bytes), code));
  }

  test('arbitrary bytes and single-byte changes either parse or are refused with a HeptadError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => parsesOrRefuses(() => decodeQuoteAttest(b))),
    );
    fc.assert(
      fc.property(fc.nat(REAL.attest.length - 1), fc.nat(255), (at, v) => {
        const b = Buffer.from(REAL.attest);
        b[at] = v;
        parsesOrRefuses(() => decodeQuoteAttest(b));
      }),
    );
    fc.assert(
      fc.property(fc.nat(REAL.attest.length), (n) =>
        parsesOrRefuses(() => decodeQuoteAttest(REAL.attest.subarray(0, n))),
      ),
    );
  });
});

describe('TPMT_SIGNATURE (ECDSA)', () => {
  test('a tpm2-tools signature parses to sigAlg, hash, r and s', () => {
    const sig = decodeSignature(REAL.signature);
    assert.equal(sig.sigAlg, TPM_ALG.ECDSA);
    assert.equal(sig.hashAlg, TPM_ALG.SHA256);
    assert.equal(sig.r.length, 32);
    assert.equal(sig.s.length, 32);
  });

  test('encodeEcdsaSignature reproduces the TPM bytes from P1363 and from DER', () => {
    const sig = decodeSignature(REAL.signature);
    const p1363 = toP1363(sig);
    assert.ok(p1363);
    assert.deepEqual(encodeEcdsaSignature(p1363), REAL.signature);
    assert.deepEqual(encodeEcdsaSignature(p1363, 'ieee-p1363'), REAL.signature);
    const der = toDerSignature(sig);
    assert.deepEqual(encodeEcdsaSignature(der), REAL.signature);
    assert.deepEqual(encodeEcdsaSignature(der, 'der'), REAL.signature);
    assert.deepEqual(derToP1363(der), p1363);
  });

  test('DER signatures from node:crypto round-trip, r and s padded to 32 bytes', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (let i = 0; i < 200; i++) {
      const der = sign('sha256', Buffer.from([i]), privateKey);
      const p1363 = sign('sha256', Buffer.from([i]), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const fromDer = decodeSignature(encodeEcdsaSignature(der));
      assert.equal(fromDer.r.length, 32);
      assert.equal(fromDer.s.length, 32);
      assert.deepEqual(toDerSignature(fromDer), der);
      assert.equal(decodeSignature(encodeEcdsaSignature(p1363)).r.length, 32);
    }
  });

  const refusals: [ErrorCode, string, () => unknown][] = [
    ['TPM_QUOTE_SIGNATURE_INVALID', 'an RSASSA signature', () => decodeSignature(hex('0014000b0002aabb'))],
    ['TPM_QUOTE_SIGNATURE_INVALID', 'a NULL signature', () => decodeSignature(hex('0010'))],
    ['TPM_STRUCTURE_INVALID', 'empty', () => decodeSignature(Buffer.alloc(0))],
    ['TPM_STRUCTURE_INVALID', 'truncated', () => decodeSignature(REAL.signature.subarray(0, 40))],
    [
      'TPM_STRUCTURE_INVALID',
      'a trailing byte',
      () => decodeSignature(Buffer.concat([REAL.signature, hex('00')])),
    ],
    ['TPM_STRUCTURE_INVALID', 'r size beyond the bytes', () => decodeSignature(hex('0018000b0040aa'))],
    [
      'TPM_STRUCTURE_INVALID',
      'r size larger than any curve',
      () => decodeSignature(hex(`0018000b0080${'00'.repeat(128)}`)),
    ],
    ['TPM_STRUCTURE_INVALID', 'DER that is not a SEQUENCE', () => derToP1363(hex('0206020101020101'))],
    ['TPM_STRUCTURE_INVALID', 'DER with a negative r', () => derToP1363(hex('3006020180020101'))],
    ['TPM_STRUCTURE_INVALID', 'DER with a non-minimal r', () => derToP1363(hex('300702020001020101'))],
    ['TPM_STRUCTURE_INVALID', 'DER with trailing bytes', () => derToP1363(hex('300602010102010100'))],
    [
      'TPM_STRUCTURE_INVALID',
      'a P1363 value of 63 bytes',
      () => encodeEcdsaSignature(Buffer.alloc(63), 'ieee-p1363'),
    ],
  ];
  for (const [code, name, fn] of refusals) {
    test(`${code}/${name}`, () => assertCode(fn, code));
  }

  test('arbitrary bytes either parse or are refused with a HeptadError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => parsesOrRefuses(() => decodeSignature(b))),
    );
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => parsesOrRefuses(() => derToP1363(b))));
  });
});
