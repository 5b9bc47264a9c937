/**
 * Tenant CA material: each tenant has a root CA (long-lived, used only to sign issuing CAs and
 * their CRLs) and generations of issuing CA (which sign the 24 h device certificates). This is
 * the rare path — once per tenant, once per rotation — so it uses @peculiar/x509; names are
 * written with our own DER writer so every string is a UTF8String (RFC 5280 §4.1.2.6) and the
 * issuing CA's issuer field is the root's subject byte for byte (RFC 5280 §7.1 name chaining).
 *
 * Pure functions: time comes in as `now`; keys and serials come from the platform's CSPRNG.
 * The private key is returned as PKCS#8 DER for the caller to seal (service KeyStore).
 */
import 'reflect-metadata';
import { createPrivateKey, type KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { type FieldError, HeptadError } from '../errors.ts';
import {
  type CertificateParts,
  EXTENSION_OID,
  readCertificateParts,
  readSubjectKeyIdentifier,
} from './certificate.ts';
import { derName, NAME_OID } from './name.ts';
import { hasP256SpkiShape, isP256Key, keyIdentifierOfP256Spki, p256SpkiOf } from './p256.ts';
import { fromPem, toPem } from './pem.ts';
import {
  createSerialNumber,
  ISSUING_CA_COMMON_NAME_PREFIX,
  isTenantId,
  ROOT_CA_COMMON_NAME,
} from './profile.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** CA certificates start this long before `now`, for relying parties whose clocks lag a little. */
export const CA_BACKDATE_MS = 5 * 60_000;
/** Longest CA validity accepted (100 years); beyond that a value is a unit mistake, not a choice. */
export const MAX_CA_VALIDITY_DAYS = 36_500;

export interface TenantCaMaterial {
  readonly certPem: string;
  readonly certDer: Buffer;
  /** PKCS#8 DER of the CA private key: seal it (service KeyStore) before storing. */
  readonly keyPkcs8: Buffer;
}

export interface TenantRootCaOptions {
  readonly tenantId: string;
  readonly now: Date;
  readonly validityDays: number;
}

export interface TenantIssuingCaOptions {
  /** The tenant's root CA: its certificate (PEM, or DER when given) and its PKCS#8 key. */
  readonly root: { readonly certPem: string; readonly certDer?: Buffer; readonly keyPkcs8: Buffer };
  /** When given, must be the tenant named in the root (a guard against mixing tenants' roots). */
  readonly tenantId?: string;
  readonly now: Date;
  readonly validityDays: number;
  /** 1 for the first issuing CA, +1 at each rotation; appears in the subject CN. */
  readonly generation: number;
}

function checkTimes(now: unknown, validityDays: unknown, problems: FieldError[]): void {
  if (!(now instanceof Date) || !Number.isFinite(now.getTime()))
    problems.push({ field: 'now', problem: 'not a valid Date' });
  if (
    typeof validityDays !== 'number' ||
    !Number.isFinite(validityDays) ||
    validityDays <= 0 ||
    validityDays > MAX_CA_VALIDITY_DAYS
  ) {
    problems.push({
      field: 'validityDays',
      problem: `must be a number of days in (0, ${MAX_CA_VALIDITY_DAYS}]`,
    });
  }
}

function refuse(problems: readonly FieldError[]): never {
  throw new HeptadError(
    'PKI_CA_OPTIONS_INVALID',
    problems.map((p) => `${p.field}: ${p.problem}`).join('; '),
    {
      fields: problems,
    },
  );
}

async function newKeyPair(): Promise<{ keys: webcrypto.CryptoKeyPair; spki: Buffer; pkcs8: Buffer }> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { keys, spki, pkcs8 };
}

function caExtensions(pathLength: number, spki: Buffer): x509.Extension[] {
  return [
    // RFC 5280 §4.2.1.9: cA asserted, critical in CA certificates; pathLen bounds the chain below.
    new x509.BasicConstraintsExtension(true, pathLength, true),
    // RFC 5280 §4.2.1.3: keyCertSign for certificates, cRLSign for CRLs; critical.
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    // RFC 5280 §4.2.1.2 method (1); MUST appear in CA certificates.
    new x509.SubjectKeyIdentifierExtension(keyIdentifierOfP256Spki(spki).toString('hex')),
  ];
}

function material(cert: x509.X509Certificate, pkcs8: Buffer): TenantCaMaterial {
  const certDer = Buffer.from(cert.rawData);
  return { certPem: toPem(certDer, 'CERTIFICATE'), certDer, keyPkcs8: pkcs8 };
}

/**
 * A self-signed root CA for `tenantId`: subject O=<tenantId>, CN=Heptad Tenant Root CA;
 * BasicConstraints CA pathLen 1 (root → issuing → device) critical, KeyUsage keyCertSign|cRLSign
 * critical, SubjectKeyIdentifier. Valid from now − 5 min for `validityDays`.
 */
export async function createTenantRootCa(options: TenantRootCaOptions): Promise<TenantCaMaterial> {
  const { tenantId, now, validityDays } = options;
  const problems: FieldError[] = [];
  if (!isTenantId(tenantId)) problems.push({ field: 'tenantId', problem: 'not a tenant id' });
  checkTimes(now, validityDays, problems);
  if (problems.length > 0) refuse(problems);

  const { keys, spki, pkcs8 } = await newKeyPair();
  const name = new x509.Name(
    derName([
      [NAME_OID.organizationName, tenantId],
      [NAME_OID.commonName, ROOT_CA_COMMON_NAME],
    ]),
  );
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: createSerialNumber().toString('hex'),
    name,
    notBefore: new Date(now.getTime() - CA_BACKDATE_MS),
    notAfter: new Date(now.getTime() + validityDays * DAY_MS),
    keys,
    signingAlgorithm: EC_P256,
    extensions: caExtensions(1, spki),
  });
  return material(cert, pkcs8);
}

/** The root's certificate, key and tenant, checked to belong together; refusals are field errors. */
function openRoot(root: TenantIssuingCaOptions['root'], problems: FieldError[]) {
  let der: Buffer;
  try {
    der = root.certDer ?? fromPem(root.certPem, 'CERTIFICATE');
  } catch {
    problems.push({ field: 'root.certPem', problem: 'not one CERTIFICATE PEM block' });
    return undefined;
  }
  let nodeCert: X509Certificate;
  let parts: CertificateParts;
  try {
    nodeCert = new X509Certificate(der);
    parts = readCertificateParts(der);
  } catch {
    problems.push({ field: 'root.certPem', problem: 'not an X.509 v3 certificate' });
    return undefined;
  }
  if (!nodeCert.ca || !hasP256SpkiShape(parts.spkiDer)) {
    problems.push({ field: 'root.certPem', problem: 'not an EC P-256 CA certificate' });
    return undefined;
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: root.keyPkcs8, format: 'der', type: 'pkcs8' });
  } catch {
    problems.push({ field: 'root.keyPkcs8', problem: 'not a PKCS#8 private key' });
    return undefined;
  }
  if (!isP256Key(key) || !p256SpkiOf(key).equals(parts.spkiDer)) {
    problems.push({ field: 'root.keyPkcs8', problem: 'not the key of the root certificate' });
    return undefined;
  }
  const subject = new x509.Name(parts.subjectDer);
  const tenantId = subject.getField(NAME_OID.organizationName)[0];
  if (!isTenantId(tenantId)) {
    problems.push({ field: 'root.certPem', problem: 'the root names no tenant (organizationName)' });
    return undefined;
  }
  const skiExt = parts.extensions.get(EXTENSION_OID.subjectKeyIdentifier);
  const ski = skiExt ? readSubjectKeyIdentifier(skiExt.value) : keyIdentifierOfP256Spki(parts.spkiDer);
  return { nodeCert, subject, key, tenantId, ski: ski.toString('hex') };
}

/**
 * An issuing CA signed by the tenant's root: subject O=<tenantId>, CN=Heptad Tenant Issuing CA
 * <generation>; BasicConstraints CA pathLen 0 critical (it signs only end entities),
 * KeyUsage keyCertSign|cRLSign critical, SubjectKeyIdentifier, and AuthorityKeyIdentifier = the
 * root's key identifier (RFC 5280 §4.2.1.1). Valid from now − 5 min for `validityDays`, and
 * refused if that would outlive the root (the chain could not verify after the root expires).
 */
export async function createTenantIssuingCa(options: TenantIssuingCaOptions): Promise<TenantCaMaterial> {
  const { root, tenantId, now, validityDays, generation } = options;
  const problems: FieldError[] = [];
  checkTimes(now, validityDays, problems);
  if (!Number.isSafeInteger(generation) || generation < 1) {
    problems.push({ field: 'generation', problem: 'must be a whole number ≥ 1' });
  }
  const opened = openRoot(root, problems);
  if (opened && tenantId !== undefined && tenantId !== opened.tenantId) {
    problems.push({ field: 'tenantId', problem: 'is not the tenant of the root CA' });
  }
  if (problems.length > 0 || !opened) refuse(problems);
  const notBefore = new Date(now.getTime() - CA_BACKDATE_MS);
  const notAfter = new Date(now.getTime() + validityDays * DAY_MS);
  // Compared at the second: certificate times carry no fraction (RFC 5280 §4.1.2.5).
  if (Math.floor(notAfter.getTime() / 1000) * 1000 > opened.nodeCert.validToDate.getTime()) {
    refuse([{ field: 'validityDays', problem: 'the issuing CA would outlive its root' }]);
  }

  const { keys, spki, pkcs8 } = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: createSerialNumber().toString('hex'),
    subject: new x509.Name(
      derName([
        [NAME_OID.organizationName, opened.tenantId],
        [NAME_OID.commonName, `${ISSUING_CA_COMMON_NAME_PREFIX}${generation}`],
      ]),
    ),
    // The root's subject as encoded, so issuer and subject compare equal octet for octet.
    issuer: opened.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: opened.key.toCryptoKey(EC_P256, false, ['sign']),
    signingAlgorithm: EC_P256,
    extensions: [...caExtensions(0, spki), new x509.AuthorityKeyIdentifierExtension(opened.ski)],
  });
  return material(cert, pkcs8);
}
