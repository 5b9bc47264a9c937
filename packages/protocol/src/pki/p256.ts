/**
 * The one key type and the one signature algorithm of the Heptad PKI: ECDSA on NIST P-256 with
 * SHA-256, keys as uncompressed points. Fixed encodings are compared byte for byte, so there is
 * exactly one accepted form of each (the same rule as device-id.ts applies to identity keys).
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';

/**
 * AlgorithmIdentifier for ecdsa-with-SHA256 (1.2.840.10045.4.3.2). RFC 5758 §3.2: the
 * parameters field MUST be absent, so this is the only encoding.
 */
export const ECDSA_WITH_SHA256_DER: Buffer = Buffer.from('300a06082a8648ce3d040302', 'hex');

/**
 * The first 27 octets of every uncompressed P-256 SubjectPublicKeyInfo (RFC 5480 §2):
 * SEQUENCE { SEQUENCE { id-ecPublicKey, secp256r1 }, BIT STRING (66 octets: 0 unused bits, 0x04 ‖ X ‖ Y) }.
 */
export const P256_SPKI_PREFIX: Buffer = Buffer.from(
  '3059301306072a8648ce3d020106082a8648ce3d03010703420004',
  'hex',
);
/** Length of an uncompressed P-256 SubjectPublicKeyInfo. */
export const P256_SPKI_LENGTH = 91;
/** Offset of the subjectPublicKey bits (the point 0x04 ‖ X ‖ Y) inside the SPKI. */
export const P256_POINT_OFFSET = 26;

/** True when `spki` has the exact shape of an uncompressed P-256 SPKI (the point itself is not checked). */
export function hasP256SpkiShape(spki: Uint8Array): boolean {
  if (spki.length !== P256_SPKI_LENGTH) return false;
  for (let i = 0; i < P256_SPKI_PREFIX.length; i++) if (spki[i] !== P256_SPKI_PREFIX[i]) return false;
  return true;
}

/**
 * Key identifier by RFC 5280 §4.2.1.2 method (1): SHA-1 of the BIT STRING subjectPublicKey,
 * without tag, length and unused-bits octet. Used for SubjectKeyIdentifier and, of the issuer,
 * for AuthorityKeyIdentifier (§4.2.1.1), so a relying party can pick the right CA key.
 */
export function keyIdentifierOfP256Spki(spki: Uint8Array): Buffer {
  return createHash('sha1').update(spki.subarray(P256_POINT_OFFSET)).digest();
}

/** A KeyObject that is an EC P-256 key (either half). */
export function isP256Key(key: unknown): key is KeyObject {
  return (
    typeof key === 'object' &&
    key !== null &&
    'asymmetricKeyType' in key &&
    (key as KeyObject).asymmetricKeyType === 'ec' &&
    (key as KeyObject).asymmetricKeyDetails?.namedCurve === 'prime256v1'
  );
}

/** The uncompressed SPKI DER of a P-256 key (public, or the public half of a private one). */
export function p256SpkiOf(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  // Node exports EC public keys as uncompressed points (point conversion form "uncompressed").
  return pub.export({ format: 'der', type: 'spki' });
}
