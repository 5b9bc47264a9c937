import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { type Dialect, migrateToLatest } from './migrations.ts';
import { openNodeSqlite } from './node-sqlite-dialect.ts';
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
  close(): Promise<void>;
}

const PG_INT8 = 20;

export async function connect(options: ConnectOptions): Promise<Connection> {
  const { url } = options;
  let db: Kysely<Database>;
  let dialect: Dialect;
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
    // WAL for concurrent readers, foreign keys on, wait instead of failing when busy.
    database.raw.exec(
      'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;',
    );
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
  }
  try {
    await migrateToLatest(db as unknown as Kysely<unknown>, dialect);
  } catch (e) {
    await db.destroy();
    throw e;
  }
  return { db, dialect, close: () => db.destroy() };
}
