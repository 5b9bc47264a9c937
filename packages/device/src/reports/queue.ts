/**
 * The bounded durable queue of error reports in the device state folder (`reports/queue.json`),
 * written through the crash-safe storage layer: each change is one atomic replace, so after a
 * power cut at any instant the queue holds the state before or after that change, never a mix.
 *
 * - Identical events (same component, image, kind and signature) within the coalescing window
 *   fold into one report with a count, so a crash loop costs one report, not thousands.
 * - The queue is bounded by count and bytes; when full, the oldest reports are dropped and a
 *   dropped-counter is kept, which the next upload reports as a `reports-dropped` report.
 * - A report handed to an upload is sealed: never changed again, so a retry after a lost answer
 *   sends exactly what the service may already hold under that id (idempotent by UUID).
 */
import { type ErrorReportKind, HeptadError, RUNTIME_COMPONENT_ID, signatureOf } from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';
import {
  fitReport,
  isUuid,
  newReportId,
  type QueuedReport,
  type ReportEvent,
  sanitizeDetails,
} from './report.ts';

export const REPORT_QUEUE_PATH = 'reports/queue.json';
export const DEFAULT_QUEUE_CAPACITY = 256;
export const DEFAULT_QUEUE_MAX_BYTES = 512 * 1024;
export const DEFAULT_COALESCE_WINDOW_MS = 60_000;
/** Upload when this many reports wait (besides at boot and daily). */
export const DEFAULT_UPLOAD_THRESHOLD = 50;
export const DEFAULT_UPLOAD_INTERVAL_MS = 24 * 3_600_000;

export interface ReportQueueOptions {
  readonly deviceId: string;
  /** this boot's id (UUID): reports of one boot share it */
  readonly bootId: string;
  readonly clock?: () => Date;
  readonly newId?: () => string;
  readonly capacity?: number;
  readonly maxBytes?: number;
  readonly windowMs?: number;
  readonly uploadThreshold?: number;
  readonly uploadIntervalMs?: number;
}

/** The queue file. */
interface QueueFile {
  schema: 1;
  /** reports dropped since the counter was last turned into a report */
  dropped: number;
  lastUploadAt: string | null;
  reports: QueuedReport[];
}

/** The later of two ISO-8601 UTC times (they sort as text). */
const later = (a: string, b: string) => [a, b].sort()[1] as string;

const EMPTY: QueueFile = { schema: 1, dropped: 0, lastUploadAt: null, reports: [] };

function isQueued(v: unknown): v is QueuedReport {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    isUuid(r['id']) &&
    typeof r['deviceId'] === 'string' &&
    isUuid(r['componentId']) &&
    isUuid(r['bootId']) &&
    typeof r['at'] === 'string' &&
    typeof r['lastAt'] === 'string' &&
    typeof r['kind'] === 'string' &&
    typeof r['signature'] === 'string' &&
    Number.isInteger(r['count']) &&
    typeof r['details'] === 'object' &&
    r['details'] !== null &&
    typeof r['sealed'] === 'boolean'
  );
}

/** Reads the queue file; `strict` throws REPORT_QUEUE_INVALID on a damaged one instead of starting empty. */
export function readQueueFile(storage: Storage, strict = false): QueueFile {
  const bytes = storage.read(REPORT_QUEUE_PATH);
  if (bytes === undefined) return { ...EMPTY, reports: [] };
  try {
    const v = JSON.parse(bytes.toString('utf8')) as Partial<QueueFile>;
    if (v.schema !== 1 || !Array.isArray(v.reports) || !Number.isInteger(v.dropped)) throw new Error('shape');
    return {
      schema: 1,
      dropped: v.dropped as number,
      lastUploadAt: typeof v.lastUploadAt === 'string' ? v.lastUploadAt : null,
      reports: v.reports.filter(isQueued),
    };
  } catch (cause) {
    // Atomic writes never leave a torn file; only outside damage does. The runtime must keep
    // running and reporting, so it starts a fresh queue (its next write replaces the file).
    if (strict) throw new HeptadError('REPORT_QUEUE_INVALID', `${REPORT_QUEUE_PATH} is damaged`, { cause });
    return { ...EMPTY, reports: [] };
  }
}

export class ReportQueue {
  readonly #storage: Storage;
  readonly #deviceId: string;
  readonly #bootId: string;
  readonly #clock: () => Date;
  readonly #newId: () => string;
  readonly #capacity: number;
  readonly #maxBytes: number;
  readonly #windowMs: number;
  readonly #threshold: number;
  readonly #intervalMs: number;

  constructor(storage: Storage, options: ReportQueueOptions) {
    if (!isUuid(options.bootId)) throw new RangeError('bootId must be a lowercase UUID');
    this.#storage = storage;
    this.#deviceId = options.deviceId;
    this.#bootId = options.bootId;
    this.#clock = options.clock ?? (() => new Date());
    this.#newId = options.newId ?? (() => newReportId(this.#clock().getTime()));
    this.#capacity = options.capacity ?? DEFAULT_QUEUE_CAPACITY;
    this.#maxBytes = options.maxBytes ?? DEFAULT_QUEUE_MAX_BYTES;
    this.#windowMs = options.windowMs ?? DEFAULT_COALESCE_WINDOW_MS;
    this.#threshold = options.uploadThreshold ?? DEFAULT_UPLOAD_THRESHOLD;
    this.#intervalMs = options.uploadIntervalMs ?? DEFAULT_UPLOAD_INTERVAL_MS;
  }

  get deviceId(): string {
    return this.#deviceId;
  }

  #read(): QueueFile {
    return readQueueFile(this.#storage);
  }

  #write(q: QueueFile): void {
    this.#storage.write(REPORT_QUEUE_PATH, Buffer.from(`${JSON.stringify(q)}\n`), 0o600);
  }

  /** Drops the oldest reports beyond the count and byte bounds, counting them. */
  #bound(q: QueueFile): void {
    const size = () => JSON.stringify(q).length;
    while (q.reports.length > this.#capacity || (q.reports.length > 1 && size() > this.#maxBytes)) {
      const oldest = q.reports.shift() as QueuedReport;
      // A dropped-counter report pushed out folds its count back into the counter.
      q.dropped += oldest.kind === 'reports-dropped' ? (oldest.details.dropped ?? 0) : 1;
    }
  }

  /**
   * Records one event, durably, before returning: folded into an identical unsealed report of
   * this boot seen within the window, or appended as a new report (dropping the oldest if full).
   */
  record(event: ReportEvent): QueuedReport {
    const now = this.#clock().toISOString();
    const componentId = isUuid(event.componentId) ? event.componentId : RUNTIME_COMPONENT_ID;
    const imageId = isUuid(event.imageId) ? event.imageId : undefined;
    const details = sanitizeDetails(event.details);
    const signature = signatureOf(event.kind, details);
    const q = this.#read();
    const windowStart = new Date(Date.parse(now) - this.#windowMs).toISOString();
    const i = q.reports.findLastIndex(
      (r) =>
        !r.sealed &&
        r.bootId === this.#bootId &&
        r.componentId === componentId &&
        r.imageId === imageId &&
        r.kind === event.kind &&
        r.signature === signature &&
        r.lastAt >= windowStart,
    );
    let out: QueuedReport;
    const existing = i >= 0 ? q.reports[i] : undefined;
    if (existing && existing.count < 1_000_000) {
      out = { ...existing, count: existing.count + 1, lastAt: later(now, existing.lastAt) };
      q.reports[i] = out;
    } else {
      out = fitReport({
        id: this.#newId(),
        deviceId: this.#deviceId,
        componentId,
        ...(imageId ? { imageId } : {}),
        bootId: this.#bootId,
        at: now,
        lastAt: now,
        kind: event.kind,
        signature,
        count: 1,
        details,
        sealed: false,
      });
      q.reports.push(out);
    }
    this.#bound(q);
    this.#write(q);
    return out;
  }

  /** The queued reports, oldest first. */
  pending(): readonly QueuedReport[] {
    return this.#read().reports;
  }

  /** Reports dropped and not yet reported. */
  dropped(): number {
    return this.#read().dropped;
  }

  lastUploadAt(): string | null {
    return this.#read().lastUploadAt;
  }

  /** Whether an upload is due: reports past the threshold, or any report or drop and a day since the last upload. */
  uploadDue(): boolean {
    const q = this.#read();
    const waiting = q.reports.length + (q.dropped > 0 ? 1 : 0);
    if (waiting === 0) return false;
    if (waiting >= this.#threshold || q.lastUploadAt === null) return true;
    return this.#clock().getTime() - Date.parse(q.lastUploadAt) >= this.#intervalMs;
  }

  /**
   * The next batch to upload, oldest first, sealed in one write. A pending dropped-counter
   * becomes a `reports-dropped` report first, in that same write, so the count is neither lost
   * nor reported twice.
   */
  takeBatch(max: number): QueuedReport[] {
    const q = this.#read();
    let changed = false;
    if (q.dropped > 0) {
      const now = this.#clock().toISOString();
      const details = { dropped: q.dropped };
      q.reports.unshift({
        id: this.#newId(),
        deviceId: this.#deviceId,
        componentId: RUNTIME_COMPONENT_ID,
        bootId: this.#bootId,
        at: now,
        lastAt: now,
        kind: 'reports-dropped' as ErrorReportKind,
        signature: signatureOf('reports-dropped', details),
        count: 1,
        details,
        sealed: true,
      });
      // It may hold the queue one over its capacity until it is sent or the next record.
      q.dropped = 0;
      changed = true;
    }
    const n = Math.min(max, q.reports.length);
    for (let i = 0; i < n; i++) {
      const r = q.reports[i] as QueuedReport;
      if (!r.sealed) {
        q.reports[i] = { ...r, sealed: true };
        changed = true;
      }
    }
    if (changed) this.#write(q);
    return q.reports.slice(0, n);
  }

  /** The service holds these (accepted or duplicate): removed, in one write. */
  acknowledge(ids: readonly string[]): void {
    const gone = new Set(ids);
    const q = this.#read();
    q.reports = q.reports.filter((r) => !gone.has(r.id));
    q.lastUploadAt = this.#clock().toISOString();
    this.#write(q);
  }

  /** The service refused these for good (malformed, skewed): removed and counted as dropped. */
  discard(ids: readonly string[]): void {
    const gone = new Set(ids);
    const q = this.#read();
    const before = q.reports.length;
    q.reports = q.reports.filter((r) => !gone.has(r.id));
    q.dropped += before - q.reports.length;
    this.#write(q);
  }
}
