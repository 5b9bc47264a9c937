import { HeptadError } from '@heptad/protocol';
import { Type } from 'typebox';
import { access, changeContext, principalOf } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import {
  Email,
  errorResponses,
  Name,
  NullableTimestamp,
  NullableUuid,
  Role,
  Timestamp,
  Uuid,
} from '../http/schemas.ts';

const TenantSchema = Type.Object({ id: Uuid, name: Type.String(), createdAt: Timestamp }, { $id: 'Tenant' });
const UserSchema = Type.Object(
  {
    id: Uuid,
    tenantId: NullableUuid,
    email: Type.String(),
    role: Type.String(),
    createdAt: Timestamp,
  },
  { $id: 'User' },
);

/** The longest a token may be made to live, in days. */
export const MAX_TOKEN_DAYS = 3650;

export function tenantRoutes(app: App, { store, clock }: RouteDeps): void {
  app.addSchema(TenantSchema);
  app.addSchema(UserSchema);

  app.post(
    '/v1/tenants',
    {
      config: { access: access.operator },
      schema: {
        tags: ['tenants'],
        summary: 'Create a tenant (operator)',
        body: Type.Object({ name: Name }, { additionalProperties: false }),
        response: { 201: Type.Ref('Tenant'), ...errorResponses(409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenant = await store.transaction((s) => s.platform().tenants.create(ctx, req.body.name));
      return reply.code(201).send(tenant);
    },
  );

  app.get(
    '/v1/tenants',
    {
      config: { access: access.tenant('Reader', true) },
      schema: {
        tags: ['tenants'],
        summary: 'List tenants: all of them for the operator, the own tenant for its users',
        response: { 200: Type.Object({ items: Type.Array(Type.Ref('Tenant')) }), ...errorResponses() },
      },
    },
    async (req) => {
      const p = principalOf(req);
      const tenants = store.platform().tenants;
      return { items: p.tenantId === null ? await tenants.list() : [await tenants.get(p.tenantId)] };
    },
  );

  app.get(
    '/v1/tenants/current',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['tenants'],
        summary: "The caller's own tenant",
        response: { 200: Type.Ref('Tenant'), ...errorResponses() },
      },
    },
    async (req) => {
      const p = principalOf(req);
      return store.platform().tenants.get(p.tenantId ?? '');
    },
  );

  app.get(
    '/v1/tenants/:tenantId',
    {
      config: { access: access.tenant('Reader', true) },
      schema: {
        tags: ['tenants'],
        summary: 'Show a tenant',
        params: Type.Object({ tenantId: Uuid }),
        response: { 200: Type.Ref('Tenant'), ...errorResponses(404) },
      },
    },
    async (req) => {
      const p = principalOf(req);
      const id = req.params.tenantId.toLowerCase();
      // A tenant user sees only its own tenant; any other id is "not found", never "forbidden".
      if (p.tenantId !== null && p.tenantId !== id) throw new HeptadError('TENANT_NOT_FOUND');
      return store.platform().tenants.get(id);
    },
  );

  app.post(
    '/v1/users',
    {
      config: { access: access.tenant('Administrator', true) },
      schema: {
        tags: ['users'],
        summary: 'Create a user and its API token (operator, or an Administrator in its own tenant)',
        description: 'The token is in this response only; the service keeps just its SHA-256.',
        body: Type.Object(
          {
            email: Email,
            role: Role,
            tenantId: Type.Optional(Uuid),
            expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TOKEN_DAYS })),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            user: Type.Ref('User'),
            token: Type.String(),
            tokenExpiresAt: NullableTimestamp,
          }),
          ...errorResponses(404, 409),
        },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      const requested = req.body.tenantId?.toLowerCase();
      let tenantId: string;
      if (p.tenantId === null) {
        if (!requested) {
          throw new HeptadError('REQUEST_INVALID', 'the operator must name the tenant', {
            fields: [{ field: 'body/tenantId', problem: 'is required for the operator' }],
          });
        }
        tenantId = requested;
      } else {
        if (requested !== undefined && requested !== p.tenantId) throw new HeptadError('TENANT_NOT_FOUND');
        tenantId = p.tenantId;
      }
      const ctx = changeContext(req, clock);
      const days = req.body.expiresInDays;
      const expiresAt = days === undefined ? null : new Date(ctx.now.getTime() + days * 86_400_000);
      const created = await store.transaction((s) =>
        s.platform().users.create(ctx, tenantId, req.body.email.toLowerCase(), req.body.role, expiresAt),
      );
      return reply.code(201).header('cache-control', 'no-store').send(created);
    },
  );

  app.get(
    '/v1/users',
    {
      config: { access: access.tenant('Administrator', true) },
      schema: {
        tags: ['users'],
        summary: "List a tenant's users (operator: ?tenantId=…)",
        querystring: Type.Object({ tenantId: Type.Optional(Uuid) }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(Type.Ref('User')) }), ...errorResponses(404) },
      },
    },
    async (req) => {
      const p = principalOf(req);
      const requested = req.query.tenantId?.toLowerCase();
      if (p.tenantId !== null && requested !== undefined && requested !== p.tenantId) {
        throw new HeptadError('TENANT_NOT_FOUND');
      }
      const tenantId = p.tenantId ?? requested ?? null;
      if (tenantId !== null) await store.platform().tenants.get(tenantId);
      return { items: await store.platform().users.list(tenantId) };
    },
  );
}
