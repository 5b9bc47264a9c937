import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/** Prepared statements kept per SQL text; Kysely emits a small fixed set of queries. */
const STATEMENT_CACHE_MAX = 512;

/**
 * Adapts Node's built-in `node:sqlite` to the better-sqlite3-shaped interface Kysely's
 * SqliteDialect drives, with a bounded prepared-statement cache (statement preparation is the
 * most expensive step of a small query).
 */
/** Synchronous reads on the one connection, allowed only while no transaction is open on it. */
export interface SyncSqlite {
  idle(): boolean;
  all(sql: string, parameters: readonly unknown[]): unknown[];
}

export function openNodeSqlite(path: string): SqliteDatabase & { raw: DatabaseSync; sync: SyncSqlite } {
  const db = new DatabaseSync(path);
  const cache = new Map<string, { stmt: StatementSync; reader: boolean }>();
  const prepare = (sql: string) => {
    let entry = cache.get(sql);
    if (!entry) {
      const stmt = db.prepare(sql);
      entry = { stmt, reader: stmt.columns().length > 0 };
      if (cache.size >= STATEMENT_CACHE_MAX) {
        const first = cache.keys().next();
        if (!first.done) cache.delete(first.value);
      }
      cache.set(sql, entry);
    }
    return entry;
  };
  return {
    raw: db,
    sync: {
      idle: () => db.isOpen && !db.isTransaction,
      all: (sql, parameters) => prepare(sql).stmt.all(...(parameters as never[])) as unknown[],
    },
    close() {
      cache.clear();
      db.close();
    },
    prepare(sql: string): SqliteStatement {
      const { stmt, reader } = prepare(sql);
      return {
        reader,
        all: (parameters) => stmt.all(...(parameters as never[])) as unknown[],
        run: (parameters) => {
          const r = stmt.run(...(parameters as never[]));
          return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
        },
        iterate: (parameters) => stmt.iterate(...(parameters as never[])) as IterableIterator<unknown>,
      };
    },
  };
}
