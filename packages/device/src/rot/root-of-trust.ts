import type { KeyObject } from 'node:crypto';

/** Raw TPM 2.0 quote structures: TPMS_ATTEST and TPMT_SIGNATURE (both backends emit these). */
export interface QuoteResult {
  readonly attest: Buffer;
  readonly signature: Buffer;
}

export type RootOfTrustKind = 'tpm' | 'soft';

/**
 * The device's root of trust: holds the identity key (ECDSA P-256; the private part never
 * leaves it), measurement registers (sha256 bank, TPM extend semantics) and signs quotes over
 * a caller's qualifying data and the current register values.
 */
export interface RootOfTrust {
  readonly kind: RootOfTrustKind;
  identityPublicKey(): Promise<KeyObject>;
  /** what a verifier needs beyond the SPKI: for tpm `{ tpmPublic, name }`; empty for soft */
  identityKeyMaterial(): Promise<Record<string, string>>;
  extend(pcr: number, digest: Buffer): Promise<void>;
  readRegisters(pcrs: readonly number[]): Promise<Map<number, Buffer>>;
  quote(qualifyingData: Buffer, pcrs: readonly number[]): Promise<QuoteResult>;
  /** ECDSA P-256 SHA-256 over data with the identity key; DER signature */
  sign(data: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}
