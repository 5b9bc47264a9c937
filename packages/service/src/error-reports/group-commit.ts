import type { Store } from '../store/store.ts';
import type { PreparedReport } from './report-store.ts';

/** Most upload batches one transaction takes. */
export const MAX_GROUP = 64;

interface Pending {
  readonly tenantId: string;
  readonly device: { deviceId: string; deviceGroupId: string | null };
  readonly reports: readonly PreparedReport[];
  readonly now: Date;
  resolve(accepted: number): void;
  reject(e: unknown): void;
}

/**
 * Group commit for error-report batches. Uploads that arrive while a transaction is running wait
 * and are then written together in the next one: one commit for many batches, which writes each
 * touched index page once instead of once per batch (on SQLite, a batch of 100 random report ids
 * dirties about as many pages as a group of sixteen). Each caller is answered only after the
 * transaction holding its batch has committed, so "acknowledged" still means "stored".
 *
 * Each batch goes through its own tenant's store (tenancy by construction). If a group's
 * transaction fails, every batch in it is tried again in a transaction of its own, so one batch
 * the store refuses cannot fail the batches of other devices that happened to share its group.
 */
export class IngestGroupCommit {
  readonly #store: Store;
  #pending: Pending[] = [];
  #running = false;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Stores one device's batch; resolves with how many reports were new, after the commit. */
  ingest(
    tenantId: string,
    device: { deviceId: string; deviceGroupId: string | null },
    reports: readonly PreparedReport[],
    now: Date,
  ): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ tenantId, device, reports, now, resolve, reject });
      if (!this.#running) this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#pending.length > 0) {
        const group = this.#pending.splice(0, MAX_GROUP);
        await this.#commit(group);
      }
    } finally {
      this.#running = false;
    }
  }

  async #commit(group: Pending[]): Promise<void> {
    let counts: number[];
    try {
      counts = await this.#store.transaction(async (s) => {
        const out: number[] = [];
        for (const p of group) {
          out.push(await s.forTenant(p.tenantId).errorReports.ingest(p.device, p.reports, p.now));
        }
        return out;
      });
    } catch (e) {
      if (group.length === 1) {
        group[0]?.reject(e);
        return;
      }
      for (const p of group) await this.#commit([p]);
      return;
    }
    group.forEach((p, i) => {
      p.resolve(counts[i] ?? 0);
    });
  }
}
