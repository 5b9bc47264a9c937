import { randomUUID } from 'node:crypto';
import { HeptadError } from '@heptad/protocol';
import type { Kysely } from 'kysely';
import { AuditStore } from '../audit/audit-store.ts';
import type { ChangeContext, Principal } from '../context.ts';
import { mapUnique } from '../store/errors.ts';
import { RawQuery, type SqlTarget } from '../store/raw-query.ts';
import type { Database, Role, TenantsTable, UserRole, UsersTable } from '../store/schema.ts';
import { createToken, hashToken } from './tokens.ts';

export interface Tenant {
  id: string;
  name: string;
  createdAt: string;
}

export interface User {
  id: string;
  tenantId: string | null;
  email: string;
  role: UserRole;
  createdAt: string;
}

const toTenant = (r: TenantsTable): Tenant => ({ id: r.id, name: r.name, createdAt: r.created_at });
const toUser = (r: UsersTable): User => ({
  id: r.id,
  tenantId: r.tenant_id,
  email: r.email,
  role: r.role,
  createdAt: r.created_at,
});

/** Tenants and the platform operator: platform-wide, reached only through Store.platform(). */
export class TenantStore {
  readonly #db: Kysely<Database>;
  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(ctx: ChangeContext, name: string): Promise<Tenant> {
    const existing = await this.#db
      .selectFrom('tenants')
      .select('id')
      .where('name', '=', name)
      .executeTakeFirst();
    if (existing) throw new HeptadError('TENANT_NAME_TAKEN');
    const row: TenantsTable = { id: randomUUID(), name, created_at: ctx.now.toISOString() };
    await mapUnique('TENANT_NAME_TAKEN', () => this.#db.insertInto('tenants').values(row).execute());
    await new AuditStore(this.#db).record(ctx, {
      tenantId: row.id,
      action: 'tenant.created',
      targetType: 'tenant',
      targetId: row.id,
      detail: { name },
    });
    return toTenant(row);
  }

  async list(): Promise<Tenant[]> {
    const rows = await this.#db.selectFrom('tenants').selectAll().orderBy('name').execute();
    return rows.map(toTenant);
  }

  async get(id: string): Promise<Tenant> {
    const row = await this.#db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new HeptadError('TENANT_NOT_FOUND');
    return toTenant(row);
  }
}

export interface CreatedUser {
  user: User;
  /** Shown once; only its hash is stored. */
  token: string;
  tokenExpiresAt: string | null;
}

const RESOLVE_TOKEN = new RawQuery<{
  userId: string;
  email: string;
  role: UserRole;
  tenantId: string | null;
  expires_at: string | null;
}>(
  'select u.id as "userId", u.email, u.role, u.tenant_id as "tenantId", t.expires_at ' +
    'from api_tokens t inner join users u on u.id = t.user_id where t.token_hash = ?',
);

/** Users and their API tokens. */
export class UserStore {
  readonly #db: Kysely<Database>;
  readonly #sql: SqlTarget;
  constructor(db: Kysely<Database>, sql: SqlTarget) {
    this.#db = db;
    this.#sql = sql;
  }

  /** The platform operator, created once on first start; returns null when it already exists. */
  async createOperatorIfMissing(now: Date): Promise<CreatedUser | null> {
    const existing = await this.#db
      .selectFrom('users')
      .select('id')
      .where('role', '=', 'Operator')
      .executeTakeFirst();
    if (existing) return null;
    return this.#insert(null, 'operator@heptad.local', 'Operator', now, null);
  }

  /** A fresh token for the operator (used when DATA/operator-token was lost). */
  async rotateOperatorToken(now: Date): Promise<string> {
    const op = await this.#db
      .selectFrom('users')
      .select('id')
      .where('role', '=', 'Operator')
      .executeTakeFirstOrThrow();
    await this.#db.deleteFrom('api_tokens').where('user_id', '=', op.id).execute();
    const token = createToken();
    await this.#db
      .insertInto('api_tokens')
      .values({
        id: randomUUID(),
        user_id: op.id,
        token_hash: hashToken(token),
        created_at: now.toISOString(),
        expires_at: null,
      })
      .execute();
    return token;
  }

  async create(
    ctx: ChangeContext,
    tenantId: string,
    email: string,
    role: Role,
    expiresAt: Date | null,
  ): Promise<CreatedUser> {
    const tenant = await this.#db
      .selectFrom('tenants')
      .select('id')
      .where('id', '=', tenantId)
      .executeTakeFirst();
    if (!tenant) throw new HeptadError('TENANT_NOT_FOUND');
    const taken = await this.#db
      .selectFrom('users')
      .select('id')
      .where('email', '=', email)
      .executeTakeFirst();
    if (taken) throw new HeptadError('USER_EMAIL_TAKEN');
    const created = await this.#insert(tenantId, email, role, ctx.now, expiresAt);
    await new AuditStore(this.#db).record(ctx, {
      tenantId,
      action: 'user.created',
      targetType: 'user',
      targetId: created.user.id,
      detail: { email, role },
    });
    return created;
  }

  async #insert(
    tenantId: string | null,
    email: string,
    role: UserRole,
    now: Date,
    expiresAt: Date | null,
  ): Promise<CreatedUser> {
    const row: UsersTable = {
      id: randomUUID(),
      tenant_id: tenantId,
      email,
      role,
      created_at: now.toISOString(),
    };
    await mapUnique('USER_EMAIL_TAKEN', () => this.#db.insertInto('users').values(row).execute());
    const token = createToken();
    const tokenExpiresAt = expiresAt ? expiresAt.toISOString() : null;
    await this.#db
      .insertInto('api_tokens')
      .values({
        id: randomUUID(),
        user_id: row.id,
        token_hash: hashToken(token),
        created_at: now.toISOString(),
        expires_at: tokenExpiresAt,
      })
      .execute();
    return { user: toUser(row), token, tokenExpiresAt };
  }

  async list(tenantId: string | null): Promise<User[]> {
    let q = this.#db.selectFrom('users').selectAll();
    q = tenantId === null ? q.where('tenant_id', 'is', null) : q.where('tenant_id', '=', tenantId);
    return (await q.orderBy('email').execute()).map(toUser);
  }

  /** Resolves a token hash to its principal and expiry; undefined when no such token. */
  /** Resolves a token hash to its principal and expiry (every authenticated request: fixed SQL). */
  async resolveToken(
    tokenHash: string,
  ): Promise<{ principal: Principal; expiresAt: string | null } | undefined> {
    const row = await RESOLVE_TOKEN.first(this.#db, this.#sql, [tokenHash]);
    if (!row) return undefined;
    return {
      principal: { userId: row.userId, email: row.email, role: row.role, tenantId: row.tenantId },
      expiresAt: row.expires_at,
    };
  }
}
