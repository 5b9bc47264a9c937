import { createHash } from 'node:crypto';
import { canonicalJson } from './package/manifest.ts';

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
  /**
   * What the device's boot chain did since its last successful attestation (slot, trial,
   * rollbacks, refused slots, watchdog resets). Bound into the quote with the nonce and CSR, so
   * it arrives as the device's own statement. Absent for a device without a runtime.
   */
  readonly report?: DeviceReport;
}

export type DeviceEventKind =
  /** a slot failed verification at boot (code says why); the other slot was booted */
  | 'slot-refused'
  /** a newly installed runtime was booted as a trial */
  | 'trial-started'
  /** the trial passed its health check and became the committed runtime */
  | 'trial-committed'
  /** the trial used up its boot attempts; the device went back to the committed runtime */
  | 'trial-abandoned'
  /** a runtime package offered for install was refused (code says why) */
  | 'install-refused'
  /** the runtime exited or crashed (code: exit code or signal) */
  | 'runtime-exited'
  /** the runtime stopped answering and was killed by the watchdog */
  | 'watchdog-expired';

export const DEVICE_EVENT_KINDS: readonly DeviceEventKind[] = [
  'slot-refused',
  'trial-started',
  'trial-committed',
  'trial-abandoned',
  'install-refused',
  'runtime-exited',
  'watchdog-expired',
];

export interface DeviceEvent {
  /** ISO-8601 UTC */
  readonly at: string;
  readonly kind: DeviceEventKind;
  readonly slot?: 'A' | 'B';
  readonly version?: string;
  /** package digest (hex) when the event is about one package */
  readonly digest?: string;
  /** reason code (HeptadError code, exit code or signal name) */
  readonly code?: string;
}

/** The most events one report carries: the device keeps the newest ones. */
export const MAX_REPORT_EVENTS = 32;

export interface DeviceReport {
  /** the runtime that is running now */
  readonly runtime: {
    readonly slot: 'A' | 'B';
    readonly version: string;
    readonly digest: string;
    readonly securityVersion: number;
    /** true while it is a trial that has not committed yet */
    readonly trial: boolean;
    /** the anti-rollback floor the bootloader enforces */
    readonly floor: number;
  };
  /** events since the last report the service accepted, oldest first */
  readonly events: readonly DeviceEvent[];
}

const BINDING_LABEL = Buffer.from('heptad-attestation-v1\0');

/**
 * The quote's qualifying data: binds the single-use nonce AND the CSR to the quote, so a
 * certificate can only be issued for the key the attesting device asked for (a CSR cannot be
 * swapped in transit or replayed with another quote).
 */
export function attestationBinding(nonce: Buffer, csrDer: Buffer, report?: DeviceReport): Buffer {
  const h = createHash('sha256')
    .update(BINDING_LABEL)
    .update(nonce)
    .update(createHash('sha256').update(csrDer).digest());
  // The report is hashed in its canonical JSON form, so device and service agree on the bytes
  // whatever key order the JSON travelled in. Without a report the binding is unchanged.
  if (report !== undefined) h.update(createHash('sha256').update(canonicalJson(report)).digest());
  return h.digest();
}

/** TPM2_PCR_Extend semantics: new = SHA-256(old ‖ digest), starting from 32 zero bytes. */
export function replayMeasurements(digests: readonly Buffer[]): Buffer {
  let value = Buffer.alloc(32);
  for (const d of digests) value = createHash('sha256').update(value).update(d).digest();
  return value;
}
