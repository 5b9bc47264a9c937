import type { Logger } from 'pino';
import type { Store } from '../store/store.ts';

/** How often the retention job runs. */
export const RETENTION_INTERVAL_MS = 3_600_000;

/**
 * The background job that enforces the error-report retention period: it deletes reports older
 * than `retentionDays` (and buckets left empty). Reads filter on the same cutoff, so nothing
 * older is returned even between runs. Safe to run in several service processes at once.
 */
export class ErrorReportRetention {
  readonly #store: Store;
  readonly #clock: () => Date;
  readonly #retentionMs: number;
  readonly #log: Logger | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(store: Store, clock: () => Date, retentionDays: number, log?: Logger) {
    this.#store = store;
    this.#clock = clock;
    this.#retentionMs = retentionDays * 86_400_000;
    this.#log = log;
  }

  /** One pass; returns the number of reports deleted. */
  runOnce(): Promise<number> {
    this.#running ??= (async () => {
      try {
        const cutoff = new Date(this.#clock().getTime() - this.#retentionMs).toISOString();
        const n = await this.#store.platform().errorReportRetention.purge(cutoff);
        if (n > 0) this.#log?.info({ deleted: n, cutoff }, 'error reports past retention deleted');
        return n;
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  start(intervalMs = RETENTION_INTERVAL_MS): void {
    if (this.#timer) return;
    const tick = () => {
      if (!this.#timer) return;
      this.runOnce().catch((err: unknown) => this.#log?.error({ err }, 'error-report retention failed'));
    };
    this.#timer = setInterval(tick, intervalMs);
    this.#timer.unref();
    setImmediate(tick);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }
}
