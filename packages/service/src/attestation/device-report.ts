import {
  canonicalJson,
  type DeviceEvent,
  type DeviceEventKind,
  type DeviceReport,
  HeptadError,
  MAX_REPORT_EVENTS,
  type MeasurementEntry,
} from '@heptad/protocol';

/**
 * The device report (docs/attestation.md, "The device report"): what the boot chain says it did,
 * bound into the quote. Pure functions only; storing is device-store.ts's, recording security
 * events attestation-service.ts's.
 */

/** The runtime a device reported at its last successful attestation, as the device API shows it. */
export interface DeviceRuntime {
  slot: 'A' | 'B';
  version: string;
  digest: string;
  securityVersion: number;
  trial: boolean;
  floor: number;
  /** when the service accepted the report (service clock) */
  reportedAt: string;
  /** the newest events reported, oldest first (only where one device is read) */
  events?: DeviceEvent[];
}

/**
 * Events an owner must hear about: each becomes a security event `device.<kind>`. A started or
 * committed trial is ordinary operation: it is kept with the device, not raised.
 */
export const SECURITY_EVENT_KINDS: ReadonlySet<DeviceEventKind> = new Set<DeviceEventKind>([
  'slot-refused',
  'trial-abandoned',
  'install-refused',
  'runtime-exited',
  'watchdog-expired',
]);

/**
 * The report must describe the runtime the boot chain measured last: the log is what the quote
 * proves was loaded, the report only what the device says. A report naming another runtime (an
 * older slot, one never measured) is a device claiming to run what it does not.
 */
export function assertReportMatchesLog(log: readonly MeasurementEntry[], report: DeviceReport): void {
  const measured = log.findLast((e) => e.kind === 'runtime');
  if (measured?.digest !== report.runtime.digest) {
    throw new HeptadError(
      'ATTEST_REPORT_MISMATCH',
      measured ? 'the report names another runtime than the last one measured' : 'no runtime was measured',
    );
  }
}

/**
 * Adds a report's events to the ones kept for the device, keeping the newest MAX_REPORT_EVENTS.
 * A device resends the events of a report whose answer it never saw, so an event already kept
 * (same fields) is not added again, and `fresh` (the events to raise) leaves it out.
 */
export function mergeReportedEvents(
  kept: readonly DeviceEvent[],
  reported: readonly DeviceEvent[],
): { events: DeviceEvent[]; fresh: DeviceEvent[] } {
  const seen = new Set(kept.map((e) => canonicalJson(e)));
  const fresh: DeviceEvent[] = [];
  for (const e of reported) {
    const key = canonicalJson(e);
    if (seen.has(key)) continue;
    seen.add(key);
    fresh.push(e);
  }
  return { events: [...kept, ...fresh].slice(-MAX_REPORT_EVENTS), fresh };
}

/** The security event a reported event raises, or undefined for ordinary operation. */
export function securityEventOf(e: DeviceEvent): { kind: string; reason: string } | undefined {
  return SECURITY_EVENT_KINDS.has(e.kind)
    ? { kind: `device.${e.kind}`, reason: e.code ?? e.kind }
    : undefined;
}
