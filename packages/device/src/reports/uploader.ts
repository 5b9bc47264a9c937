/**
 * Uploads the report queue to the service in batches over mTLS with the device certificate
 * (POST /v1/device/error-reports). Idempotent: a batch is sealed before it is sent, and removed
 * only after the service answered that it holds it (it answers only after its commit), so an
 * upload cut at any point — request lost, answer lost, device or service restarted — is retried
 * with the same report ids and the service stores each report exactly once.
 */
import { type ErrorReportBatchResult, HeptadError, isHeptadError, MAX_REPORT_BATCH } from '@heptad/protocol';
import { DeviceServiceClient, ServiceRefusal } from '../agent/service-client.ts';
import type { DeviceState } from '../state/device-state.ts';
import type { ReportQueue } from './queue.ts';
import { toWire } from './report.ts';

export const ERROR_REPORTS_PATH = '/v1/device/error-reports';

/** What sends one batch: the service client's post, or a test double. */
export interface ReportSender {
  post<T>(path: string, body: unknown): Promise<T>;
}

export interface UploadResult {
  /** batches the service answered */
  batches: number;
  accepted: number;
  duplicate: number;
  /** reports the service refused for good (dropped from the queue and counted as dropped) */
  refused: number;
  /** why the upload stopped before the queue was empty: a code, with a wait for 429 */
  stopped?: { code: string; retryAfterMs?: number };
}

/** Refusals that name bad reports: those reports are dropped, the rest go again. */
const REPORT_REFUSALS = new Set([
  'REQUEST_INVALID',
  'REPORT_TIME_SKEWED',
  'REPORT_TOO_LARGE',
  'REPORT_DEVICE_MISMATCH',
  'REQUEST_BODY_TOO_LARGE',
  'REPORT_BATCH_TOO_LARGE',
]);

/** `reports/3/at` or `body/reports/3` → 3 */
function indexOf(field: string): number | undefined {
  const m = /(?:^|\/)reports\/(\d+)(?:\/|$)/.exec(field);
  return m ? Number(m[1]) : undefined;
}

/**
 * Uploads until the queue is empty or the service stops it (rate limit, authentication, the
 * network). Reports the service refuses as malformed are dropped and counted (so one bad report
 * cannot block the queue forever); every other failure leaves the batch sealed for a retry.
 */
export async function uploadPending(
  queue: ReportQueue,
  sender: ReportSender,
  options: { maxBatch?: number; maxBatches?: number } = {},
): Promise<UploadResult> {
  const maxBatch = Math.min(options.maxBatch ?? MAX_REPORT_BATCH, MAX_REPORT_BATCH);
  const result: UploadResult = { batches: 0, accepted: 0, duplicate: 0, refused: 0 };
  for (let n = 0; n < (options.maxBatches ?? Number.POSITIVE_INFINITY); n++) {
    const batch = queue.takeBatch(maxBatch);
    if (batch.length === 0) return result;
    // Only the sender's failures are handled here; a storage failure (a full disk, a power cut)
    // propagates, so it is never mistaken for a network error.
    let answer: ErrorReportBatchResult;
    try {
      answer = await sender.post<ErrorReportBatchResult>(ERROR_REPORTS_PATH, { reports: batch.map(toWire) });
    } catch (e) {
      if (e instanceof ServiceRefusal && REPORT_REFUSALS.has(e.code)) {
        const bad = new Set(e.fields.map((f) => indexOf(f.field)).filter((i) => i !== undefined));
        // A refusal that names no report is about the batch as a whole: drop it all.
        const ids =
          bad.size > 0 ? batch.filter((_, i) => bad.has(i)).map((r) => r.id) : batch.map((r) => r.id);
        queue.discard(ids);
        result.refused += ids.length;
        continue;
      }
      if (e instanceof ServiceRefusal) {
        result.stopped = {
          code: e.code,
          ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}),
        };
        return result;
      }
      result.stopped = { code: isHeptadError(e) ? e.code : 'DEVICE_SERVICE_UNREACHABLE' };
      return result;
    }
    result.batches += 1;
    result.accepted += answer.accepted;
    result.duplicate += answer.duplicate;
    queue.acknowledge(batch.map((b) => b.id));
  }
  return result;
}

/**
 * A sender that presents the device's current certificate (DeviceState.certificate()) and trusts
 * the platform CA from manufacture. Throws DEVICE_STATE_INVALID when the device holds no
 * certificate yet (attest first).
 */
export function createReportSender(state: DeviceState, timeoutMs = 30_000): DeviceServiceClient {
  const cert = state.certificate();
  if (!cert) throw new HeptadError('DEVICE_STATE_INVALID', 'the device holds no certificate: attest first');
  return new DeviceServiceClient(state.config().serviceUrl, state.platformCaPem(), timeoutMs, {
    chainPem: cert.chainPem,
    keyPem: cert.keyPem,
  });
}
