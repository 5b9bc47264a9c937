/**
 * PKCS#10 certification requests (RFC 2986) with ECDSA P-256 / SHA-256: the device writes one
 * with `createCsr`, the service reads it with `parseCsr` and checks its self-signature with
 * `verifyCsr`. This is on the attestation path (one CSR per device per day, in bursts after an
 * outage), so it uses no ASN.1 library: a strict DER walk, byte comparisons against the one
 * accepted algorithm and key encoding, and node:crypto for the signature.
 *
 * A CSR only proves possession of the private key of the public key it carries (RFC 2986 §3);
 * everything else in it (the subject, attributes such as extensionRequest) is a wish. Heptad
 * certificates take their content from the device registry and the tenant, never from the
 * CSR's attributes, so attributes are checked for shape and otherwise ignored.
 */
import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { type ErrorCode, HeptadError, isHeptadError } from '../errors.ts';
import {
  childrenOf,
  contentOf,
  type DerElement,
  derBitString,
  derInteger,
  derSequence,
  encodingOf,
  expectChildren,
  expectTag,
  readDer,
  TAG,
} from './der.ts';
import { derCommonNameOnly, isAcceptableCommonName, readCommonName } from './name.ts';
import { ECDSA_WITH_SHA256_DER, hasP256SpkiShape, isP256Key, p256SpkiOf } from './p256.ts';

/**
 * CSRs larger than this are refused before any parsing. A Heptad CSR is about 240 octets; 4 KiB
 * leaves room for other encoders' attributes while bounding the work an attacker can cause.
 */
export const MAX_CSR_DER_LENGTH = 4096;

/** `[0] IMPLICIT Attributes` of CertificationRequestInfo (RFC 2986 §4.1). */
const ATTRIBUTES_TAG = 0xa0;
/** An ECDSA-Sig-Value for P-256 is a SEQUENCE of two INTEGERs of at most 33 octets each. */
const MAX_ECDSA_P256_SIGNATURE_LENGTH = 72;

export interface CreateCsrOptions {
  /** The EC P-256 private key whose public half is to be certified. */
  readonly privateKey: KeyObject;
  /** 1–64 characters (ub-common-name); for a Heptad device, its 64-character device id. */
  readonly subjectCommonName: string;
}

export interface ParsedCsr {
  /** The subject's one commonName, or undefined when the subject has none. */
  readonly subjectCommonName: string | undefined;
  /** The requested public key: always EC P-256. */
  readonly publicKey: KeyObject;
  /** Its DER SubjectPublicKeyInfo: always the 91-octet uncompressed form. */
  readonly spkiDer: Buffer;
  /** The signed bytes (DER CertificationRequestInfo), a view into the input. */
  readonly certificationRequestInfo: Buffer;
  /** The DER ECDSA-Sig-Value over `certificationRequestInfo`, a view into the input. */
  readonly signature: Buffer;
}

/**
 * A DER PKCS#10 request for `subjectCommonName`, signed with `privateKey` (ecdsa-with-SHA256).
 * The request has no attributes: RFC 2986 §4.1 makes the attributes field mandatory, so it is
 * written as an empty `[0]` SET.
 */
export function createCsr(options: CreateCsrOptions): Buffer {
  const { privateKey, subjectCommonName } = options;
  if (!isP256Key(privateKey) || privateKey.type !== 'private') {
    throw new HeptadError('PKI_CSR_KEY_UNSUPPORTED', 'the CSR key must be an EC P-256 private key');
  }
  if (!isAcceptableCommonName(subjectCommonName)) {
    throw new HeptadError(
      'PKI_CSR_SUBJECT_INVALID',
      'the common name must be 1–64 characters, no control characters',
    );
  }
  const cri = derSequence(
    derInteger(0), // version v1 (RFC 2986 §4.1)
    derCommonNameOnly(subjectCommonName),
    p256SpkiOf(privateKey),
    Buffer.from([ATTRIBUTES_TAG, 0x00]),
  );
  const signature = sign('sha256', cri, privateKey); // DER ECDSA-Sig-Value (the default encoding)
  return derSequence(cri, ECDSA_WITH_SHA256_DER, derBitString(signature));
}

/** Runs a structural step and re-codes a DER refusal as this CSR's refusal. */
function structural<T>(code: ErrorCode, step: () => T): T {
  try {
    return step();
  } catch (e) {
    if (isHeptadError(e) && e.code === 'PKI_DER_MALFORMED')
      throw new HeptadError(code, e.message, { cause: e });
    throw e;
  }
}

/**
 * Reads a DER CSR and checks everything but its signature: size, strict DER, the RFC 2986 §4
 * structure, version 1, the key (only an uncompressed P-256 point that lies on the curve), the
 * signature algorithm (only ecdsa-with-SHA256) and the subject's commonName. Refusals:
 * PKI_CSR_TOO_LARGE, PKI_CSR_MALFORMED, PKI_CSR_ALGORITHM_UNSUPPORTED, PKI_CSR_KEY_UNSUPPORTED,
 * PKI_CSR_SUBJECT_INVALID. Use `verifyCsr` to also check the signature.
 */
export function parseCsr(der: Uint8Array): ParsedCsr {
  if (!(der instanceof Uint8Array)) throw new HeptadError('PKI_CSR_MALFORMED', 'the CSR must be DER bytes');
  if (der.length > MAX_CSR_DER_LENGTH) {
    throw new HeptadError('PKI_CSR_TOO_LARGE', `the CSR is larger than ${MAX_CSR_DER_LENGTH} octets`);
  }
  const M = 'PKI_CSR_MALFORMED';
  const parts = structural(M, () => {
    const root = readDer(der);
    // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
    const [info, algorithm, signature] = expectChildren(der, root, TAG.SEQUENCE, 3);
    expectTag(algorithm, TAG.SEQUENCE);
    expectTag(signature, TAG.BIT_STRING);
    // CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, [0] attributes }
    const [version, subject, spki, attributes] = expectChildren(der, info, TAG.SEQUENCE, 4);
    const v = expectTag(version, TAG.INTEGER);
    if (v.end - v.contentStart !== 1 || der[v.contentStart] !== 0) {
      throw new HeptadError(M, 'the CSR version is not v1 (0)');
    }
    // SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, BIT STRING }
    const [spkiAlgorithm] = expectChildren(der, spki, TAG.SEQUENCE, 2);
    expectTag(spkiAlgorithm, TAG.SEQUENCE);
    for (const attribute of childrenOf(der, expectTag(attributes, ATTRIBUTES_TAG))) {
      // Attribute ::= SEQUENCE { type OBJECT IDENTIFIER, values SET SIZE(1..MAX) }
      const [type, values] = expectChildren(der, attribute, TAG.SEQUENCE, 2);
      expectTag(type, TAG.OID);
      if (childrenOf(der, expectTag(values, TAG.SET)).length === 0) {
        throw new HeptadError(M, 'a CSR attribute has no value');
      }
    }
    return {
      info: info as DerElement,
      algorithm: algorithm as DerElement,
      signature: signature as DerElement,
      subject: subject as DerElement,
      spki: spki as DerElement,
    };
  });

  const spkiDer = encodingOf(der, parts.spki);
  if (!hasP256SpkiShape(spkiDer)) {
    throw new HeptadError('PKI_CSR_KEY_UNSUPPORTED', 'the CSR key is not an uncompressed EC P-256 key');
  }
  let publicKey: KeyObject;
  try {
    // Also checks that the point is on the curve (an invalid point is refused, not certified).
    publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch (cause) {
    throw new HeptadError('PKI_CSR_KEY_UNSUPPORTED', 'the CSR key is not a valid P-256 point', { cause });
  }

  // After the key, so an RSA or P-384 request (whose algorithm differs too) is reported by its key.
  if (!encodingOf(der, parts.algorithm).equals(ECDSA_WITH_SHA256_DER)) {
    throw new HeptadError('PKI_CSR_ALGORITHM_UNSUPPORTED', 'the CSR is not signed with ecdsa-with-SHA256');
  }

  const subjectCommonName = structural(M, () =>
    readCommonName(der, parts.subject, { malformed: M, subject: 'PKI_CSR_SUBJECT_INVALID' }),
  );

  // BIT STRING holding the DER ECDSA-Sig-Value; walked by readDer as a primitive, so its
  // unused-bits octet is known valid here. A signature that is not a well-formed
  // SEQUENCE { r INTEGER, s INTEGER } cannot be valid, so it is refused as a bad signature.
  const bits = contentOf(der, parts.signature);
  if (bits[0] !== 0) throw new HeptadError('PKI_CSR_SIGNATURE_INVALID', 'the signature is not whole octets');
  const signature = bits.subarray(1);
  if (signature.length > MAX_ECDSA_P256_SIGNATURE_LENGTH) {
    throw new HeptadError('PKI_CSR_SIGNATURE_INVALID', 'the signature is too long for P-256');
  }
  structural('PKI_CSR_SIGNATURE_INVALID', () => {
    const [r, s] = expectChildren(signature, readDer(signature), TAG.SEQUENCE, 2);
    expectTag(r, TAG.INTEGER);
    expectTag(s, TAG.INTEGER);
  });

  return {
    subjectCommonName,
    publicKey,
    spkiDer,
    certificationRequestInfo: encodingOf(der, parts.info),
    signature,
  };
}

/**
 * `parseCsr`, then the self-signature over the CertificationRequestInfo (RFC 2986 §3 step 3)
 * with the CSR's own key: PKI_CSR_SIGNATURE_INVALID when it does not verify. Returns the parsed
 * request, so a caller needs only this one call.
 */
export function verifyCsr(der: Uint8Array): ParsedCsr {
  const csr = parseCsr(der);
  let ok: boolean;
  try {
    // The KeyObject itself, not { key, dsaEncoding }: in Node 24 the wrapper object costs about
    // 20 µs per call (a fifth of the whole check), and DER is the default signature encoding.
    ok = verify('sha256', csr.certificationRequestInfo, csr.publicKey, csr.signature);
  } catch (cause) {
    throw new HeptadError('PKI_CSR_SIGNATURE_INVALID', undefined, { cause });
  }
  if (!ok) throw new HeptadError('PKI_CSR_SIGNATURE_INVALID');
  return csr;
}
