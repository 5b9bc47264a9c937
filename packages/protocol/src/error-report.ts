/**
 * Error reports (failure reporting, DESIGN.md flow 7): the format a device uploads and the
 * signature that groups reports into buckets. Shared by the device (which records and queues
 * reports) and the service (which validates, buckets and exports them), so both normalise a
 * failure the same way.
 */
import { createHash } from 'node:crypto';

/** What failed. `reports-dropped` is the device's own report that its full queue dropped reports. */
export const ERROR_REPORT_KINDS = [
  'app-crash',
  'app-exit',
  'capability-violation',
  'update-failure',
  'rollback',
  'attestation-refused',
  'runtime-error',
  'reports-dropped',
] as const;
export type ErrorReportKind = (typeof ERROR_REPORT_KINDS)[number];

/** Reports per upload batch. */
export const MAX_REPORT_BATCH = 100;
/** One report, as compact JSON (UTF-16 code units, which bounds the bytes at 3×). */
export const MAX_REPORT_JSON = 16 * 1024;
export const MAX_STACK_LENGTH = 16 * 1024;
export const MAX_MESSAGE_LENGTH = 4 * 1024;
/** Identical events folded into one report carry their count (bounded so sums stay exact). */
export const MAX_REPORT_COUNT = 1_000_000;
/** Top stack frames that make a crash signature. */
export const SIGNATURE_FRAMES = 5;
export const MAX_REPORT_SIGNATURE_LENGTH = 512;
/**
 * The component id of the Heptad device runtime: the manifest of every runtime package carries it
 * (heptad runtime pack), and so do error reports about the runtime itself. The nil UUID, which no
 * app manifest may use, so a runtime can never pass for an app or the reverse.
 */
export const RUNTIME_COMPONENT_ID = '00000000-0000-0000-0000-000000000000';

/** Kind-specific facts. Every field is optional and bounded (see the service's schema). */
export interface ErrorReportDetails {
  /** process exit code */
  exitCode?: number;
  /** terminating signal, e.g. SIGSEGV */
  signal?: string;
  /** the JS stack trace where the SDK caught the error */
  stack?: string;
  message?: string;
  /** capability violation: what was asked for (peripheral, host, port, file area, endpoint) */
  capability?: string;
  target?: string;
  /** update failure: the phase and the code it failed with */
  phase?: string;
  code?: string;
  networkInterface?: string;
  memoryHighWaterBytes?: number;
  uptimeSeconds?: number;
  /** reports-dropped: how many reports the full queue dropped */
  dropped?: number;
}

/** One report as uploaded (the wire format). The device's identity comes from its certificate. */
export interface ErrorReport {
  /** UUID, made by the device: the idempotency key (a retried report is never stored twice) */
  id: string;
  /** optional; when present it must be the certificate's device id */
  deviceId?: string;
  componentId: string;
  imageId?: string;
  bootId: string;
  /** first occurrence, ISO-8601 UTC, device clock */
  at: string;
  /** last occurrence folded into this report (count > 1) */
  lastAt?: string;
  kind: ErrorReportKind;
  /** identical events within the device's window, folded into one report */
  count: number;
  details: ErrorReportDetails;
}

export interface ErrorReportBatch {
  reports: ErrorReport[];
}

export interface ErrorReportBatchResult {
  accepted: number;
  duplicate: number;
}

/** One stack line, normalised: location directories, line/column, addresses and ids stripped. */
export function normalizeFrame(line: string): string | undefined {
  const t = line.trim();
  if (!t.startsWith('at ')) return undefined;
  let frame = t.slice(3);
  // `fn (location)` or a bare `location`: keep the function, reduce the location to its file name.
  const m = /^(.*?)\s*\((.*)\)$/.exec(frame);
  const fn = m ? m[1] : '';
  const loc = m ? m[2] : frame;
  const file = (loc ?? '')
    .replace(/:\d+(?::\d+)?$/, '') // line and column
    .replace(/[?#].*$/, '') // query strings of file URLs
    .split(/[\\/]/)
    .pop();
  frame = fn ? `${fn} (${file})` : (file ?? '');
  return frame
    .replace(/0x[0-9a-fA-F]+/g, '0x?') // addresses
    .replace(/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/g, '?') // UUIDs
    .replace(/\b[0-9a-fA-F]{12,}\b/g, '?') // hashes, long hex ids
    .replace(/\b\d{3,}\b/g, '?') // pids, ports, counters
    .replace(/\s+/g, ' ')
    .trim();
}

/** The error's class from a stack's first line (`TypeError: …` → `TypeError`), without its message. */
function errorClass(stack: string): string | undefined {
  const first = stack.split('\n', 1)[0]?.trim() ?? '';
  const m = /^([A-Za-z_$][\w$.]{0,63})(?::|$)/.exec(first);
  return m?.[1];
}

/**
 * The normalised signature of a failure: the top frames of its stack, or without a stack its
 * exit code, signal, violated capability and target, or update phase and code. Reports with the
 * same component, kind and signature are one bucket, wherever the app was installed, whatever
 * the process id or address layout.
 */
export function signatureOf(kind: ErrorReportKind, d: ErrorReportDetails): string {
  let sig: string;
  const frames = (d.stack ?? '')
    .split('\n')
    .map(normalizeFrame)
    .filter((f): f is string => f !== undefined && f !== '')
    .slice(0, SIGNATURE_FRAMES);
  if (frames.length > 0) {
    const cls = errorClass(d.stack ?? '');
    sig = `${cls ? `${cls} ` : ''}${frames.join(' | ')}`;
  } else {
    const parts: string[] = [];
    if (d.signal !== undefined) parts.push(`signal=${d.signal}`);
    if (d.exitCode !== undefined) parts.push(`exit=${d.exitCode}`);
    if (d.capability !== undefined) parts.push(`capability=${d.capability}`);
    if (d.target !== undefined) parts.push(`target=${normalizeTarget(d.target)}`);
    if (d.phase !== undefined) parts.push(`phase=${d.phase}`);
    if (d.code !== undefined) parts.push(`code=${d.code}`);
    sig = parts.length > 0 ? parts.join(' ') : kind;
  }
  return sig.slice(0, MAX_REPORT_SIGNATURE_LENGTH);
}

/** A violation target keeps its shape (host, port, path) but not per-instance ids. */
function normalizeTarget(target: string): string {
  return target
    .replace(/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/g, '?')
    .replace(/\b[0-9a-fA-F]{12,}\b/g, '?');
}

/** The bucket id: 32 hex of SHA-256 over component, kind and signature. */
export function bucketIdOf(componentId: string, kind: ErrorReportKind, signature: string): string {
  return createHash('sha256')
    .update(`${componentId.toLowerCase()}\0${kind}\0${signature}`)
    .digest('hex')
    .slice(0, 32);
}

/**
 * Azure Sphere's export columns for a kind: EventType, EventClass, EventCategory (the CSV of
 * `heptad error-report download`).
 */
export const EVENT_COLUMNS: Readonly<Record<ErrorReportKind, readonly [string, string, string]>> = {
  'app-crash': ['AppCrash', 'Crash', 'Application'],
  'app-exit': ['AppExit', 'Exit', 'Application'],
  'capability-violation': ['CapabilityViolation', 'Security', 'Application'],
  'update-failure': ['UpdateFailure', 'Update', 'OS'],
  rollback: ['Rollback', 'Update', 'OS'],
  'attestation-refused': ['AttestationRefused', 'Security', 'OS'],
  'runtime-error': ['RuntimeError', 'Error', 'OS'],
  'reports-dropped': ['ReportsDropped', 'Error', 'OS'],
};

/** A one-line human description of a report (the export's Description column). */
export function describeReport(kind: ErrorReportKind, d: ErrorReportDetails): string {
  const parts: string[] = [];
  if (d.signal !== undefined) parts.push(`signal ${d.signal}`);
  if (d.exitCode !== undefined) parts.push(`exit code ${d.exitCode}`);
  if (d.capability !== undefined) parts.push(`capability ${d.capability}`);
  if (d.target !== undefined) parts.push(`target ${d.target}`);
  if (d.phase !== undefined) parts.push(`phase ${d.phase}`);
  if (d.code !== undefined) parts.push(`code ${d.code}`);
  if (d.dropped !== undefined) parts.push(`${d.dropped} reports dropped`);
  if (d.message !== undefined) parts.push(d.message.split('\n', 1)[0]?.slice(0, 200) ?? '');
  if (parts.length === 0 && d.stack) parts.push(d.stack.split('\n', 1)[0]?.slice(0, 200) ?? '');
  return parts.length > 0 ? parts.join('; ') : kind;
}
