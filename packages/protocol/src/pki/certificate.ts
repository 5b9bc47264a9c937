/**
 * Reads the parts of an X.509 v3 certificate (RFC 5280 §4.1) that the Heptad PKI copies or
 * checks byte for byte: the TBSCertificate, the issuer and subject Names, the
 * SubjectPublicKeyInfo and the extensions. Signature and validity checks are left to
 * node:crypto's X509Certificate (OpenSSL); this reader only finds the bytes, strictly.
 */
import { HeptadError, isHeptadError } from '../errors.ts';
import {
  childrenOf,
  contentOf,
  type DerElement,
  decodeOid,
  encodingOf,
  expectChildren,
  expectTag,
  readDer,
  TAG,
} from './der.ts';

export interface CertificateExtension {
  readonly critical: boolean;
  /** The extnValue content: the DER of the extension's own structure. */
  readonly value: Buffer;
}

export interface CertificateParts {
  /** The signed TBSCertificate, header included. */
  readonly tbs: Buffer;
  /** serialNumber content octets. */
  readonly serial: Buffer;
  /** The signature AlgorithmIdentifier inside the TBSCertificate, header included. */
  readonly signatureAlgorithm: Buffer;
  readonly issuerDer: Buffer;
  readonly subjectDer: Buffer;
  readonly spkiDer: Buffer;
  /** Extensions by dotted OID (RFC 5280 §4.2: an extension appears at most once). */
  readonly extensions: ReadonlyMap<string, CertificateExtension>;
}

/** `[0] EXPLICIT Version`, `[3] EXPLICIT Extensions` (RFC 5280 §4.1). */
const VERSION_TAG = 0xa0;
const EXTENSIONS_TAG = 0xa3;
const UNIQUE_ID_TAGS = new Set([0x81, 0xa1, 0x82, 0xa2]);

/** The parts of a DER certificate; PKI_CERT_MALFORMED when it is not a strict-DER v3 certificate. */
export function readCertificateParts(der: Uint8Array): CertificateParts {
  try {
    const root = readDer(der);
    const [tbs, outerAlgorithm, signature] = expectChildren(der, root, TAG.SEQUENCE, 3);
    expectTag(outerAlgorithm, TAG.SEQUENCE);
    expectTag(signature, TAG.BIT_STRING);
    const fields = childrenOf(der, expectTag(tbs, TAG.SEQUENCE));
    const [version, serial, algorithm, issuer, validity, subject, spki, ...rest] = fields;
    // Only v3 (the version INTEGER 2): Heptad certificates all carry extensions.
    const [v] = expectChildren(der, version, VERSION_TAG, 1);
    const vContent = contentOf(der, expectTag(v, TAG.INTEGER));
    if (vContent.length !== 1 || vContent[0] !== 2)
      throw new HeptadError('PKI_CERT_MALFORMED', 'not a v3 certificate');
    expectTag(validity, TAG.SEQUENCE);
    const extensions = new Map<string, CertificateExtension>();
    for (const el of rest) {
      if (UNIQUE_ID_TAGS.has(el.tag)) continue;
      if (el.tag !== EXTENSIONS_TAG || el !== rest.at(-1)) {
        throw new HeptadError('PKI_CERT_MALFORMED', 'unexpected field in the TBSCertificate');
      }
      const [list] = expectChildren(der, el, EXTENSIONS_TAG, 1);
      for (const ext of childrenOf(der, expectTag(list, TAG.SEQUENCE))) {
        readExtension(der, ext, extensions);
      }
    }
    return {
      tbs: encodingOf(der, tbs as DerElement),
      serial: contentOf(der, expectTag(serial, TAG.INTEGER)),
      signatureAlgorithm: encodingOf(der, expectTag(algorithm, TAG.SEQUENCE)),
      issuerDer: encodingOf(der, expectTag(issuer, TAG.SEQUENCE)),
      subjectDer: encodingOf(der, expectTag(subject, TAG.SEQUENCE)),
      spkiDer: encodingOf(der, expectTag(spki, TAG.SEQUENCE)),
      extensions,
    };
  } catch (e) {
    if (isHeptadError(e) && e.code === 'PKI_CERT_MALFORMED') throw e;
    throw new HeptadError('PKI_CERT_MALFORMED', isHeptadError(e) ? e.message : undefined, { cause: e });
  }
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } */
function readExtension(der: Uint8Array, ext: DerElement, into: Map<string, CertificateExtension>): void {
  const parts = childrenOf(der, expectTag(ext, TAG.SEQUENCE));
  const [id, second, third] = parts;
  let critical = false;
  let value: DerElement | undefined;
  if (parts.length === 3) {
    // DER: a DEFAULT value is never encoded (X.690 §11.5), so an explicit FALSE is refused.
    if (contentOf(der, expectTag(second, TAG.BOOLEAN))[0] !== 0xff) {
      throw new HeptadError('PKI_CERT_MALFORMED', 'critical FALSE encoded explicitly');
    }
    critical = true;
    value = third;
  } else if (parts.length === 2) {
    value = second;
  } else {
    throw new HeptadError('PKI_CERT_MALFORMED', 'an extension is not (id, [critical], value)');
  }
  const oid = decodeOid(contentOf(der, expectTag(id, TAG.OID)));
  if (into.has(oid)) throw new HeptadError('PKI_CERT_MALFORMED', `extension ${oid} appears twice`);
  into.set(oid, { critical, value: contentOf(der, expectTag(value, TAG.OCTET_STRING)) });
}

/** Extension OIDs used by the Heptad profile (RFC 5280 §4.2.1). */
export const EXTENSION_OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  cRLNumber: '2.5.29.20',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
} as const;

/** The keyIdentifier of a SubjectKeyIdentifier extension value (`KeyIdentifier ::= OCTET STRING`). */
export function readSubjectKeyIdentifier(value: Buffer): Buffer {
  try {
    return contentOf(value, expectTag(readDer(value), TAG.OCTET_STRING));
  } catch (cause) {
    throw new HeptadError('PKI_CERT_MALFORMED', 'bad SubjectKeyIdentifier', { cause });
  }
}

/** The KeyUsage bits as a number, bit 0 (digitalSignature) first (RFC 5280 §4.2.1.3). */
export function readKeyUsage(value: Buffer): number {
  try {
    const bits = contentOf(value, expectTag(readDer(value), TAG.BIT_STRING));
    let n = 0;
    for (let i = 1; i < bits.length && i <= 2; i++) {
      const octet = bits[i] as number;
      for (let b = 0; b < 8; b++) if (octet & (0x80 >> b)) n |= 1 << ((i - 1) * 8 + b);
    }
    return n;
  } catch (cause) {
    throw new HeptadError('PKI_CERT_MALFORMED', 'bad KeyUsage', { cause });
  }
}

/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). */
export const KEY_USAGE = { digitalSignature: 1 << 0, keyCertSign: 1 << 5, cRLSign: 1 << 6 } as const;
