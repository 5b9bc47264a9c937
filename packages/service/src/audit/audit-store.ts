import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { ChangeContext } from '../context.ts';
import type { AuditEventsTable, Database } from '../store/schema.ts';

export interface AuditEvent {
  id: string;
  seq: number;
  tenantId: string | null;
  actorId: string;
  actorRole: string;
  action: string;
  targetType: string;
  targetId: string;
  requestId: string;
  at: string;
  detail: Record<string, unknown>;
}

export interface AuditRecord {
  readonly tenantId: string | null;
  readonly action: string;
  readonly targetType: string;
  readonly targetId: string;
  readonly detail?: Record<string, unknown>;
}

function toEvent(r: AuditEventsTable): AuditEvent {
  return {
    id: r.id,
    seq: r.seq,
    tenantId: r.tenant_id,
    actorId: r.actor_id,
    actorRole: r.actor_role,
    action: r.action,
    targetType: r.target_type,
    targetId: r.target_id,
    requestId: r.request_id,
    at: r.at,
    detail: JSON.parse(r.detail) as Record<string, unknown>,
  };
}

export interface AuditPage {
  readonly limit: number;
  /** return events older than this sequence number */
  readonly before?: number;
}

/** Audit records: written in the same transaction as the change they describe. */
export class AuditStore {
  readonly #db: Kysely<Database>;
  /** undefined = platform-wide (operator); a string = that tenant only */
  readonly #tenantId: string | undefined;

  constructor(db: Kysely<Database>, tenantId?: string) {
    this.#db = db;
    this.#tenantId = tenantId;
  }

  async record(ctx: ChangeContext, rec: AuditRecord): Promise<void> {
    await this.#db
      .insertInto('audit_events')
      .values({
        id: randomUUID(),
        tenant_id: rec.tenantId,
        actor_id: ctx.actor.userId,
        actor_role: ctx.actor.role,
        action: rec.action,
        target_type: rec.targetType,
        target_id: rec.targetId,
        request_id: ctx.requestId,
        at: ctx.now.toISOString(),
        detail: JSON.stringify(rec.detail ?? {}),
      } as never)
      .execute();
  }

  async list(page: AuditPage): Promise<{ items: AuditEvent[]; nextCursor: string | null }> {
    let q = this.#db.selectFrom('audit_events').selectAll();
    if (this.#tenantId !== undefined) q = q.where('tenant_id', '=', this.#tenantId);
    if (page.before !== undefined) q = q.where('seq', '<', page.before);
    const rows = await q
      .orderBy('seq', 'desc')
      .limit(page.limit + 1)
      .execute();
    const items = rows.slice(0, page.limit).map(toEvent);
    const last = items.at(-1);
    return { items, nextCursor: rows.length > page.limit && last ? String(last.seq) : null };
  }
}
