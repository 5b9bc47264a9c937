import type { Store } from '../store/store.ts';
import type { PreparedReport } from './report-store.ts';

/** Most upload batches one transaction takes. */
export const MAX_GROUP = 64;
/**
 * Groups being committed at once. PostgreSQL: two, on two pool connections, so the service
 * prepares the next group while the server writes one (with a single group in flight the batches
 * of the group all wait on it, the service idles, and service and server take turns on the
 * CPUs). SQLite has one connection: one.
 */
export const DEFAULT_GROUPS_IN_FLIGHT = { postgres: 2, sqlite: 1 } as const;

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
  readonly #maxInFlight: number;
  #pending: Pending[] = [];
  #inFlight = 0;

  constructor(store: Store, groupsInFlight = DEFAULT_GROUPS_IN_FLIGHT[store.dialect]) {
    this.#store = store;
    this.#maxInFlight = groupsInFlight;
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
      this.#drain();
    });
  }

  /** Starts a group from what waits, while fewer than the limit are being committed. */
  #drain(): void {
    while (this.#inFlight < this.#maxInFlight && this.#pending.length > 0) {
      const group = this.#pending.splice(0, MAX_GROUP);
      this.#inFlight++;
      void this.#commit(group).finally(() => {
        this.#inFlight--;
        this.#drain();
      });
    }
  }

  async #commit(group: Pending[]): Promise<void> {
    // The group's batches by tenant, each tenant's in arrival order (the order decides which
    // batch a report id sent twice counts as new).
    const byTenant = new Map<string, Pending[]>();
    for (const p of group) {
      const list = byTenant.get(p.tenantId);
      if (list) list.push(p);
      else byTenant.set(p.tenantId, [p]);
    }
    const counts = new Map<Pending, number>();
    const store = async (s: Store, tenantId: string, batches: Pending[]) => {
      const n = await s.forTenant(tenantId).errorReports.ingestBatches(batches);
      batches.forEach((p, i) => {
        counts.set(p, n[i] ?? 0);
      });
    };
    try {
      // One tenant (the usual group): ingestBatches is one transaction by itself — on
      // PostgreSQL one statement, with no BEGIN and COMMIT round trips around it.
      const [only] = byTenant;
      if (byTenant.size === 1 && only) await store(this.#store, only[0], only[1]);
      else {
        await this.#store.transaction(async (s) => {
          for (const [tenantId, batches] of byTenant) await store(s, tenantId, batches);
        });
      }
    } catch (e) {
      if (group.length === 1) {
        group[0]?.reject(e);
        return;
      }
      for (const p of group) await this.#commit([p]);
      return;
    }
    for (const p of group) p.resolve(counts.get(p) ?? 0);
  }
}
