/**
 * The hot path of the tenant CA: 24 h device client certificates, issued after every successful
 * attestation. Every field of the Heptad device profile has a fixed length for a given issuer
 * and tenant, so the TBSCertificate (RFC 5280 §4.1) is built once per issuer as a DER template;
 * a certificate is then a copy of the template with the serial, validity, subject CN, device
 * URI, public key and key identifier written over known offsets, one ECDSA signature, and a
 * 15-octet trailer. No ASN.1 library runs per certificate, so issuing costs little more than
 * the signature itself (@peculiar/x509 issues the same profile ~100× slower).
 *
 * The profile (the contract the broker, the device and other clouds rely on):
 *   version v3; signature ecdsa-with-SHA256; issuer = the issuing CA's subject, copied as DER;
 *   subject CN=<device id> (UTF8String); validity as given (UTCTime through 2049,
 *   GeneralizedTime from 2050, RFC 5280 §4.1.2.5); SubjectPublicKeyInfo: uncompressed P-256;
 *   extensions:
 *     basicConstraints CA:FALSE, critical                      (§4.2.1.9)
 *     keyUsage digitalSignature, critical                       (§4.2.1.3)
 *     extKeyUsage id-kp-clientAuth                              (§4.2.1.12)
 *     subjectAltName URI urn:heptad:device:<id>, URI urn:heptad:tenant:<tenant>  (§4.2.1.6)
 *     authorityKeyIdentifier = the issuer's subjectKeyIdentifier (§4.2.1.1)
 *     subjectKeyIdentifier = SHA-1 of the subject public key bits (§4.2.1.2 method 1)
 */
import { createPublicKey, type KeyObject, sign, X509Certificate } from 'node:crypto';
import { isDeviceId } from '../device-id.ts';
import { type FieldError, HeptadError, isHeptadError } from '../errors.ts';
import {
  EXTENSION_OID,
  KEY_USAGE,
  readCertificateParts,
  readKeyUsage,
  readSubjectKeyIdentifier,
} from './certificate.ts';
import {
  childrenOf,
  contentOf,
  type DerElement,
  decodeOid,
  derBitString,
  derBoolean,
  derExplicit,
  derImplicit,
  derInteger,
  derOctetString,
  derOid,
  derSequence,
  derTlv,
  expectTag,
  ia5Bytes,
  readDer,
  readElement,
  TAG,
  type TimeKind,
  timeKindOf,
  timeText,
} from './der.ts';
import { derCommonNameOnly, NAME_OID, readNameAttribute } from './name.ts';
import {
  ECDSA_WITH_SHA256_DER,
  hasP256SpkiShape,
  isP256Key,
  keyIdentifierOfP256Spki,
  P256_SPKI_LENGTH,
  P256_SPKI_PREFIX,
  p256SpkiOf,
} from './p256.ts';
import {
  DEVICE_URI_PREFIX,
  isTemplateSerial,
  isTenantId,
  SERIAL_LENGTH,
  TENANT_URI_PREFIX,
} from './profile.ts';

export interface DeviceCertificateIssuerOptions {
  /** DER of the issuing CA certificate (EC P-256, a CA, with keyCertSign if it has a keyUsage). */
  readonly issuerCertDer: Uint8Array;
  /** The issuing CA's private key. */
  readonly issuerKey: KeyObject;
  /** The tenant the issuing CA belongs to; must be its subject organizationName when it has one. */
  readonly tenantId: string;
}

export interface DeviceCertificateRequest {
  /** 64 lowercase hex characters. */
  readonly deviceId: string;
  /**
   * The 91-octet uncompressed P-256 SubjectPublicKeyInfo to certify. Its shape is checked here;
   * that the point is on the curve is not (that costs as much as the signature): take it from
   * `verifyCsr`, which checked it.
   */
  readonly publicKeySpkiDer: Uint8Array;
  /** 16 octets, first octet 0x01–0x7f (see `createSerialNumber`). */
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** Offset and length of one patched field inside the TBSCertificate. */
export interface PatchedField {
  readonly offset: number;
  readonly length: number;
}

/** Where the per-certificate bytes sit in a template (for tests and diagnostics). */
export interface TemplateLayout {
  readonly tbsLength: number;
  readonly serial: PatchedField;
  readonly notBefore: PatchedField;
  readonly notAfter: PatchedField;
  readonly commonName: PatchedField;
  readonly deviceUri: PatchedField;
  readonly publicKey: PatchedField;
  readonly subjectKeyIdentifier: PatchedField;
}

export interface DeviceCertificateIssuer {
  readonly tenantId: string;
  /** The issuing CA's subject, as copied into every certificate's issuer field. */
  readonly issuerSubjectDer: Buffer;
  /** The issuing CA's key identifier, as copied into every authorityKeyIdentifier. */
  readonly issuerKeyIdentifier: Buffer;
  /** Layout of the template used when both validity dates are UTCTime (through 2049). */
  readonly layout: TemplateLayout;
  /**
   * The DER certificate for `request`. Does not use `this`, so it may be passed around on its own.
   * Refuses bad input with PKI_ISSUE_INPUT_INVALID, listing every bad field.
   */
  issue(request: DeviceCertificateRequest): Buffer;
}

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';
const DEVICE_ID_LENGTH = 64;
const KEY_ID_LENGTH = 20;
/** Longest issuer Name accepted; keeps a certificate within a 2-octet DER length. */
const MAX_ISSUER_NAME_LENGTH = 1024;
/** Outer header `30 82 LL LL`, then after the TBS: AlgorithmIdentifier (12) + BIT STRING header (3) + signature (≤ 72). */
const OUTER_HEADER = 4;
const MAX_TRAILER = ECDSA_WITH_SHA256_DER.length + 3 + 72;

interface Template {
  readonly bytes: Buffer;
  readonly layout: TemplateLayout;
}

/** Extension ::= SEQUENCE { extnID, critical (only when TRUE: DER omits DEFAULT FALSE, X.690 §11.5), extnValue } */
function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return derSequence(derOid(oid), ...(critical ? [derBoolean(true)] : []), derOctetString(value));
}

function placeholderTime(kind: TimeKind): Buffer {
  return kind === 'utc'
    ? derTlv(TAG.UTC_TIME, Buffer.alloc(13, 0x30))
    : derTlv(TAG.GENERALIZED_TIME, Buffer.alloc(15, 0x30));
}

function field(el: DerElement, expectedLength: number): PatchedField {
  const length = el.end - el.contentStart;
  // A template whose fields are not where and as long as designed would patch the wrong bytes.
  if (length !== expectedLength) throw new HeptadError('PKI_ISSUER_INVALID', 'template layout mismatch');
  return { offset: el.contentStart, length };
}

/**
 * Builds the TBSCertificate template with placeholder values, then finds each patched field by
 * reading the template back with the strict DER reader, so the offsets cannot drift from what
 * the writer produced.
 */
function buildTemplate(
  issuerSubjectDer: Buffer,
  issuerKeyIdentifier: Buffer,
  tenantId: string,
  notBeforeKind: TimeKind,
  notAfterKind: TimeKind,
): Template {
  const placeholderId = '0'.repeat(DEVICE_ID_LENGTH);
  const placeholderSpki = Buffer.concat([
    P256_SPKI_PREFIX,
    Buffer.alloc(P256_SPKI_LENGTH - P256_SPKI_PREFIX.length),
  ]);
  const bytes = derSequence(
    derExplicit(0, derInteger(2)), // version v3 (§4.1.2.1)
    derTlv(TAG.INTEGER, Buffer.alloc(SERIAL_LENGTH, 0x01)),
    ECDSA_WITH_SHA256_DER, // must equal the outer signatureAlgorithm (§4.1.2.3)
    issuerSubjectDer,
    derSequence(placeholderTime(notBeforeKind), placeholderTime(notAfterKind)),
    derCommonNameOnly(placeholderId),
    placeholderSpki,
    derExplicit(
      3,
      derSequence(
        extension(EXTENSION_OID.basicConstraints, true, derSequence()), // cA DEFAULT FALSE, omitted
        extension(EXTENSION_OID.keyUsage, true, derBitString(Buffer.from([0x80]), 7)), // digitalSignature
        extension(EXTENSION_OID.extKeyUsage, false, derSequence(derOid(CLIENT_AUTH_OID))),
        extension(
          EXTENSION_OID.subjectAltName,
          false, // non-critical: the subject is not empty (§4.2.1.6)
          derSequence(
            derImplicit(6, ia5Bytes(`${DEVICE_URI_PREFIX}${placeholderId}`)), // uniformResourceIdentifier [6]
            derImplicit(6, ia5Bytes(`${TENANT_URI_PREFIX}${tenantId}`)),
          ),
        ),
        extension(
          EXTENSION_OID.authorityKeyIdentifier,
          false,
          derSequence(derImplicit(0, issuerKeyIdentifier)),
        ),
        extension(EXTENSION_OID.subjectKeyIdentifier, false, derOctetString(Buffer.alloc(KEY_ID_LENGTH))),
      ),
    ),
  );
  if (bytes.length < 256 || OUTER_HEADER + bytes.length + MAX_TRAILER > 0xffff) {
    throw new HeptadError('PKI_ISSUER_INVALID', 'the certificate would not fit a 2-octet DER length');
  }

  const root = readDer(bytes);
  const f = childrenOf(bytes, root);
  const [nb, na] = childrenOf(bytes, expectTag(f[4], TAG.SEQUENCE));
  const timeLength = (k: TimeKind) => (k === 'utc' ? 13 : 15);
  const cnValue = (() => {
    const [rdn] = childrenOf(bytes, expectTag(f[5], TAG.SEQUENCE));
    const [atv] = childrenOf(bytes, expectTag(rdn, TAG.SET));
    return childrenOf(bytes, expectTag(atv, TAG.SEQUENCE))[1];
  })();
  const spki = expectTag(f[6], TAG.SEQUENCE);
  if (spki.end - spki.start !== P256_SPKI_LENGTH)
    throw new HeptadError('PKI_ISSUER_INVALID', 'template layout mismatch');
  let deviceUri: PatchedField | undefined;
  let ski: PatchedField | undefined;
  const [extensions] = childrenOf(bytes, expectTag(f[7], 0xa3));
  for (const ext of childrenOf(bytes, expectTag(extensions, TAG.SEQUENCE))) {
    const parts = childrenOf(bytes, ext);
    const oid = decodeOid(contentOf(bytes, expectTag(parts[0], TAG.OID)));
    const value = expectTag(parts.at(-1), TAG.OCTET_STRING);
    const inner = readElement(bytes, value.contentStart, value.end);
    if (oid === EXTENSION_OID.subjectAltName) {
      const uri = childrenOf(bytes, inner)[0] as DerElement;
      const whole = field(uri, DEVICE_URI_PREFIX.length + DEVICE_ID_LENGTH);
      deviceUri = { offset: whole.offset + DEVICE_URI_PREFIX.length, length: DEVICE_ID_LENGTH };
    } else if (oid === EXTENSION_OID.subjectKeyIdentifier) {
      ski = field(inner, KEY_ID_LENGTH);
    }
  }
  if (!deviceUri || !ski || !nb || !na || !cnValue) {
    throw new HeptadError('PKI_ISSUER_INVALID', 'template layout mismatch');
  }
  return {
    bytes,
    layout: {
      tbsLength: bytes.length,
      serial: field(expectTag(f[1], TAG.INTEGER), SERIAL_LENGTH),
      notBefore: field(nb, timeLength(notBeforeKind)),
      notAfter: field(na, timeLength(notAfterKind)),
      commonName: field(cnValue, DEVICE_ID_LENGTH),
      deviceUri,
      publicKey: { offset: spki.start, length: P256_SPKI_LENGTH },
      subjectKeyIdentifier: ski,
    },
  };
}

interface IssuerFacts {
  readonly subjectDer: Buffer;
  readonly keyIdentifier: Buffer;
  readonly notAfter: number;
}

/** Checks the issuing CA and its key and extracts what the template copies. */
function readIssuer(options: DeviceCertificateIssuerOptions): IssuerFacts {
  const { issuerCertDer, issuerKey, tenantId } = options;
  const problems: FieldError[] = [];
  if (!isTenantId(tenantId)) problems.push({ field: 'tenantId', problem: 'not a tenant id' });
  if (!isP256Key(issuerKey) || issuerKey.type !== 'private') {
    problems.push({ field: 'issuerKey', problem: 'not an EC P-256 private key' });
  }
  let facts: IssuerFacts | undefined;
  try {
    const parts = readCertificateParts(issuerCertDer);
    const cert = new X509Certificate(issuerCertDer);
    const ku = parts.extensions.get(EXTENSION_OID.keyUsage);
    if (!cert.ca) problems.push({ field: 'issuerCertDer', problem: 'not a CA certificate' });
    if (ku && (readKeyUsage(ku.value) & KEY_USAGE.keyCertSign) === 0) {
      problems.push({ field: 'issuerCertDer', problem: 'the CA may not sign certificates (keyUsage)' });
    }
    if (!hasP256SpkiShape(parts.spkiDer))
      problems.push({ field: 'issuerCertDer', problem: 'not an EC P-256 key' });
    else if (isP256Key(issuerKey) && !p256SpkiOf(issuerKey).equals(parts.spkiDer)) {
      problems.push({ field: 'issuerKey', problem: 'not the key of the issuing CA certificate' });
    }
    if (parts.subjectDer.length > MAX_ISSUER_NAME_LENGTH) {
      problems.push({ field: 'issuerCertDer', problem: 'the subject name is too long' });
    }
    // The tenant in every certificate's URI must be the tenant that owns this CA: a mix-up
    // here would let one tenant's devices present themselves under another tenant's name.
    const subject = readDer(parts.subjectDer);
    const organization = readNameAttribute(parts.subjectDer, subject, NAME_OID.organizationName, {
      malformed: 'PKI_CERT_MALFORMED',
      subject: 'PKI_CERT_MALFORMED',
    });
    if (organization !== undefined && isTenantId(tenantId) && organization !== tenantId) {
      problems.push({ field: 'tenantId', problem: 'is not the organizationName of the issuing CA' });
    }
    const skiExt = parts.extensions.get(EXTENSION_OID.subjectKeyIdentifier);
    facts = {
      subjectDer: Buffer.from(parts.subjectDer),
      // RFC 5280 §4.2.1.1: the AKI keyIdentifier is the issuer's SKI; derived (method 1) if it has none.
      keyIdentifier: Buffer.from(
        skiExt ? readSubjectKeyIdentifier(skiExt.value) : keyIdentifierOfP256Spki(parts.spkiDer),
      ),
      notAfter: cert.validToDate.getTime(),
    };
  } catch (cause) {
    if (isHeptadError(cause) && cause.code === 'PKI_ISSUER_INVALID') throw cause;
    problems.push({ field: 'issuerCertDer', problem: 'not a DER X.509 v3 certificate' });
  }
  if (problems.length > 0 || !facts) {
    throw new HeptadError('PKI_ISSUER_INVALID', problems.map((p) => `${p.field}: ${p.problem}`).join('; '), {
      fields: problems,
    });
  }
  return facts;
}

function isValidDate(d: unknown): d is Date {
  if (!(d instanceof Date)) return false;
  const y = d.getUTCFullYear();
  return Number.isFinite(d.getTime()) && y >= 0 && y <= 9999;
}

/** Every problem with `request`, empty when it can be issued (checked before any byte is written). */
function problemsOf(request: DeviceCertificateRequest, issuerNotAfter: number): FieldError[] {
  const problems: FieldError[] = [];
  const { deviceId, publicKeySpkiDer, serial, notBefore, notAfter } = request;
  if (!isDeviceId(deviceId)) problems.push({ field: 'deviceId', problem: 'not 64 lowercase hex characters' });
  if (!(publicKeySpkiDer instanceof Uint8Array) || !hasP256SpkiShape(publicKeySpkiDer)) {
    problems.push({
      field: 'publicKeySpkiDer',
      problem: 'not a 91-octet uncompressed P-256 SubjectPublicKeyInfo',
    });
  }
  if (!isTemplateSerial(serial)) {
    problems.push({ field: 'serial', problem: `not ${SERIAL_LENGTH} octets with a first octet 0x01–0x7f` });
  }
  const nbOk = isValidDate(notBefore);
  const naOk = isValidDate(notAfter);
  if (!nbOk) problems.push({ field: 'notBefore', problem: 'not a valid Date in years 0–9999' });
  if (!naOk) problems.push({ field: 'notAfter', problem: 'not a valid Date in years 0–9999' });
  if (nbOk && naOk) {
    // Compared at the second, as encoded.
    const na = Math.floor(notAfter.getTime() / 1000) * 1000;
    if (na <= Math.floor(notBefore.getTime() / 1000) * 1000) {
      problems.push({ field: 'notAfter', problem: 'not after notBefore' });
    } else if (na > issuerNotAfter) {
      problems.push({ field: 'notAfter', problem: 'after the issuing CA expires' });
    }
  }
  return problems;
}

/**
 * An issuer for one issuing CA and tenant. Checks the CA (PKI_ISSUER_INVALID: not an EC P-256
 * CA, key does not match, tenant id not the CA's organizationName) and builds the template once.
 */
export function createDeviceCertificateIssuer(
  options: DeviceCertificateIssuerOptions,
): DeviceCertificateIssuer {
  const facts = readIssuer(options);
  const { tenantId, issuerKey } = options;
  const templates = new Map<string, Template>();
  const templateFor = (nb: TimeKind, na: TimeKind): Template => {
    const key = `${nb}/${na}`;
    let t = templates.get(key);
    if (!t) {
      t = buildTemplate(facts.subjectDer, facts.keyIdentifier, tenantId, nb, na);
      templates.set(key, t);
    }
    return t;
  };
  const common = templateFor('utc', 'utc');

  const issue = (request: DeviceCertificateRequest): Buffer => {
    const problems = problemsOf(request, facts.notAfter);
    if (problems.length > 0) {
      throw new HeptadError(
        'PKI_ISSUE_INPUT_INVALID',
        problems.map((p) => `${p.field}: ${p.problem}`).join('; '),
        {
          fields: problems,
        },
      );
    }
    const { deviceId, publicKeySpkiDer, serial, notBefore, notAfter } = request;
    const nbKind = timeKindOf(notBefore);
    const naKind = timeKindOf(notAfter);
    // Dates in 2050 or later are GeneralizedTime (15 characters, not 13): their own template.
    const t = nbKind === 'utc' && naKind === 'utc' ? common : templateFor(nbKind, naKind);
    const L = t.layout;
    const tbsLength = L.tbsLength;
    const out = Buffer.allocUnsafe(OUTER_HEADER + tbsLength + MAX_TRAILER);
    const o = OUTER_HEADER;
    t.bytes.copy(out, o);
    out.set(serial, o + L.serial.offset);
    out.write(timeText(notBefore, nbKind), o + L.notBefore.offset, 'latin1');
    out.write(timeText(notAfter, naKind), o + L.notAfter.offset, 'latin1');
    out.write(deviceId, o + L.commonName.offset, 'latin1');
    out.write(deviceId, o + L.deviceUri.offset, 'latin1');
    out.set(publicKeySpkiDer, o + L.publicKey.offset);
    keyIdentifierOfP256Spki(publicKeySpkiDer).copy(out, o + L.subjectKeyIdentifier.offset);

    const tbsEnd = o + tbsLength;
    const signature = sign('sha256', out.subarray(o, tbsEnd), issuerKey); // DER ECDSA-Sig-Value
    let p = tbsEnd;
    p += ECDSA_WITH_SHA256_DER.copy(out, p);
    out[p++] = TAG.BIT_STRING;
    out[p++] = signature.length + 1; // ≤ 73: short form
    out[p++] = 0x00; // no unused bits
    p += signature.copy(out, p);
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue } (§4.1.1);
    // the template guarantees 256 ≤ length ≤ 65535, so the length is always 0x82 + 2 octets.
    const contentLength = p - OUTER_HEADER;
    out[0] = TAG.SEQUENCE;
    out[1] = 0x82;
    out[2] = contentLength >> 8;
    out[3] = contentLength & 0xff;
    return out.subarray(0, p);
  };

  return {
    tenantId,
    issuerSubjectDer: facts.subjectDer,
    issuerKeyIdentifier: facts.keyIdentifier,
    layout: common.layout,
    issue,
  };
}

// ---------------------------------------------------------------------------------------------
// Reading a device certificate back

export interface DeviceCertificateInfo {
  readonly deviceId: string;
  readonly tenantId: string;
  /** Lowercase hex of the serial number's content octets. */
  readonly serialHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKeySpkiDer: Buffer;
  readonly issuerDer: Buffer;
}

function mismatch(what: string): HeptadError {
  return new HeptadError('PKI_CERT_PROFILE_MISMATCH', `not a Heptad device certificate: ${what}`);
}

/**
 * Reads a certificate and checks that it follows the Heptad device profile (see the top of this
 * file); returns the device, the tenant and the other per-certificate fields. Does not check the
 * signature or the validity period against a clock: a TLS stack (or X509Certificate.verify)
 * does that against the tenant's CA. PKI_CERT_MALFORMED or PKI_CERT_PROFILE_MISMATCH.
 */
export function parseDeviceCertificate(der: Uint8Array): DeviceCertificateInfo {
  if (!(der instanceof Uint8Array)) throw new HeptadError('PKI_CERT_MALFORMED');
  const parts = readCertificateParts(der);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (cause) {
    throw new HeptadError('PKI_CERT_MALFORMED', undefined, { cause });
  }
  if (!parts.signatureAlgorithm.equals(ECDSA_WITH_SHA256_DER)) throw mismatch('signature algorithm');
  if (!hasP256SpkiShape(parts.spkiDer)) throw mismatch('key type');
  try {
    createPublicKey({ key: parts.spkiDer, format: 'der', type: 'spki' });
  } catch {
    throw mismatch('key is not a P-256 point');
  }
  // The subject must be exactly CN=<device id>, encoded as the issuer writes it.
  const subjectText = (() => {
    const cnPrefix = derCommonNameOnly('0'.repeat(DEVICE_ID_LENGTH)).subarray(0, -DEVICE_ID_LENGTH);
    if (parts.subjectDer.length !== cnPrefix.length + DEVICE_ID_LENGTH) return undefined;
    if (!parts.subjectDer.subarray(0, cnPrefix.length).equals(cnPrefix)) return undefined;
    return parts.subjectDer.subarray(cnPrefix.length).toString('latin1');
  })();
  if (!isDeviceId(subjectText)) throw mismatch('subject is not CN=<device id>');
  const deviceId = subjectText;

  const ext = (oid: string) => {
    const e = parts.extensions.get(oid);
    if (!e) throw mismatch(`missing extension ${oid}`);
    return e;
  };
  const bc = ext(EXTENSION_OID.basicConstraints);
  if (!bc.critical || !bc.value.equals(derSequence()))
    throw mismatch('basicConstraints is not CA:FALSE, critical');
  const ku = ext(EXTENSION_OID.keyUsage);
  if (!ku.critical || readKeyUsage(ku.value) !== KEY_USAGE.digitalSignature) {
    throw mismatch('keyUsage is not digitalSignature, critical');
  }
  if (!cert.keyUsage?.includes(CLIENT_AUTH_OID)) throw mismatch('extKeyUsage lacks clientAuth');
  ext(EXTENSION_OID.authorityKeyIdentifier);
  ext(EXTENSION_OID.subjectKeyIdentifier);

  let uris: string[];
  try {
    const san = ext(EXTENSION_OID.subjectAltName).value;
    uris = childrenOf(san, expectTag(readDer(san), TAG.SEQUENCE)).map((gn) => {
      if (gn.tag !== 0x86) throw mismatch('subjectAltName holds a name that is not a URI');
      return contentOf(san, gn).toString('latin1');
    });
  } catch (e) {
    if (isHeptadError(e) && e.code === 'PKI_CERT_PROFILE_MISMATCH') throw e;
    throw new HeptadError('PKI_CERT_MALFORMED', 'bad subjectAltName', { cause: e });
  }
  const [deviceUri, tenantUri] = uris;
  if (
    uris.length !== 2 ||
    deviceUri !== `${DEVICE_URI_PREFIX}${deviceId}` ||
    !tenantUri?.startsWith(TENANT_URI_PREFIX)
  ) {
    throw mismatch('subjectAltName is not (device URI, tenant URI)');
  }
  const tenantId = tenantUri.slice(TENANT_URI_PREFIX.length);
  if (!isTenantId(tenantId)) throw mismatch('tenant URI');

  return {
    deviceId,
    tenantId,
    serialHex: parts.serial.toString('hex'),
    notBefore: cert.validFromDate,
    notAfter: cert.validToDate,
    publicKeySpkiDer: Buffer.from(parts.spkiDer),
    issuerDer: Buffer.from(parts.issuerDer),
  };
}
