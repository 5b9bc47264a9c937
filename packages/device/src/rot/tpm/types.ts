// The root-of-trust interface the TPM backend implements. A copy of the interface in
// ../root-of-trust.ts (the lead's), kept here until the two are unified; the shapes are the same.

import type { KeyObject } from 'node:crypto';

/** Raw TPM 2.0 quote structures: TPMS_ATTEST and TPMT_SIGNATURE (both backends emit these). */
export interface QuoteResult {
  readonly attest: Buffer;
  readonly signature: Buffer;
}

export interface RootOfTrust {
  readonly kind: 'tpm' | 'soft';
  /** ECDSA P-256 identity key; created deterministically on first use; private part never leaves the RoT */
  identityPublicKey(): Promise<KeyObject>;
  /** what a verifier needs beyond the SPKI: for tpm { tpmPublic: base64 TPM2B_PUBLIC of the identity key, name: hex } */
  identityKeyMaterial(): Promise<Record<string, string>>;
  /** sha256 bank, digest 32 bytes */
  extend(pcr: number, digest: Buffer): Promise<void>;
  readRegisters(pcrs: readonly number[]): Promise<Map<number, Buffer>>;
  /** qualifyingData ≤ 64 bytes */
  quote(qualifyingData: Buffer, pcrs: readonly number[]): Promise<QuoteResult>;
  /** ECDSA P-256 SHA-256 over data, DER signature, by the identity key */
  sign(data: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}
