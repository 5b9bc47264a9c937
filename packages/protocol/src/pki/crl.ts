/**
 * X.509 v2 CRLs (RFC 5280 §5) for a tenant's issuing CA: the certificates of quarantined
 * devices, listed until they expire. Written with the DER writer and signed with node:crypto,
 * so the CRL's issuer field is the CA's subject byte for byte (§5.1.2.3; relying parties match
 * CRL to CA by this name) and the function stays synchronous and pure.
 */
import { createPrivateKey, type KeyObject, sign, X509Certificate } from 'node:crypto';
import { type FieldError, HeptadError } from '../errors.ts';
import {
  EXTENSION_OID,
  KEY_USAGE,
  readCertificateParts,
  readKeyUsage,
  readSubjectKeyIdentifier,
} from './certificate.ts';
import {
  derBitString,
  derExplicit,
  derImplicit,
  derInteger,
  derOctetString,
  derOid,
  derSequence,
  derTime,
  readElement,
} from './der.ts';
import {
  ECDSA_WITH_SHA256_DER,
  hasP256SpkiShape,
  isP256Key,
  keyIdentifierOfP256Spki,
  p256SpkiOf,
} from './p256.ts';
import { fromPem, toPem } from './pem.ts';

export interface CrlEntry {
  /** The revoked certificate's serial number in hex (leading zeros allowed). */
  readonly serialHex: string;
  readonly revokedAt: Date;
}

export interface CreateCrlOptions {
  /** The CA whose certificates are listed, which also signs the CRL (no indirect CRLs). */
  readonly issuerCertPem: string;
  readonly issuerKeyPkcs8: Buffer;
  readonly entries: readonly CrlEntry[];
  readonly thisUpdate: Date;
  /** When the next CRL will be out at the latest (RFC 5280 §5.1.2.5 requires it). */
  readonly nextUpdate: Date;
  /** Monotonically increasing per CA (§5.2.3); at most 20 octets. */
  readonly crlNumber: number | bigint;
}

export interface Crl {
  readonly der: Buffer;
  readonly pem: string;
}

/** Serial numbers and CRL numbers: positive INTEGERs of at most 20 octets (§4.1.2.2, §5.2.3). */
const MAX_INTEGER_OCTETS = 20;
const SERIAL_HEX_RE = /^[0-9a-fA-F]{1,64}$/;

function integerContentLength(encoded: Buffer): number {
  const el = readElement(encoded, 0);
  return el.end - el.contentStart;
}

function isValidDate(d: unknown): d is Date {
  return (
    d instanceof Date && Number.isFinite(d.getTime()) && d.getUTCFullYear() >= 0 && d.getUTCFullYear() <= 9999
  );
}

/** The CA certificate's issuer-side facts, or problems. */
function readCa(options: CreateCrlOptions, problems: FieldError[]) {
  let der: Buffer;
  try {
    der = fromPem(options.issuerCertPem, 'CERTIFICATE');
  } catch {
    problems.push({ field: 'issuerCertPem', problem: 'not one CERTIFICATE PEM block' });
    return undefined;
  }
  try {
    const parts = readCertificateParts(der);
    const cert = new X509Certificate(der);
    const ku = parts.extensions.get(EXTENSION_OID.keyUsage);
    if (!cert.ca || !hasP256SpkiShape(parts.spkiDer)) {
      problems.push({ field: 'issuerCertPem', problem: 'not an EC P-256 CA certificate' });
      return undefined;
    }
    // §4.2.1.3: the key that signs CRLs has cRLSign when the CA states its usages.
    if (ku && (readKeyUsage(ku.value) & KEY_USAGE.cRLSign) === 0) {
      problems.push({ field: 'issuerCertPem', problem: 'the CA may not sign CRLs (keyUsage lacks cRLSign)' });
      return undefined;
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: options.issuerKeyPkcs8, format: 'der', type: 'pkcs8' });
    } catch {
      problems.push({ field: 'issuerKeyPkcs8', problem: 'not a PKCS#8 private key' });
      return undefined;
    }
    if (!isP256Key(key) || !p256SpkiOf(key).equals(parts.spkiDer)) {
      problems.push({ field: 'issuerKeyPkcs8', problem: 'not the key of the CA certificate' });
      return undefined;
    }
    const ski = parts.extensions.get(EXTENSION_OID.subjectKeyIdentifier);
    return {
      subjectDer: parts.subjectDer,
      keyIdentifier: ski ? readSubjectKeyIdentifier(ski.value) : keyIdentifierOfP256Spki(parts.spkiDer),
      key,
    };
  } catch {
    problems.push({ field: 'issuerCertPem', problem: 'not an X.509 v3 certificate' });
    return undefined;
  }
}

/**
 * A DER and PEM CRL signed by the CA: version v2, ecdsa-with-SHA256, issuer = the CA's subject,
 * thisUpdate/nextUpdate, one entry per serial (revocation date only), and the two extensions
 * RFC 5280 makes mandatory for conforming CAs: authorityKeyIdentifier (§5.2.1) and cRLNumber
 * (§5.2.3). Refuses bad options with PKI_CRL_OPTIONS_INVALID, listing every bad field.
 */
export function createCrl(options: CreateCrlOptions): Crl {
  const problems: FieldError[] = [];
  const ca = readCa(options, problems);
  const { entries, thisUpdate, nextUpdate, crlNumber } = options;

  if (!isValidDate(thisUpdate)) problems.push({ field: 'thisUpdate', problem: 'not a valid Date' });
  if (!isValidDate(nextUpdate)) problems.push({ field: 'nextUpdate', problem: 'not a valid Date' });
  else if (isValidDate(thisUpdate) && nextUpdate.getTime() <= thisUpdate.getTime()) {
    problems.push({ field: 'nextUpdate', problem: 'not after thisUpdate' });
  }
  let crlNumberDer: Buffer | undefined;
  if (
    (typeof crlNumber === 'number' && Number.isSafeInteger(crlNumber) && crlNumber >= 0) ||
    (typeof crlNumber === 'bigint' && crlNumber >= 0n)
  ) {
    crlNumberDer = derInteger(crlNumber);
    if (integerContentLength(crlNumberDer) > MAX_INTEGER_OCTETS) crlNumberDer = undefined;
  }
  if (!crlNumberDer)
    problems.push({ field: 'crlNumber', problem: 'not a non-negative integer of at most 20 octets' });

  const revoked: Buffer[] = [];
  const seen = new Set<string>();
  if (!Array.isArray(entries)) problems.push({ field: 'entries', problem: 'not an array' });
  else {
    entries.forEach((entry: CrlEntry, i) => {
      const hex = typeof entry?.serialHex === 'string' ? entry.serialHex : '';
      const serial = SERIAL_HEX_RE.test(hex)
        ? derInteger(Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex'))
        : undefined;
      const normalized = serial?.toString('hex');
      if (!serial || integerContentLength(serial) > MAX_INTEGER_OCTETS || normalized === '020100') {
        problems.push({
          field: `entries/${i}/serialHex`,
          problem: 'not a positive serial number of at most 20 octets',
        });
      } else if (seen.has(normalized as string)) {
        problems.push({ field: `entries/${i}/serialHex`, problem: 'listed twice' });
      } else {
        seen.add(normalized as string);
      }
      if (!isValidDate(entry?.revokedAt))
        problems.push({ field: `entries/${i}/revokedAt`, problem: 'not a valid Date' });
      else if (serial) revoked.push(derSequence(serial, derTime(entry.revokedAt)));
    });
  }
  if (problems.length > 0 || !ca || !crlNumberDer) {
    throw new HeptadError(
      'PKI_CRL_OPTIONS_INVALID',
      problems.map((p) => `${p.field}: ${p.problem}`).join('; '),
      {
        fields: problems,
      },
    );
  }

  const tbsCertList = derSequence(
    derInteger(1), // v2 (§5.1.2.1): required, since the CRL has extensions
    ECDSA_WITH_SHA256_DER,
    ca.subjectDer,
    derTime(thisUpdate), // UTCTime through 2049, GeneralizedTime after (§5.1.2.4)
    derTime(nextUpdate),
    // §5.1.2.6: when nothing is revoked, the list is absent (not an empty SEQUENCE).
    ...(revoked.length > 0 ? [derSequence(...revoked)] : []),
    derExplicit(
      0,
      derSequence(
        derSequence(
          derOid(EXTENSION_OID.authorityKeyIdentifier),
          derOctetString(derSequence(derImplicit(0, ca.keyIdentifier))),
        ),
        derSequence(derOid(EXTENSION_OID.cRLNumber), derOctetString(crlNumberDer)),
      ),
    ),
  );
  const signature = sign('sha256', tbsCertList, ca.key); // DER ECDSA-Sig-Value (the default encoding)
  const der = derSequence(tbsCertList, ECDSA_WITH_SHA256_DER, derBitString(signature));
  return { der, pem: toPem(der, 'X509 CRL') };
}
