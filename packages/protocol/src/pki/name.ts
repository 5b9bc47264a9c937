/**
 * X.501 Names as the Heptad PKI uses them (RFC 5280 §4.1.2.4, §4.1.2.6): written with one
 * commonName in a UTF8String, read strictly enough that a name cannot mean two things.
 */
import { type ErrorCode, HeptadError } from '../errors.ts';
import {
  childrenOf,
  contentOf,
  type DerElement,
  derOid,
  derSequence,
  derSet,
  derUtf8String,
  PRINTABLE_STRING_RE,
  readElement,
  TAG,
} from './der.ts';

/** ub-common-name (RFC 5280 Appendix A.1): at most 64 characters. */
export const MAX_COMMON_NAME_LENGTH = 64;

// C0 controls and DEL: a NUL inside a name is the classic way to make two parsers disagree
// ("good.example\0.evil.example"), and no Heptad name needs a control character.
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const CONTROL_RE = /[\x00-\x1f\x7f]/;

/** True for a commonName Heptad writes and accepts: 1–64 characters, well-formed, no controls. */
export function isAcceptableCommonName(cn: unknown): cn is string {
  if (typeof cn !== 'string' || !cn.isWellFormed() || CONTROL_RE.test(cn)) return false;
  // Characters, not UTF-16 units (ub-common-name counts characters).
  let n = 0;
  for (const _ of cn) n++;
  return n >= 1 && n <= MAX_COMMON_NAME_LENGTH;
}

/** Attribute types Heptad writes in names (RFC 5280 §4.1.2.4, Appendix A.1). */
export const NAME_OID = { commonName: '2.5.4.3', organizationName: '2.5.4.10' } as const;

/**
 * A Name with one attribute per RDN, in the order given, every value a UTF8String (RFC 5280
 * §4.1.2.6: new certificates use UTF8String).
 */
export function derName(attributes: readonly (readonly [oid: string, value: string])[]): Buffer {
  return derSequence(
    ...attributes.map(([oid, value]) => derSet(derSequence(derOid(oid), derUtf8String(value)))),
  );
}

/** `SEQUENCE { SET { SEQUENCE { id-at-commonName, UTF8String cn } } }`. */
export function derCommonNameOnly(cn: string): Buffer {
  return derName([[NAME_OID.commonName, cn]]);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const oidContents = new Map<string, Buffer>();
/** Content octets of an OID's encoding, memoized (a CSR check reads one per name attribute). */
function oidContentOf(oid: string): Buffer {
  let c = oidContents.get(oid);
  if (!c) {
    const encoded = derOid(oid);
    c = contentOf(encoded, readElement(encoded, 0));
    oidContents.set(oid, c);
  }
  return c;
}

/**
 * The one value of attribute `oid` (dotted) in an encoded Name, or undefined when it has none.
 * The Name must already have passed `readDer` (so its children are well-formed). Throws
 * `codes.malformed` when the Name is not a SEQUENCE OF non-empty SETs of (OID, value) pairs, and
 * `codes.subject` when the attribute appears more than once (which one would a relying party
 * use?), is not a UTF8String or PrintableString, or is refused by `isAcceptableCommonName`.
 */
export function readNameAttribute(
  buf: Uint8Array,
  name: DerElement,
  oid: string,
  codes: { readonly malformed: ErrorCode; readonly subject: ErrorCode },
): string | undefined {
  if (name.tag !== TAG.SEQUENCE) throw new HeptadError(codes.malformed, 'not a Name');
  const oidContent = oidContentOf(oid);
  let found: string | undefined;
  for (const rdn of childrenOf(buf, name)) {
    const atvs = rdn.tag === TAG.SET ? childrenOf(buf, rdn) : [];
    // RelativeDistinguishedName ::= SET SIZE (1..MAX) OF AttributeTypeAndValue
    if (atvs.length === 0) throw new HeptadError(codes.malformed, 'a name component is not a non-empty SET');
    for (const atv of atvs) {
      const pair = atv.tag === TAG.SEQUENCE ? childrenOf(buf, atv) : [];
      const [type, value] = pair;
      if (pair.length !== 2 || type?.tag !== TAG.OID || value === undefined) {
        throw new HeptadError(codes.malformed, 'a name attribute is not (type, value)');
      }
      if (!contentOf(buf, type).equals(oidContent)) continue;
      if (found !== undefined) throw new HeptadError(codes.subject, `the name has more than one ${oid}`);
      const raw = contentOf(buf, value);
      let text: string;
      if (value.tag === TAG.UTF8_STRING) {
        try {
          text = utf8.decode(raw);
        } catch (cause) {
          throw new HeptadError(codes.subject, `${oid} is not valid UTF-8`, { cause });
        }
      } else if (value.tag === TAG.PRINTABLE_STRING) {
        text = raw.toString('latin1');
        if (!PRINTABLE_STRING_RE.test(text))
          throw new HeptadError(codes.subject, `${oid} is not a valid PrintableString`);
      } else {
        throw new HeptadError(codes.subject, `${oid} is neither UTF8String nor PrintableString`);
      }
      if (!isAcceptableCommonName(text)) {
        throw new HeptadError(codes.subject, `${oid} is empty, too long or holds control characters`);
      }
      found = text;
    }
  }
  return found;
}

/** The one commonName of an encoded Name (see `readNameAttribute`). */
export function readCommonName(
  buf: Uint8Array,
  name: DerElement,
  codes: { readonly malformed: ErrorCode; readonly subject: ErrorCode },
): string | undefined {
  return readNameAttribute(buf, name, NAME_OID.commonName, codes);
}
