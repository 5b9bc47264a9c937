/**
 * The device's error-report model: what the runtime records when an app crashes or exits, a
 * capability is refused, an update fails or rolls back, attestation is refused or the runtime
 * hits an error. A report is made to pass the service's rules here (bounded text, safe
 * alphabets), so one odd event can never make a batch the service refuses.
 */
import { randomBytes } from 'node:crypto';
import {
  type ErrorReport,
  type ErrorReportDetails,
  type ErrorReportKind,
  MAX_MESSAGE_LENGTH,
  MAX_REPORT_JSON,
  MAX_STACK_LENGTH,
  signatureOf,
} from '@heptad/protocol';

/** What the runtime hands to ReportQueue.record(). */
export interface ReportEvent {
  readonly kind: ErrorReportKind;
  /** the app's component id (UUID), or RUNTIME_COMPONENT_ID for the runtime itself */
  readonly componentId: string;
  readonly imageId?: string;
  readonly details: ErrorReportDetails;
}

/** A report in the device's queue. */
export interface QueuedReport {
  readonly id: string;
  readonly deviceId: string;
  readonly componentId: string;
  readonly imageId?: string;
  readonly bootId: string;
  /** first occurrence (device clock) */
  readonly at: string;
  /** last identical occurrence folded in */
  readonly lastAt: string;
  readonly kind: ErrorReportKind;
  /** the normalised signature (protocol signatureOf): identical events share it */
  readonly signature: string;
  readonly count: number;
  readonly details: ErrorReportDetails;
  /**
   * true once the report was handed to an upload: it is then never changed (a retry must send
   * exactly what the service may already hold under this id), and new events fold elsewhere.
   */
  readonly sealed: boolean;
}

let lastMs = 0;
let seqInMs = 0;

/**
 * A report id: UUIDv7 (RFC 9562 §5.7): 48 bits of Unix milliseconds, a 12-bit counter within
 * the millisecond, 62 random bits. Time-ordered ids land at the end of the service's
 * (device, id) key instead of all over it, which keeps ingest cheap; any UUID is accepted.
 */
export function newReportId(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    seqInMs = 0;
  } else {
    seqInMs = (seqInMs + 1) & 0xfff; // same (or an earlier, after a clock step) millisecond
  }
  const r = randomBytes(8);
  const ms = lastMs.toString(16).padStart(12, '0');
  const variant = ((r[0] as number) & 0x3f) | 0x80;
  const tail = Buffer.concat([Buffer.from([variant]), r.subarray(1)]).toString('hex');
  return `${ms.slice(0, 8)}-${ms.slice(8, 12)}-7${seqInMs.toString(16).padStart(3, '0')}-${tail.slice(0, 4)}-${tail.slice(4, 16)}`;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/g;
const token = (s: string, max: number) => s.replace(/[^A-Za-z0-9_.:/-]/g, '_').slice(0, max) || '_';
const int = (n: number, min: number, max: number) => Math.min(max, Math.max(min, Math.trunc(n)));

export function isUuid(s: unknown): s is string {
  return typeof s === 'string' && UUID.test(s);
}

/** Details made to fit the service's schema: text trimmed and cleaned, numbers bounded. */
export function sanitizeDetails(d: ErrorReportDetails): ErrorReportDetails {
  const out: ErrorReportDetails = {};
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  if (num(d.exitCode)) out.exitCode = int(d.exitCode as number, -(2 ** 31), 2 ** 32 - 1);
  if (typeof d.signal === 'string') {
    const s = d.signal.toUpperCase();
    if (/^SIG[A-Z0-9]{1,12}$/.test(s)) out.signal = s;
  }
  if (typeof d.stack === 'string') out.stack = d.stack.replace(CONTROL, ' ').slice(0, MAX_STACK_LENGTH);
  if (typeof d.message === 'string')
    out.message = d.message.replace(CONTROL, ' ').slice(0, MAX_MESSAGE_LENGTH);
  if (typeof d.capability === 'string') out.capability = token(d.capability, 128);
  if (typeof d.target === 'string') out.target = d.target.replace(/[^\x21-\x7e]/g, '_').slice(0, 256) || '_';
  if (typeof d.phase === 'string') out.phase = token(d.phase, 64);
  if (typeof d.code === 'string') out.code = token(d.code, 64);
  if (typeof d.networkInterface === 'string') out.networkInterface = token(d.networkInterface, 32);
  if (num(d.memoryHighWaterBytes))
    out.memoryHighWaterBytes = int(d.memoryHighWaterBytes as number, 0, Number.MAX_SAFE_INTEGER);
  if (num(d.uptimeSeconds)) out.uptimeSeconds = Math.min(1e10, Math.max(0, d.uptimeSeconds as number));
  if (num(d.dropped)) out.dropped = int(d.dropped as number, 0, 1e9);
  return out;
}

/** The report as uploaded: the wire format, within MAX_REPORT_JSON (the stack is cut if need be). */
export function toWire(r: QueuedReport): ErrorReport {
  const wire: ErrorReport = {
    id: r.id,
    deviceId: r.deviceId,
    componentId: r.componentId,
    ...(r.imageId ? { imageId: r.imageId } : {}),
    bootId: r.bootId,
    at: r.at,
    ...(r.lastAt !== r.at ? { lastAt: r.lastAt } : {}),
    kind: r.kind,
    count: r.count,
    details: r.details,
  };
  return wire;
}

/** Cuts stack, then message, until the report's JSON fits MAX_REPORT_JSON. */
export function fitReport(r: QueuedReport): QueuedReport {
  let out = r;
  for (;;) {
    const over = JSON.stringify(toWire(out)).length - MAX_REPORT_JSON;
    if (over <= 0) return out;
    const d = { ...out.details };
    if (d.stack && d.stack.length > 0) d.stack = d.stack.slice(0, Math.max(0, d.stack.length - over - 64));
    else if (d.message && d.message.length > 0)
      d.message = d.message.slice(0, Math.max(0, d.message.length - over - 64));
    else return out; // nothing left to cut: every other field is small and bounded
    out = { ...out, details: d };
  }
}

export { signatureOf };
