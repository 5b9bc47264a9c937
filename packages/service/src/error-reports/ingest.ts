import {
  bucketIdOf,
  describeReport,
  type ErrorReport,
  type ErrorReportDetails,
  type ErrorReportKind,
  type FieldError,
  HeptadError,
  MAX_REPORT_JSON,
  signatureOf,
} from '@heptad/protocol';
import type { DeviceIdentity } from '../http/device-auth.ts';
import type { PreparedReport } from './report-store.ts';

/** Azure Sphere kept error reports for 14 days. */
export const DEFAULT_REPORT_RETENTION_DAYS = 14;
/** A report may be stamped this far ahead of the service clock (device clocks drift). */
export const DEFAULT_REPORT_MAX_SKEW_MS = 5 * 60_000;
/** Per device: a full queue may arrive at once; after that, this many reports a minute. */
export const DEFAULT_REPORT_RATE_BURST = 1_000;
export const DEFAULT_REPORT_RATE_PER_MINUTE = 100;

export interface ErrorReportOptions {
  readonly retentionDays: number;
  readonly maxSkewMs: number;
  readonly rateBurst: number;
  readonly ratePerMinute: number;
}

export const DEFAULT_ERROR_REPORT_OPTIONS: ErrorReportOptions = Object.freeze({
  retentionDays: DEFAULT_REPORT_RETENTION_DAYS,
  maxSkewMs: DEFAULT_REPORT_MAX_SKEW_MS,
  rateBurst: DEFAULT_REPORT_RATE_BURST,
  ratePerMinute: DEFAULT_REPORT_RATE_PER_MINUTE,
});

/**
 * A fleet sends the same few failures over and over: the signature, bucket and description of a
 * (component, kind, details) are remembered (bounded), sparing the stack normalisation and the
 * hash for every repeat. Keyed by the exact details JSON, so only identical input shares a result.
 */
const BUCKET_CACHE_MAX = 10_000;
const bucketCache = new Map<string, { signature: string; bucketId: string; description: string }>();
function bucketOf(componentId: string, kind: ErrorReportKind, details: ErrorReportDetails, json: string) {
  const key = `${componentId}\0${kind}\0${json}`;
  let hit = bucketCache.get(key);
  if (hit === undefined) {
    const signature = signatureOf(kind, details);
    hit = {
      signature,
      bucketId: bucketIdOf(componentId, kind, signature),
      description: describeReport(kind, details).slice(0, 500),
    };
    if (bucketCache.size >= BUCKET_CACHE_MAX) bucketCache.delete(bucketCache.keys().next().value as string);
    bucketCache.set(key, hit);
  }
  return hit;
}

/**
 * Checks a schema-valid batch against what the schema cannot express and prepares it for the
 * store: every report is the sender's own, within its size, and stamped inside
 * [now − retention, now + skew]. All bad reports are listed (as `reports/N/field`), and one bad
 * report refuses the batch: nothing is stored.
 * Duplicate ids inside the batch keep their first occurrence (the rest count as duplicates).
 */
export function prepareBatch(
  device: DeviceIdentity,
  reports: readonly ErrorReport[],
  now: Date,
  options: ErrorReportOptions,
): { prepared: PreparedReport[]; duplicateInBatch: number } {
  const mismatched: FieldError[] = [];
  const tooLarge: FieldError[] = [];
  const skewed: FieldError[] = [];
  const latest = now.getTime() + options.maxSkewMs;
  const earliest = now.getTime() - options.retentionDays * 86_400_000;
  const detailsJson: string[] = [];
  reports.forEach((r, i) => {
    if (r.deviceId !== undefined && r.deviceId !== device.deviceId) {
      mismatched.push({
        field: `reports/${i}/deviceId`,
        problem: 'is not the device of the client certificate',
      });
    }
    // The report's JSON size, without serialising it twice: its details are kept as JSON anyway.
    const details = JSON.stringify(r.details);
    detailsJson.push(details);
    if (JSON.stringify({ ...r, details: 0 }).length - 1 + details.length > MAX_REPORT_JSON) {
      tooLarge.push({
        field: `reports/${i}`,
        problem: `is larger than ${MAX_REPORT_JSON} characters of JSON`,
      });
    }
    const at = Date.parse(r.at);
    const last = r.lastAt === undefined ? at : Date.parse(r.lastAt);
    if (at > latest || last > latest) {
      skewed.push({ field: `reports/${i}/at`, problem: 'is in the future beyond the allowed clock skew' });
    } else if (at < earliest) {
      skewed.push({ field: `reports/${i}/at`, problem: 'is older than the retention period' });
    } else if (last < at) {
      skewed.push({ field: `reports/${i}/lastAt`, problem: 'is before at' });
    }
  });
  // The identity is the certificate's: a report for another device is refused outright (403).
  if (mismatched.length > 0)
    throw new HeptadError('REPORT_DEVICE_MISMATCH', undefined, { fields: mismatched });
  if (tooLarge.length > 0) throw new HeptadError('REPORT_TOO_LARGE', undefined, { fields: tooLarge });
  if (skewed.length > 0) throw new HeptadError('REPORT_TIME_SKEWED', undefined, { fields: skewed });

  const seen = new Set<string>();
  const prepared: PreparedReport[] = [];
  reports.forEach((r, i) => {
    const id = r.id.toLowerCase();
    if (seen.has(id)) return;
    seen.add(id);
    const componentId = r.componentId.toLowerCase();
    const details = detailsJson[i] as string;
    const b = bucketOf(componentId, r.kind, r.details, details);
    const at = new Date(r.at).toISOString();
    prepared.push({
      id,
      bucketId: b.bucketId,
      componentId,
      imageId: r.imageId?.toLowerCase() ?? null,
      bootId: r.bootId.toLowerCase(),
      kind: r.kind,
      at,
      lastAt: r.lastAt === undefined ? at : new Date(r.lastAt).toISOString(),
      count: r.count,
      details,
      signature: b.signature,
      description: b.description,
    });
  });
  return { prepared, duplicateInBatch: reports.length - prepared.length };
}

/**
 * A token bucket per device, in this process: `burst` reports at once, refilled at
 * `perMinute`. A refused batch costs nothing and says when it would fit (Retry-After). Several
 * service processes each hold their own buckets, so the fleet-wide limit is per process.
 */
export class ReportRateLimiter {
  readonly #burst: number;
  readonly #perMs: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(burst: number, perMinute: number) {
    this.#burst = burst;
    this.#perMs = perMinute / 60_000;
  }

  /** Takes `cost` tokens for the device, or throws REPORT_RATE_LIMITED with the wait in seconds. */
  take(deviceId: string, cost: number, nowMs: number): void {
    const b = this.#buckets.get(deviceId) ?? { tokens: this.#burst, at: nowMs };
    const tokens = Math.min(this.#burst, b.tokens + Math.max(0, nowMs - b.at) * this.#perMs);
    if (tokens < cost) {
      const waitMs = cost > this.#burst ? Number.POSITIVE_INFINITY : (cost - tokens) / this.#perMs;
      throw new HeptadError('REPORT_RATE_LIMITED', undefined, {
        detail: { retryAfterSeconds: Number.isFinite(waitMs) ? Math.max(1, Math.ceil(waitMs / 1000)) : 3600 },
      });
    }
    if (this.#buckets.size >= 100_000 && !this.#buckets.has(deviceId)) this.#sweep(nowMs);
    this.#buckets.set(deviceId, { tokens: tokens - cost, at: nowMs });
  }

  /** Forgets devices whose bucket has refilled: they are indistinguishable from new ones. */
  #sweep(nowMs: number): void {
    for (const [id, b] of this.#buckets) {
      if (b.tokens + (nowMs - b.at) * this.#perMs >= this.#burst) this.#buckets.delete(id);
    }
  }
}
