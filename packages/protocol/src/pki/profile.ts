/**
 * The fixed parts of the Heptad certificate profile that other code relies on: how a tenant
 * and a device are named in a certificate, the CA names, and the serial number rule.
 */
import { randomBytes } from 'node:crypto';

/** A device certificate names its device in a URI SAN `urn:heptad:device:<64 hex>`. */
export const DEVICE_URI_PREFIX = 'urn:heptad:device:';
/** …and its tenant in a URI SAN `urn:heptad:tenant:<tenant id>`. */
export const TENANT_URI_PREFIX = 'urn:heptad:tenant:';

/**
 * A tenant id as it may appear in a URN (RFC 8141 NSS characters, no escaping needed) and as an
 * organizationName (ub-organization-name: 64). The service's tenant ids (UUIDs) fit.
 */
export const TENANT_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const TENANT_ID_RE = new RegExp(TENANT_ID_PATTERN);

export function isTenantId(s: unknown): s is string {
  return typeof s === 'string' && TENANT_ID_RE.test(s);
}

export const ROOT_CA_COMMON_NAME = 'Heptad Tenant Root CA';
export const ISSUING_CA_COMMON_NAME_PREFIX = 'Heptad Tenant Issuing CA ';

/** Octets of a Heptad certificate serial number. */
export const SERIAL_LENGTH = 16;

/**
 * True for a serial the template issuer can use as is: 16 octets whose first octet is 0x01–0x7f.
 * The top bit clear keeps the INTEGER positive (RFC 5280 §4.1.2.2); the first octet non-zero
 * keeps the 16-octet encoding minimal, as DER requires (X.690 §8.3.2), so every serial has the
 * same length and sits at the same offset of the template.
 */
export function isTemplateSerial(serial: unknown): serial is Uint8Array {
  if (!(serial instanceof Uint8Array) || serial.length !== SERIAL_LENGTH) return false;
  const first = serial[0] as number;
  return first >= 0x01 && first <= 0x7f;
}

/**
 * A fresh serial number: 16 random octets with the first one forced into 0x40–0x7f, which
 * keeps 126 random bits (CA/Browser Forum BR §7.1 asks for at least 64) and satisfies
 * `isTemplateSerial`. The randomness source is a parameter so tests can fix it.
 */
export function createSerialNumber(random: (size: number) => Uint8Array = randomBytes): Buffer {
  const b = Buffer.from(random(SERIAL_LENGTH));
  if (b.length !== SERIAL_LENGTH) throw new RangeError('the random source returned the wrong length');
  b[0] = 0x40 | ((b[0] as number) & 0x3f);
  return b;
}
