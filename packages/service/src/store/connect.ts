import { HeptadError } from '@heptad/protocol';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { type Dialect, migrateToLatest } from './migrations.ts';
import { openNodeSqlite, type SyncSqlite } from './node-sqlite-dialect.ts';
import type { Database } from './schema.ts';

export interface ConnectOptions {
  /** `sqlite:PATH` / a file path, or `postgres://…` */
  readonly url: string;
  /** PostgreSQL pool size. */
  readonly poolSize?: number;
}

export interface Connection {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
  /** the embedded SQLite store's synchronous reader (see store/raw-query.ts) */
  readonly sync?: SyncSqlite;
  close(): Promise<void>;
}

const PG_INT8 = 20;

export async function connect(options: ConnectOptions): Promise<Connection> {
  const { url } = options;
  let db: Kysely<Database>;
  let dialect: Dialect;
  let sync: SyncSqlite | undefined;
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    dialect = 'postgres';
    const pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? 10,
      // bigserial audit sequence numbers fit in a JS number for 2^53 events.
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === PG_INT8
            ? (v: string) => Number(v)
            : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
      },
    });
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  } else {
    dialect = 'sqlite';
    const path = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
    const database = openNodeSqlite(path);
    // The embedded store belongs to one service process: exclusive locking (set before WAL, so
    // SQLite never uses the shared-memory index) saves the per-statement locking work, and a
    // second service started on the same data folder is refused at once instead of corrupting
    // nothing slowly. WAL for crash safety, foreign keys on.
    try {
      database.raw.exec(
        'PRAGMA locking_mode = EXCLUSIVE; PRAGMA busy_timeout = 0; PRAGMA journal_mode = WAL; ' +
          'PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; BEGIN IMMEDIATE; COMMIT; PRAGMA busy_timeout = 5000;',
      );
    } catch (cause) {
      database.close();
      throw new HeptadError(
        'DATA_DIR_UNUSABLE',
        `${path} is in use by another Heptad service (or cannot be opened)`,
        {
          cause,
        },
      );
    }
    sync = database.sync;
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
  }
  try {
    await migrateToLatest(db as unknown as Kysely<unknown>, dialect);
  } catch (e) {
    await db.destroy();
    throw e;
  }
  return { db, dialect, ...(sync ? { sync } : {}), close: () => db.destroy() };
}
