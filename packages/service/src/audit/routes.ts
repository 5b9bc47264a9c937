import { Type } from 'typebox';
import { access, principalOf } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import { errorResponses, Limit, NullableString, Timestamp } from '../http/schemas.ts';

const AuditEventSchema = Type.Object(
  {
    id: Type.String(),
    seq: Type.Integer(),
    tenantId: NullableString(),
    actorId: Type.String(),
    actorRole: Type.String(),
    action: Type.String(),
    targetType: Type.String(),
    targetId: Type.String(),
    requestId: Type.String(),
    at: Timestamp,
    detail: Type.Record(Type.String(), Type.Unknown()),
  },
  { $id: 'AuditEvent' },
);

export function auditRoutes(app: App, { store }: RouteDeps): void {
  app.addSchema(AuditEventSchema);
  app.get(
    '/v1/audit',
    {
      config: { access: access.tenant('Administrator', true) },
      schema: {
        tags: ['audit'],
        summary: "The audit log, newest first: the tenant's for an Administrator, all of it for the operator",
        querystring: Type.Object(
          {
            limit: Type.Optional(Limit),
            before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$' })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            items: Type.Array(Type.Ref('AuditEvent')),
            nextCursor: NullableString(),
          }),
          ...errorResponses(),
        },
      },
    },
    async (req) => {
      const p = principalOf(req);
      const audit = p.tenantId === null ? store.platform().audit : store.forTenant(p.tenantId).audit;
      const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
      return audit.list({ limit, ...(req.query.before ? { before: Number(req.query.before) } : {}) });
    },
  );
}
