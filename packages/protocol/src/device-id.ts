import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { HeptadError } from './errors.ts';

/** A device id: lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of its identity key. */
export const DEVICE_ID_PATTERN = '^[0-9a-f]{64}$';
const DEVICE_ID_RE = new RegExp(DEVICE_ID_PATTERN);
/** PEM text larger than this is refused before parsing (a P-256 SPKI PEM is ~180 bytes). */
export const MAX_PUBLIC_KEY_PEM_LENGTH = 4096;

export function isDeviceId(s: unknown): s is string {
  return typeof s === 'string' && DEVICE_ID_RE.test(s);
}

/** The one accepted shape: a single PUBLIC KEY block and nothing else (a trailing newline is fine). */
const SPKI_PEM_RE =
  /^-----BEGIN PUBLIC KEY-----\r?\n((?:[A-Za-z0-9+/=]{1,76}\r?\n){1,20})-----END PUBLIC KEY-----\r?\n?$/;
/** DER SPKI of an uncompressed P-256 point: 26 bytes of header, then 0x04 ‖ X ‖ Y. */
const P256_SPKI_DER_LENGTH = 91;
const UNCOMPRESSED_POINT_OFFSET = 26;

/**
 * Parses an identity public key and insists on ECDSA P-256 in SPKI PEM with an uncompressed
 * point: the only key a Heptad root of trust creates. The PEM is decoded here, not by OpenSSL's
 * PEM reader, so a block that fails to decode cannot fall through to a later block (a private key
 * pasted after it), and trailing data is refused. Requiring the uncompressed form gives each key
 * exactly one encoding, hence exactly one device id. Anything else is DEVICE_PUBLIC_KEY_INVALID.
 */
export function toIdentityPublicKey(pem: string): KeyObject {
  if (pem.length > MAX_PUBLIC_KEY_PEM_LENGTH) throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID');
  // Surrounding whitespace is harmless; anything else around the one block is refused.
  const m = SPKI_PEM_RE.exec(pem.trim());
  if (!m?.[1]) throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID');
  const der = Buffer.from(m[1].replace(/\r?\n/g, ''), 'base64');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: der, format: 'der', type: 'spki' });
  } catch (cause) {
    throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID', undefined, { cause });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID', 'the identity key must be ECDSA P-256');
  }
  if (der.length !== P256_SPKI_DER_LENGTH || der[UNCOMPRESSED_POINT_OFFSET] !== 0x04) {
    throw new HeptadError(
      'DEVICE_PUBLIC_KEY_INVALID',
      'the identity key must be an uncompressed P-256 point',
    );
  }
  return key;
}

export function deviceIdOf(key: KeyObject): string {
  return createHash('sha256')
    .update(key.export({ format: 'der', type: 'spki' }))
    .digest('hex');
}

/** Checks that `id` is the id of `pem` and returns the key in canonical PEM form. */
export function assertDeviceIdentity(id: string, pem: string): { id: string; publicKeyPem: string } {
  const key = toIdentityPublicKey(pem);
  const actual = deviceIdOf(key);
  if (actual !== id.toLowerCase()) {
    throw new HeptadError('DEVICE_ID_MISMATCH', undefined, { detail: { expected: actual } });
  }
  return { id: actual, publicKeyPem: key.export({ format: 'pem', type: 'spki' }).toString() };
}
