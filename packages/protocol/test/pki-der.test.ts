// The DER reader refuses every encoding but the one canonical form (truncation, trailing bytes,
// indefinite and non-minimal lengths, lengths past the end, deep nesting, non-canonical
// primitives), and the writer produces that form (minimal INTEGERs, sorted SETs, RFC 5280 time
// choice). Property runs: arbitrary bytes are read or refused with a coded error, and written
// values read back unchanged.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { HeptadError } from '../src/errors.ts';
import {
  childrenOf,
  contentOf,
  decodeOid,
  derBitString,
  derBoolean,
  derExplicit,
  derGeneralizedTime,
  derInteger,
  derLength,
  derNull,
  derOctetString,
  derOid,
  derPrintableString,
  derSequence,
  derSet,
  derTime,
  derUtcTime,
  derUtf8String,
  readDer,
  readElement,
  TAG,
  timeKindOf,
} from '../src/pki/der.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function assertCode(fn: () => unknown, code: string, label?: string): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof HeptadError, `${label ?? ''}: not a HeptadError: ${String(e)}`);
      assert.equal(e.code, code, label);
      return true;
    },
    label,
  );
}

describe('readDer refuses non-canonical or broken encodings', () => {
  const cases: Array<[name: string, bytes: string]> = [
    ['malformed/empty input', ''],
    ['malformed/header only', '30'],
    ['malformed/truncated content', '3004 020101'],
    ['malformed/trailing bytes', '30030201 01 00'],
    ['malformed/indefinite length', '3080 020101 0000'],
    ['malformed/long form for a short length', '3081 03 020101'],
    ['malformed/long form with a leading zero octet', '3082 0003 020101'],
    ['malformed/more than 4 length octets', '3085 0000000003 020101'],
    ['malformed/length past the end (huge)', '3084 ffffffff 020101'],
    ['malformed/child overruns its parent', '3003 020201'],
    ['malformed/high tag number form', '1f01 00'],
    ['malformed/end-of-contents tag', '0000'],
    ['malformed/constructed INTEGER', '2203 020101'],
    ['malformed/primitive SEQUENCE', '1000'],
    ['malformed/empty INTEGER', '0200'],
    ['malformed/INTEGER with a redundant leading zero', '020200 7f'],
    ['malformed/INTEGER with a redundant leading ff', '0202ff 80'],
    ['malformed/BOOLEAN neither 00 nor ff', '010101'],
    ['malformed/NULL with content', '050100'],
    ['malformed/BIT STRING without unused-bits octet', '0300'],
    ['malformed/BIT STRING with 8 unused bits', '030208 00'],
    ['malformed/BIT STRING with set unused bits', '030201 01'],
    ['malformed/OID ending mid-subidentifier', '060281 81'],
    ['malformed/OID with a 0x80 padding octet', '060380 0101'],
  ];
  for (const [name, bytes] of cases) {
    test(name, () => assertCode(() => readDer(hex(bytes)), 'PKI_DER_MALFORMED', name));
  }

  test('malformed/nesting deeper than the limit (default 16, or as given)', () => {
    let deep: Buffer = derNull();
    for (let i = 0; i < 40; i++) deep = derSequence(deep);
    assertCode(() => readDer(deep), 'PKI_DER_MALFORMED');
    let ok: Buffer = derNull();
    for (let i = 0; i < 15; i++) ok = derSequence(ok);
    assert.equal(readDer(ok).end, ok.length, '16 levels pass');
    assertCode(() => readDer(ok, { maxDepth: 8 }), 'PKI_DER_MALFORMED');
  });

  test('every strict prefix of a valid structure is refused', () => {
    const good = derSequence(
      derInteger(1234567),
      derOid('1.2.840.10045.4.3.2'),
      derOctetString(Buffer.alloc(200, 7)),
    );
    readDer(good);
    for (let n = 0; n < good.length; n++)
      assertCode(() => readDer(good.subarray(0, n)), 'PKI_DER_MALFORMED', `n=${n}`);
  });

  test('accepts canonical encodings and walks children exactly', () => {
    const buf = hex('3011 020100 0101ff 0500 06032a0304 030200ff');
    const root = readDer(buf);
    const kids = childrenOf(buf, root);
    assert.deepEqual(
      kids.map((k) => k.tag),
      [TAG.INTEGER, TAG.BOOLEAN, TAG.NULL, TAG.OID, TAG.BIT_STRING],
    );
    assert.equal(decodeOid(contentOf(buf, kids[3] as never)), '1.2.3.4');
    const long = derOctetString(Buffer.alloc(300));
    const el = readElement(long, 0);
    assert.equal(el.contentStart, 4);
    assert.equal(el.end, 304);
  });
});

describe('DER writer', () => {
  test('derLength is short below 128 and minimal long form above', () => {
    assert.deepEqual(derLength(0), hex('00'));
    assert.deepEqual(derLength(127), hex('7f'));
    assert.deepEqual(derLength(128), hex('8180'));
    assert.deepEqual(derLength(255), hex('81ff'));
    assert.deepEqual(derLength(256), hex('820100'));
    assert.deepEqual(derLength(65536), hex('83010000'));
  });

  test('derInteger is minimal and positive for numbers, bigints and magnitudes', () => {
    assert.deepEqual(derInteger(0), hex('020100'));
    assert.deepEqual(derInteger(127), hex('02017f'));
    assert.deepEqual(derInteger(128), hex('02020080'));
    assert.deepEqual(derInteger(256), hex('02020100'));
    assert.deepEqual(derInteger(2n ** 64n), hex('0209010000000000000000'));
    assert.deepEqual(derInteger(hex('0000ff')), hex('020200ff'));
    assert.deepEqual(derInteger(hex('7f01')), hex('02027f01'));
    assertCode(() => derInteger(-1), 'PKI_DER_UNENCODABLE');
    assertCode(() => derInteger(1.5), 'PKI_DER_UNENCODABLE');
  });

  test('derOid matches known encodings and decodeOid inverts it', () => {
    assert.deepEqual(derOid('1.2.840.10045.4.3.2'), hex('06082a8648ce3d040302'));
    assert.deepEqual(derOid('2.5.29.37'), hex('0603551d25'));
    assert.deepEqual(derOid('2.999.3'), hex('0603883703'));
    for (const oid of ['1.2.840.10045.2.1', '2.5.4.3', '1.3.6.1.5.5.7.3.2', '2.999.1234567890123']) {
      const enc = derOid(oid);
      assert.equal(decodeOid(contentOf(enc, readDer(enc))), oid);
    }
    for (const bad of ['', '1', '3.1', '1.40', '1.2.', '1.02'])
      assertCode(() => derOid(bad), 'PKI_DER_UNENCODABLE', bad);
  });

  test('derSet sorts its members (X.690 §11.6); derSequence keeps order', () => {
    const a = derInteger(2);
    const b = derInteger(1);
    assert.deepEqual(derSet(a, b), Buffer.concat([hex('3106'), b, a]));
    assert.deepEqual(derSequence(a, b), Buffer.concat([hex('3006'), a, b]));
  });

  test('strings, BIT STRING, BOOLEAN, context tags', () => {
    assert.deepEqual(derUtf8String('é'), hex('0c02c3a9'));
    assert.deepEqual(derPrintableString('Ab 1'), hex('130441622031'));
    assertCode(() => derPrintableString('a_b'), 'PKI_DER_UNENCODABLE');
    assertCode(() => derUtf8String('\ud800'), 'PKI_DER_UNENCODABLE');
    assert.deepEqual(derBitString(hex('80'), 7), hex('03020780'));
    assert.deepEqual(derBitString(hex('ff'), 1), hex('030201fe'), 'unused bits zeroed');
    assert.deepEqual(derBoolean(true), hex('0101ff'));
    assert.deepEqual(derExplicit(3, derNull()), hex('a3020500'));
  });

  test('time: UTCTime 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5), seconds, Zulu', () => {
    const t = (iso: string) => new Date(iso);
    assert.equal(timeKindOf(t('2049-12-31T23:59:59Z')), 'utc');
    assert.equal(timeKindOf(t('2050-01-01T00:00:00Z')), 'generalized');
    assert.equal(timeKindOf(t('1950-01-01T00:00:00Z')), 'utc');
    assert.equal(timeKindOf(t('1949-12-31T23:59:59Z')), 'generalized');
    assert.deepEqual(derTime(t('2049-12-31T23:59:59.999Z')), Buffer.from('\x17\x0d491231235959Z', 'latin1'));
    assert.deepEqual(derTime(t('2050-01-01T00:00:00Z')), Buffer.from('\x18\x0f20500101000000Z', 'latin1'));
    assert.deepEqual(derTime(t('1999-03-04T05:06:07Z')), Buffer.from('\x17\x0d990304050607Z', 'latin1'));
    assertCode(() => derUtcTime(t('2050-01-01T00:00:00Z')), 'PKI_DER_UNENCODABLE');
    assertCode(() => derTime(new Date(Number.NaN)), 'PKI_DER_UNENCODABLE');
    assert.deepEqual(
      derGeneralizedTime(t('2030-01-02T03:04:05Z')),
      Buffer.from('\x18\x0f20300102030405Z', 'latin1'),
    );
  });
});

describe('DER properties', () => {
  test('readDer on arbitrary bytes returns an element spanning them or throws PKI_DER_MALFORMED', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          assert.equal(readDer(bytes).end, bytes.length);
        } catch (e) {
          assert.ok(e instanceof HeptadError && e.code === 'PKI_DER_MALFORMED', String(e));
        }
      }),
      { numRuns: 5000 },
    );
  });

  test('non-negative integers written by derInteger read back to the same value', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 256n }), (n) => {
        const enc = derInteger(n);
        const content = contentOf(enc, readDer(enc));
        assert.equal(BigInt(`0x${content.toString('hex')}`), n);
      }),
    );
  });

  test('nested sequences of written values read back with the same shape', () => {
    const leaf = fc.oneof(
      fc.nat().map((n) => derInteger(n)),
      fc.uint8Array({ maxLength: 40 }).map((b) => derOctetString(b)),
      fc.boolean().map((b) => derBoolean(b)),
      fc.constant(derNull()),
    );
    const tree = fc.letrec<{ node: Buffer }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc.array(tie('node'), { maxLength: 4 }).map((kids) => derSequence(...kids)),
      ),
    })).node;
    fc.assert(
      fc.property(tree, (enc) => {
        assert.equal(readDer(enc, { maxDepth: 64 }).end, enc.length);
      }),
    );
  });
});
