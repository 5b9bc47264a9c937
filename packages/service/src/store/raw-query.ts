import { CompiledQuery } from 'kysely';
import type { Dialect } from './migrations.ts';

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

  async all(db: Executor, dialect: Dialect, params: readonly unknown[]): Promise<Row[]> {
    const r = await db.executeQuery<Row>(CompiledQuery.raw(this.#text[dialect], [...params]));
    return r.rows;
  }

  async first(db: Executor, dialect: Dialect, params: readonly unknown[]): Promise<Row | undefined> {
    return (await this.all(db, dialect, params))[0];
  }

  /** Runs a write; returns the number of rows it changed. */
  async run(db: Executor, dialect: Dialect, params: readonly unknown[]): Promise<number> {
    const r = await db.executeQuery(CompiledQuery.raw(this.#text[dialect], [...params]));
    return Number(r.numAffectedRows ?? 0n);
  }
}
