/**
 * A small, strict DER (ITU-T X.690 Distinguished Encoding Rules) reader and writer: just what the
 * Heptad PKI needs for PKCS#10 requests, certificates and CRLs, and no more.
 *
 * The reader accepts exactly one encoding of a value, because certificate and CSR signatures
 * are computed over bytes: a lenient reader lets two parsers (ours and OpenSSL's) see different
 * values in the same signed bytes. So it refuses indefinite lengths (X.690 §10.1), non-minimal
 * length octets (§10.1), high tag numbers (not used by any structure here), trailing bytes,
 * elements that overrun their parent, nesting deeper than a limit, and, for the universal types
 * with a canonical form (BOOLEAN, INTEGER, BIT STRING, NULL, OBJECT IDENTIFIER), any
 * non-canonical content (§8.3.2, §8.6.2.2, §10.2, §11.1, §11.2). It does not check that SET OF
 * members are sorted (§11.6): issuers in the field do not all sort, and no Heptad decision
 * depends on the order.
 *
 * Every refusal is a HeptadError PKI_DER_MALFORMED; callers that parse a particular structure
 * (a CSR, a certificate) wrap it in their own code.
 */
import { HeptadError } from '../errors.ts';

/** Identifier octets used here (X.690 §8.1.2: class bits 7-6, constructed bit 5, number 4-0). */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

const CONSTRUCTED = 0x20;
const CLASS_MASK = 0xc0;
const CLASS_UNIVERSAL = 0x00;
const CLASS_CONTEXT = 0x80;

/** Nesting limit of the reader; the deepest Heptad structure (a CSR attribute) is 8 levels. */
export const DEFAULT_MAX_DER_DEPTH = 16;

/** One TLV: where it is in the buffer. Content is `buffer.subarray(contentStart, end)`. */
export interface DerElement {
  /** The single identifier octet. */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

function malformed(reason: string, offset: number): HeptadError {
  return new HeptadError('PKI_DER_MALFORMED', `DER: ${reason} at offset ${offset}`, {
    detail: { offset },
  });
}

/**
 * Reads the one TLV starting at `offset`, which must end at or before `limit`. Lengths are
 * definite and minimal (X.690 §10.1); a length that runs past `limit` (truncation, or a huge
 * length meant to make the reader allocate or over-read) is refused before anything is read.
 */
export function readElement(buf: Uint8Array, offset: number, limit: number = buf.length): DerElement {
  if (offset + 2 > limit) throw malformed('truncated header', offset);
  const tag = buf[offset] as number;
  // Tag number 31 means "high tag number form" (§8.1.2.4); tag 0 is end-of-contents, which only
  // exists in indefinite encodings. Neither appears in any structure Heptad reads.
  if ((tag & 0x1f) === 0x1f) throw malformed('high tag number form', offset);
  if (tag === 0x00) throw malformed('end-of-contents octets', offset);
  const first = buf[offset + 1] as number;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw malformed('indefinite length', offset + 1);
    // Four length octets already exceed any buffer this reader is given.
    if (count > 4) throw malformed('length of more than 4 octets', offset + 1);
    if (offset + 2 + count > limit) throw malformed('truncated length', offset + 1);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[offset + 2 + i] as number);
    // DER: the long form only for lengths ≥ 128, and with no leading zero octet (§10.1).
    if (length < 0x80 || (buf[offset + 2] as number) === 0) throw malformed('non-minimal length', offset + 1);
    contentStart = offset + 2 + count;
  }
  const end = contentStart + length;
  if (end > limit) throw malformed('length runs past the end of the enclosing data', offset + 1);
  return { tag, start: offset, contentStart, end };
}

/** Checks the content rules DER sets for the universal primitive types (X.690 §8, §10, §11). */
function checkPrimitive(buf: Uint8Array, el: DerElement): void {
  const len = el.end - el.contentStart;
  const c = el.contentStart;
  switch (el.tag) {
    case TAG.BOOLEAN: {
      // §11.1: TRUE is all ones.
      const v = buf[c];
      if (len !== 1 || (v !== 0x00 && v !== 0xff)) throw malformed('BOOLEAN not 00 or FF', el.start);
      break;
    }
    case TAG.INTEGER: {
      // §8.3.2: the first 9 bits are never all zeros or all ones.
      if (len === 0) throw malformed('empty INTEGER', el.start);
      if (len > 1) {
        const a = buf[c] as number;
        const b = (buf[c + 1] as number) & 0x80;
        if ((a === 0x00 && b === 0) || (a === 0xff && b !== 0))
          throw malformed('non-minimal INTEGER', el.start);
      }
      break;
    }
    case TAG.BIT_STRING: {
      // §8.6.2: an unused-bits octet 0–7, zero when empty; §11.2.1: unused bits are zero.
      if (len === 0) throw malformed('BIT STRING without unused-bits octet', el.start);
      const unused = buf[c] as number;
      if (unused > 7 || (len === 1 && unused !== 0)) throw malformed('bad BIT STRING unused bits', el.start);
      if (unused > 0 && ((buf[el.end - 1] as number) & ((1 << unused) - 1)) !== 0) {
        throw malformed('BIT STRING unused bits not zero', el.start);
      }
      break;
    }
    case TAG.NULL:
      if (len !== 0) throw malformed('NULL with content', el.start);
      break;
    case TAG.OID: {
      // §8.19.2: each subidentifier in as few octets as possible; the last octet ends one.
      if (len === 0) throw malformed('empty OBJECT IDENTIFIER', el.start);
      if (((buf[el.end - 1] as number) & 0x80) !== 0)
        throw malformed('truncated OBJECT IDENTIFIER', el.start);
      let startOfSub = true;
      for (let i = c; i < el.end; i++) {
        const o = buf[i] as number;
        if (startOfSub && o === 0x80) throw malformed('non-minimal OBJECT IDENTIFIER', el.start);
        startOfSub = (o & 0x80) === 0;
      }
      break;
    }
    default:
      break;
  }
}

/** Universal tags that DER requires to be primitive (§10.2: strings are never constructed). */
function mustBePrimitive(tagNumber: number): boolean {
  return tagNumber !== 0x10 && tagNumber !== 0x11;
}

function walk(buf: Uint8Array, el: DerElement, depth: number, maxDepth: number): void {
  if (depth > maxDepth) throw malformed('nesting too deep', el.start);
  const cls = el.tag & CLASS_MASK;
  const constructed = (el.tag & CONSTRUCTED) !== 0;
  if (cls === CLASS_UNIVERSAL) {
    const num = el.tag & 0x1f;
    if (constructed && mustBePrimitive(num))
      throw malformed('constructed encoding of a primitive type', el.start);
    if (!constructed && !mustBePrimitive(num)) throw malformed('primitive SEQUENCE or SET', el.start);
    if (!constructed) checkPrimitive(buf, el);
  }
  if (!constructed) return;
  let at = el.contentStart;
  while (at < el.end) {
    const child = readElement(buf, at, el.end);
    walk(buf, child, depth + 1, maxDepth);
    at = child.end;
  }
}

export interface ReadDerOptions {
  /** Deepest nesting accepted; the outermost element is depth 1. */
  readonly maxDepth?: number;
}

/**
 * Reads `buf` as exactly one DER element (no trailing bytes) and checks the whole tree below it
 * (every constructed element is filled exactly by its children, depth ≤ maxDepth, canonical
 * primitives). After this, `childrenOf` on any element of the tree cannot fail.
 */
export function readDer(buf: Uint8Array, options: ReadDerOptions = {}): DerElement {
  const root = readElement(buf, 0, buf.length);
  if (root.end !== buf.length) throw malformed('trailing bytes after the DER element', root.end);
  walk(buf, root, 1, options.maxDepth ?? DEFAULT_MAX_DER_DEPTH);
  return root;
}

/** The elements inside a constructed element, in order; they fill its content exactly. */
export function childrenOf(buf: Uint8Array, el: DerElement): DerElement[] {
  if ((el.tag & CONSTRUCTED) === 0) throw malformed('expected a constructed element', el.start);
  const out: DerElement[] = [];
  let at = el.contentStart;
  while (at < el.end) {
    const child = readElement(buf, at, el.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** The children of `el`, which must be tagged `tag`, checked to be exactly `count` in number. */
export function expectChildren(
  buf: Uint8Array,
  el: DerElement | undefined,
  tag: number,
  count: number,
): DerElement[] {
  const e = expectTag(el, tag);
  const kids = childrenOf(buf, e);
  if (kids.length !== count) throw malformed(`expected ${count} elements, found ${kids.length}`, e.start);
  return kids;
}

/** Narrows a possibly missing element to one with the given tag. */
export function expectTag(el: DerElement | undefined, tag: number): DerElement {
  if (el === undefined) throw malformed(`missing element (tag 0x${hex2(tag)})`, -1);
  if (el.tag !== tag) throw malformed(`expected tag 0x${hex2(tag)}, found 0x${hex2(el.tag)}`, el.start);
  return el;
}

/** The content octets (a view, not a copy). */
export function contentOf(buf: Uint8Array, el: DerElement): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + el.contentStart, el.end - el.contentStart);
}

/** The whole TLV, header included (a view, not a copy). */
export function encodingOf(buf: Uint8Array, el: DerElement): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + el.start, el.end - el.start);
}

/** Dotted-decimal text of an OBJECT IDENTIFIER's content (X.690 §8.19). */
export function decodeOid(content: Uint8Array): string {
  const parts: number[] = [];
  let v = 0;
  for (const o of content) {
    v = v * 128 + (o & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw malformed('OBJECT IDENTIFIER arc too large', -1);
    if ((o & 0x80) === 0) {
      if (parts.length === 0) {
        // §8.19.4: the first subidentifier packs the first two arcs.
        const first = v < 40 ? 0 : v < 80 ? 1 : 2;
        parts.push(first, v - first * 40);
      } else {
        parts.push(v);
      }
      v = 0;
    }
  }
  return parts.join('.');
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

// ---------------------------------------------------------------------------------------------
// Writer

function unencodable(reason: string): HeptadError {
  return new HeptadError('PKI_DER_UNENCODABLE', `DER: ${reason}`);
}

/** The length octets for `n` content octets: short form below 128, else minimal long form. */
export function derLength(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw unencodable(`bad length ${n}`);
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if (bytes.length > 4) throw unencodable(`length ${n} too large`);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV with a single-octet identifier. */
export function derTlv(tag: number, ...content: readonly Uint8Array[]): Buffer {
  if ((tag & 0x1f) === 0x1f || tag < 0 || tag > 0xff) throw unencodable(`bad tag ${tag}`);
  let total = 0;
  for (const c of content) total += c.length;
  return Buffer.concat([Buffer.from([tag]), derLength(total), ...content]);
}

export function derSequence(...children: readonly Uint8Array[]): Buffer {
  return derTlv(TAG.SEQUENCE, ...children);
}

/** SET OF: members in ascending order of their encodings, as DER requires (X.690 §11.6). */
export function derSet(...children: readonly Uint8Array[]): Buffer {
  const sorted = [...children].sort((a, b) => Buffer.compare(a, b));
  return derTlv(TAG.SET, ...sorted);
}

/**
 * A non-negative INTEGER (X.690 §8.3): a number, a bigint, or an unsigned big-endian magnitude.
 * Leading zero octets are dropped and one is added when the top bit is set, so the encoding is
 * minimal and the value stays positive (RFC 5280 §4.1.2.2 wants positive serial numbers).
 */
export function derInteger(value: number | bigint | Uint8Array): Buffer {
  let mag: Uint8Array;
  if (typeof value === 'number' || typeof value === 'bigint') {
    if (typeof value === 'number' && !Number.isSafeInteger(value))
      throw unencodable(`not an integer: ${value}`);
    let v = BigInt(value);
    if (v < 0n) throw unencodable('negative INTEGER');
    const bytes: number[] = [];
    do {
      bytes.unshift(Number(v & 0xffn));
      v >>= 8n;
    } while (v > 0n);
    mag = Uint8Array.from(bytes);
  } else {
    mag = value;
  }
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  const trimmed = mag.length === 0 ? Uint8Array.of(0) : mag.subarray(i);
  const pad = ((trimmed[0] as number) & 0x80) !== 0;
  return derTlv(TAG.INTEGER, ...(pad ? [Uint8Array.of(0)] : []), trimmed);
}

export function derBoolean(value: boolean): Buffer {
  return derTlv(TAG.BOOLEAN, Uint8Array.of(value ? 0xff : 0x00));
}

export function derNull(): Buffer {
  return Buffer.from([TAG.NULL, 0]);
}

/** An OBJECT IDENTIFIER from dotted-decimal text (X.690 §8.19). */
export function derOid(dotted: string): Buffer {
  if (!/^[0-2](?:\.(?:0|[1-9]\d*))+$/.test(dotted)) throw unencodable(`bad OID "${dotted}"`);
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const [a0 = 0n, a1 = 0n, ...rest] = arcs;
  if (a0 < 2n && a1 >= 40n) throw unencodable(`bad OID "${dotted}"`);
  const out: number[] = [];
  for (const arc of [a0 * 40n + a1, ...rest]) {
    const sub: number[] = [];
    let v = arc;
    do {
      sub.unshift(Number(v & 0x7fn) | (sub.length > 0 ? 0x80 : 0));
      v >>= 7n;
    } while (v > 0n);
    out.push(...sub);
  }
  return derTlv(TAG.OID, Uint8Array.from(out));
}

export function derUtf8String(s: string): Buffer {
  if (!s.isWellFormed()) throw unencodable('UTF8String with a lone surrogate');
  return derTlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'));
}

/** PrintableString's alphabet (X.680 §41.4, Table 10). */
export const PRINTABLE_STRING_RE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export function derPrintableString(s: string): Buffer {
  if (!PRINTABLE_STRING_RE.test(s)) throw unencodable('character outside PrintableString');
  return derTlv(TAG.PRINTABLE_STRING, Buffer.from(s, 'latin1'));
}

/** IA5String (ASCII) content, as used by URI general names (RFC 5280 §4.2.1.6). */
export function ia5Bytes(s: string): Buffer {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the IA5 range starts at NUL
  if (!/^[\x00-\x7f]*$/.test(s)) throw unencodable('character outside IA5String');
  return Buffer.from(s, 'latin1');
}

/** A BIT STRING holding whole octets (or with `unusedBits` trailing bits unused, zeroed). */
export function derBitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (
    !Number.isInteger(unusedBits) ||
    unusedBits < 0 ||
    unusedBits > 7 ||
    (bytes.length === 0 && unusedBits)
  ) {
    throw unencodable('bad BIT STRING unused bits');
  }
  const copy = Buffer.from(bytes);
  if (unusedBits > 0) copy[copy.length - 1] = (copy[copy.length - 1] as number) & (0xff << unusedBits);
  return derTlv(TAG.BIT_STRING, Uint8Array.of(unusedBits), copy);
}

export function derOctetString(bytes: Uint8Array): Buffer {
  return derTlv(TAG.OCTET_STRING, bytes);
}

/** `[n] EXPLICIT inner`: a constructed context tag around one encoded element. */
export function derExplicit(tagNumber: number, ...inner: readonly Uint8Array[]): Buffer {
  if (!Number.isInteger(tagNumber) || tagNumber < 0 || tagNumber > 30) throw unencodable('bad context tag');
  return derTlv(CLASS_CONTEXT | CONSTRUCTED | tagNumber, ...inner);
}

/** `[n] IMPLICIT` of a primitive type: the content octets under a primitive context tag. */
export function derImplicit(tagNumber: number, content: Uint8Array): Buffer {
  if (!Number.isInteger(tagNumber) || tagNumber < 0 || tagNumber > 30) throw unencodable('bad context tag');
  return derTlv(CLASS_CONTEXT | tagNumber, content);
}

/** `[n] IMPLICIT` of a constructed type (SEQUENCE OF, SET OF): children under a constructed context tag. */
export function derImplicitConstructed(tagNumber: number, ...children: readonly Uint8Array[]): Buffer {
  return derExplicit(tagNumber, ...children);
}

// ---------------------------------------------------------------------------------------------
// Time (RFC 5280 §4.1.2.5)

export type TimeKind = 'utc' | 'generalized';

/**
 * RFC 5280 §4.1.2.5: dates through 2049 MUST be UTCTime, dates in 2050 or later MUST be
 * GeneralizedTime; UTCTime cannot say years before 1950, so those are GeneralizedTime too.
 */
export function timeKindOf(date: Date): TimeKind {
  const y = date.getUTCFullYear();
  return y >= 1950 && y <= 2049 ? 'utc' : 'generalized';
}

/**
 * The time text, in Zulu with seconds and no fraction (RFC 5280 §4.1.2.5.1, §4.1.2.5.2):
 * YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ. Milliseconds are dropped (rounded down).
 */
export function timeText(date: Date, kind: TimeKind = timeKindOf(date)): string {
  const t = date.getTime();
  if (!Number.isFinite(t)) throw unencodable('invalid Date');
  const d = new Date(Math.floor(t / 1000) * 1000);
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999) throw unencodable(`year ${y} cannot be encoded`);
  if (kind === 'utc' && (y < 1950 || y > 2049)) throw unencodable(`year ${y} cannot be a UTCTime`);
  const p2 = (n: number) => (n < 10 ? `0${n}` : `${n}`);
  const year = kind === 'utc' ? p2(y % 100) : String(y).padStart(4, '0');
  return `${year}${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}Z`;
}

export function derUtcTime(date: Date): Buffer {
  return derTlv(TAG.UTC_TIME, Buffer.from(timeText(date, 'utc'), 'latin1'));
}

export function derGeneralizedTime(date: Date): Buffer {
  return derTlv(TAG.GENERALIZED_TIME, Buffer.from(timeText(date, 'generalized'), 'latin1'));
}

/** `Time` as RFC 5280 §4.1.2.5 chooses it for this date. */
export function derTime(date: Date): Buffer {
  return timeKindOf(date) === 'utc' ? derUtcTime(date) : derGeneralizedTime(date);
}
