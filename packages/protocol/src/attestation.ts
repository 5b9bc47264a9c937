import { createHash } from 'node:crypto';

/**
 * Attestation evidence shared by the device agent (which builds it) and the service (which
 * verifies it). The quote is a TPM 2.0 TPMS_ATTEST/TPMT_SIGNATURE pair for both root-of-trust
 * backends: the soft backend emits the same structures, so one verifier serves both.
 */

/** The register (sha256 bank) the Heptad boot chain measures into, unless a device says otherwise at manufacture. */
export const DEFAULT_MEASUREMENT_PCR = 15;
/** The most log entries one evidence may carry (a runtime plus its apps stays far below). */
export const MAX_LOG_ENTRIES = 256;
/** Nonces live this long after the challenge (ms). */
export const NONCE_TTL_MS = 60_000;

export type MeasurementKind = 'runtime' | 'app';

export interface MeasurementEntry {
  /** what was measured */
  readonly kind: MeasurementKind;
  /** SHA-256 (hex) of the measured image package: the value extended into the register */
  readonly digest: string;
  readonly name?: string;
  readonly version?: string;
  readonly componentId?: string;
  readonly imageId?: string;
}

export interface AttestationEvidence {
  readonly deviceId: string;
  /** the challenge nonce, hex (opaque to the device: it only quotes it) */
  readonly nonce: string;
  /** base64 TPMS_ATTEST and TPMT_SIGNATURE */
  readonly quote: { readonly attest: string; readonly signature: string };
  /** the measurement log since the root of trust was last reset, in extension order */
  readonly log: readonly MeasurementEntry[];
  /** base64 DER PKCS#10 request for the device's TLS client key */
  readonly csr: string;
}

const BINDING_LABEL = Buffer.from('heptad-attestation-v1\0');

/**
 * The quote's qualifying data: binds the single-use nonce AND the CSR to the quote, so a
 * certificate can only be issued for the key the attesting device asked for (a CSR cannot be
 * swapped in transit or replayed with another quote).
 */
export function attestationBinding(nonce: Buffer, csrDer: Buffer): Buffer {
  return createHash('sha256')
    .update(BINDING_LABEL)
    .update(nonce)
    .update(createHash('sha256').update(csrDer).digest())
    .digest();
}

/** TPM2_PCR_Extend semantics: new = SHA-256(old ‖ digest), starting from 32 zero bytes. */
export function replayMeasurements(digests: readonly Buffer[]): Buffer {
  let value = Buffer.alloc(32);
  for (const d of digests) value = createHash('sha256').update(value).update(d).digest();
  return value;
}
