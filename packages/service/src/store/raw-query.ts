import { CompiledQuery } from 'kysely';
import type { Dialect } from './migrations.ts';
import type { SyncSqlite } from './node-sqlite-dialect.ts';

/**
 * Where fixed SQL runs: the dialect, and for the embedded SQLite store outside a transaction, a
 * synchronous reader on its one connection (skipping the driver's async queue; used only when
 * no transaction is open, so a read never sees another request's uncommitted writes).
 */
export interface SqlTarget {
  readonly dialect: Dialect;
  readonly sync?: SyncSqlite | undefined;
}

/**
 * Hot-path queries as fixed SQL text: Kysely's query builder costs tens of microseconds per
 * query to compile, more than SQLite takes to run a point lookup. Text is written with `?`
 * placeholders and numbered for PostgreSQL once, at construction. Keep it to portable SQL.
 */
/** Anything that executes a compiled query: a Kysely instance or a transaction over any schema. */
interface Executor {
  executeQuery<R>(query: CompiledQuery<R>): Promise<{ rows: R[]; numAffectedRows?: bigint }>;
}

export class RawQuery<Row> {
  readonly #text: { sqlite: string; postgres: string };

  constructor(text: string) {
    let n = 0;
    this.#text = { sqlite: text, postgres: text.replace(/\?/g, () => `$${++n}`) };
  }

  /** Runs a read; the synchronous SQLite path when the target allows it now. */
  async all(db: Executor, target: SqlTarget, params: readonly unknown[]): Promise<Row[]> {
    if (target.sync?.idle()) return target.sync.all(this.#text.sqlite, params) as Row[];
    const r = await db.executeQuery<Row>(CompiledQuery.raw(this.#text[target.dialect], [...params]));
    return r.rows;
  }

  async first(db: Executor, target: SqlTarget, params: readonly unknown[]): Promise<Row | undefined> {
    return (await this.all(db, target, params))[0];
  }

  /** Runs a write (always through the driver, so it queues behind open transactions). */
  async run(db: Executor, target: SqlTarget, params: readonly unknown[]): Promise<number> {
    const r = await db.executeQuery(CompiledQuery.raw(this.#text[target.dialect], [...params]));
    return Number(r.numAffectedRows ?? 0n);
  }
}
