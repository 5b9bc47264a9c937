import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import type { AttestationStore, NonceRecord } from './attestation-store.ts';

/**
 * Where challenge nonces live until they are answered or expire. On PostgreSQL (several service
 * processes may share the store) they are rows; with the embedded SQLite store the service is
 * one process, so they live in memory — two writes per attestation saved. A restart forgets
 * outstanding nonces: devices ask again (they live 60 s anyway), and a forgotten nonce can only
 * be refused, never accepted.
 */
export interface NonceStore {
  issue(nonce: string, deviceId: string, now: string, expiresAt: string, max: number): Promise<boolean>;
  get(nonce: string): Promise<NonceRecord | undefined>;
  /** false when already burnt (a concurrent replay lost); `trx` joins the caller's transaction */
  burn(nonce: string, now: string, trx?: Kysely<Database>): Promise<boolean>;
  purge(before: string): Promise<void>;
}

export class SqlNonceStore implements NonceStore {
  readonly #store: (db?: Kysely<Database>) => AttestationStore;
  constructor(store: (db?: Kysely<Database>) => AttestationStore) {
    this.#store = store;
  }
  issue(nonce: string, deviceId: string, now: string, expiresAt: string, max: number) {
    return this.#store().addNonceCapped(nonce, deviceId, now, expiresAt, max);
  }
  get(nonce: string) {
    return this.#store().getNonce(nonce);
  }
  burn(nonce: string, now: string, trx?: Kysely<Database>) {
    return this.#store(trx).burnNonce(nonce, now);
  }
  async purge(before: string) {
    await this.#store().purgeNonces(before);
  }
}

/** The hard cap on nonces held in memory, whatever the per-device cap allows. */
export const MEMORY_NONCE_LIMIT = 1_000_000;

export class MemoryNonceStore implements NonceStore {
  readonly #nonces = new Map<string, { deviceId: string; expiresAt: string; usedAt: string | null }>();
  readonly #outstanding = new Map<string, number>();

  async issue(
    nonce: string,
    deviceId: string,
    now: string,
    expiresAt: string,
    max: number,
  ): Promise<boolean> {
    if (this.#nonces.size >= MEMORY_NONCE_LIMIT) await this.purge(now);
    if (this.#nonces.size >= MEMORY_NONCE_LIMIT) return false;
    // Per-device count of unanswered nonces (burn and purge keep it exact).
    let open = this.#outstanding.get(deviceId) ?? 0;
    if (open >= max) {
      await this.purge(now);
      open = this.#outstanding.get(deviceId) ?? 0;
      if (open >= max) return false;
    }
    this.#nonces.set(nonce, { deviceId, expiresAt, usedAt: null });
    this.#outstanding.set(deviceId, open + 1);
    return true;
  }

  async get(nonce: string): Promise<NonceRecord | undefined> {
    const r = this.#nonces.get(nonce);
    return r ? { ...r } : undefined;
  }

  async burn(nonce: string, now: string): Promise<boolean> {
    const r = this.#nonces.get(nonce);
    if (!r || r.usedAt !== null) return false;
    r.usedAt = now;
    this.#release(r.deviceId);
    return true;
  }

  /** Forgets expired nonces; `before` is the current time (anything expired is gone). */
  async purge(before: string): Promise<void> {
    for (const [k, r] of this.#nonces) {
      if (r.expiresAt <= before) {
        this.#nonces.delete(k);
        if (r.usedAt === null) this.#release(r.deviceId);
      }
    }
  }

  #release(deviceId: string): void {
    const n = (this.#outstanding.get(deviceId) ?? 1) - 1;
    if (n <= 0) this.#outstanding.delete(deviceId);
    else this.#outstanding.set(deviceId, n);
  }
}
