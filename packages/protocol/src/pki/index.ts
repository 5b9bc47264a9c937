// The Heptad PKI: pure functions of bytes, keys and a given time (no I/O, no clock, no store).
// The hot paths (CSR parse/verify, device certificate issuance) use only node:crypto and the DER
// reader/writer here; the rare path (tenant CA creation) uses @peculiar/x509.
//
// Exported by name, so `export *` from the package root cannot collide with other modules; the
// DER reader/writer is one namespace.
export { type CertificateExtension, type CertificateParts, readCertificateParts } from './certificate.ts';
export { type CreateCrlOptions, type Crl, type CrlEntry, createCrl } from './crl.ts';
export {
  type CreateCsrOptions,
  createCsr,
  MAX_CSR_DER_LENGTH,
  type ParsedCsr,
  parseCsr,
  verifyCsr,
} from './csr.ts';
export * as der from './der.ts';
export {
  createDeviceCertificateIssuer,
  type DeviceCertificateInfo,
  type DeviceCertificateIssuer,
  type DeviceCertificateIssuerOptions,
  type DeviceCertificateRequest,
  type PatchedField,
  parseDeviceCertificate,
  type TemplateLayout,
} from './device-cert-issuer.ts';
export { fromPem, MAX_PEM_LENGTH, type PemLabel, toPem } from './pem.ts';
export {
  createSerialNumber,
  DEVICE_URI_PREFIX,
  ISSUING_CA_COMMON_NAME_PREFIX,
  isTemplateSerial,
  isTenantId,
  ROOT_CA_COMMON_NAME,
  SERIAL_LENGTH,
  TENANT_ID_PATTERN,
  TENANT_URI_PREFIX,
} from './profile.ts';
export {
  CA_BACKDATE_MS,
  createTenantIssuingCa,
  createTenantRootCa,
  MAX_CA_VALIDITY_DAYS,
  type TenantCaMaterial,
  type TenantIssuingCaOptions,
  type TenantRootCaOptions,
} from './tenant-ca.ts';
