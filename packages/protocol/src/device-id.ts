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

/**
 * Parses an identity public key and insists on ECDSA P-256 in SPKI PEM: the only key type a
 * Heptad root of trust creates. Anything else (RSA, other curves, private keys, certificates,
 * garbage) is refused with DEVICE_PUBLIC_KEY_INVALID.
 */
export function toIdentityPublicKey(pem: string): KeyObject {
  if (pem.length > MAX_PUBLIC_KEY_PEM_LENGTH || !/^-----BEGIN PUBLIC KEY-----\r?\n/.test(pem.trimStart())) {
    throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID', undefined, { cause });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new HeptadError('DEVICE_PUBLIC_KEY_INVALID', 'the identity key must be ECDSA P-256');
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
