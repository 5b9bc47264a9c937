import { type Kysely, sql } from 'kysely';
import type {
  Database,
  TufKeysTable,
  TufMetadataTable,
  TufRepositoryName,
  TufRoleName,
} from '../store/schema.ts';

/** A metadata file's head: its version and expiry, without the body. */
export interface MetadataHead {
  role: TufRoleName;
  version: number;
  expiresAt: string;
  contentDigest: string | null;
}

/** How many versions of each non-root role a scope keeps: a device mid-refresh still finds its files. */
export const KEEP_VERSIONS = 3;

/**
 * The TUF tables of one tenant (via Store.forTenant): repositories (with the version counter
 * that is also their write lock), keys and signed metadata. Every query filters on the tenant.
 */
export class TufStore {
  readonly #db: Kysely<Database>;
  readonly #tenantId: string;

  constructor(db: Kysely<Database>, tenantId: string) {
    this.#db = db;
    this.#tenantId = tenantId;
  }

  async hasRepository(repo: TufRepositoryName): Promise<boolean> {
    const r = await this.#db
      .selectFrom('tuf_repositories')
      .select('counter')
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', repo)
      .executeTakeFirst();
    return r !== undefined;
  }

  /**
   * Creates the repository row if missing, then locks it for the rest of the transaction (an
   * UPDATE takes PostgreSQL's row lock; SQLite has one writer anyway). Every metadata write of
   * the repository runs under this lock, so two service processes never draw the same version
   * nor both re-sign the same file: the second one re-reads and finds the work done.
   */
  async lock(repo: TufRepositoryName, now: string): Promise<void> {
    await this.#db
      .insertInto('tuf_repositories')
      .values({ tenant_id: this.#tenantId, repository: repo, counter: 0, created_at: now })
      .onConflict((oc) => oc.columns(['tenant_id', 'repository']).doNothing())
      .execute();
    await this.#db
      .updateTable('tuf_repositories')
      .set({ counter: sql<number>`counter` })
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', repo)
      .execute();
  }

  /** The next version of the repository's tenant-wide counter (call under lock()). */
  async nextVersion(repo: TufRepositoryName): Promise<number> {
    const r = await this.#db
      .updateTable('tuf_repositories')
      .set({ counter: sql<number>`counter + 1` })
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', repo)
      .returning('counter')
      .executeTakeFirstOrThrow();
    return Number(r.counter);
  }

  /** Every key of the repository, active and retired, oldest first. */
  async keys(repo: TufRepositoryName): Promise<TufKeysTable[]> {
    return this.#db
      .selectFrom('tuf_keys')
      .selectAll()
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', repo)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
  }

  async insertKey(row: Omit<TufKeysTable, 'tenant_id'>): Promise<void> {
    await this.#db
      .insertInto('tuf_keys')
      .values({ ...row, tenant_id: this.#tenantId })
      .execute();
  }

  async retireKey(id: string, now: string): Promise<void> {
    await this.#db
      .updateTable('tuf_keys')
      .set({ retired_at: now })
      .where('tenant_id', '=', this.#tenantId)
      .where('id', '=', id)
      .execute();
  }

  /** The newest version of each role in a scope (root: only in scope ''). */
  async heads(repo: TufRepositoryName, scope: string): Promise<Partial<Record<TufRoleName, MetadataHead>>> {
    const rows = await this.#db
      .selectFrom('tuf_metadata')
      .select(['role', 'version', 'expires_at', 'content_digest'])
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', repo)
      .where('scope', '=', scope)
      .where('role', '!=', 'root')
      .orderBy('version', 'desc')
      .execute();
    const out: Partial<Record<TufRoleName, MetadataHead>> = {};
    for (const r of rows) {
      out[r.role] ??= {
        role: r.role,
        version: Number(r.version),
        expiresAt: r.expires_at,
        contentDigest: r.content_digest,
      };
    }
    const root = await this.#db
      .selectFrom('tuf_metadata')
      .select(['role', 'version', 'expires_at', 'content_digest'])
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', repo)
      .where('scope', '=', '')
      .where('role', '=', 'root')
      .orderBy('version', 'desc')
      .limit(1)
      .executeTakeFirst();
    if (root)
      out.root = {
        role: 'root',
        version: Number(root.version),
        expiresAt: root.expires_at,
        contentDigest: root.content_digest,
      };
    return out;
  }

  async body(
    repo: TufRepositoryName,
    scope: string,
    role: TufRoleName,
    version: number,
  ): Promise<string | undefined> {
    const r = await this.#db
      .selectFrom('tuf_metadata')
      .select('body')
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', repo)
      .where('scope', '=', role === 'root' ? '' : scope)
      .where('role', '=', role)
      .where('version', '=', version)
      .executeTakeFirst();
    return r?.body;
  }

  /**
   * Stores a new version. Older versions of a non-root role beyond the newest KEEP_VERSIONS are
   * dropped: nothing names them any more once the new timestamp is out. Root versions stay.
   */
  async insert(row: Omit<TufMetadataTable, 'tenant_id'>): Promise<void> {
    await this.#db
      .insertInto('tuf_metadata')
      .values({ ...row, tenant_id: this.#tenantId })
      .execute();
    if (row.role === 'root') return;
    const keep = await this.#db
      .selectFrom('tuf_metadata')
      .select('version')
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', row.repository)
      .where('scope', '=', row.scope)
      .where('role', '=', row.role)
      .orderBy('version', 'desc')
      .offset(KEEP_VERSIONS - 1)
      .limit(1)
      .executeTakeFirst();
    if (!keep) return;
    await this.#db
      .deleteFrom('tuf_metadata')
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', row.repository)
      .where('scope', '=', row.scope)
      .where('role', '=', row.role)
      .where('version', '<', Number(keep.version))
      .execute();
  }

  /** The device groups that have director metadata (the others get theirs on first request). */
  async directorScopes(): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('tuf_metadata')
      .select('scope')
      .distinct()
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', 'director')
      .where('scope', '!=', '')
      .orderBy('scope')
      .execute();
    return rows.map((r) => r.scope);
  }

  /** Drops a deleted device group's director metadata. */
  async dropScope(scope: string): Promise<void> {
    await this.#db
      .deleteFrom('tuf_metadata')
      .where('tenant_id', '=', this.#tenantId)
      .where('repository', '=', 'director')
      .where('scope', '=', scope)
      .execute();
  }
}

/** Platform-wide: which tenants have which TUF repositories (runtime releases and the re-sign job). */
export class TufRepositoryIndex {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async list(): Promise<Array<{ tenantId: string; repository: TufRepositoryName }>> {
    const rows = await this.#db
      .selectFrom('tuf_repositories')
      .select(['tenant_id', 'repository'])
      .orderBy('tenant_id')
      .orderBy('repository')
      .execute();
    return rows.map((r) => ({ tenantId: r.tenant_id, repository: r.repository }));
  }
}
