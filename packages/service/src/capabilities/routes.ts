import { HeptadError } from '@heptad/protocol';
import { Type } from 'typebox';
import { AuditStore } from '../audit/audit-store.ts';
import { access, changeContext, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import { DeviceId, Empty, errorResponses, Timestamp, Uuid } from '../http/schemas.ts';

/** Azure Sphere's device capabilities. */
export const CAPABILITIES = ['appDevelopment', 'fieldServicing'] as const;
const Capability = Type.Union(CAPABILITIES.map((c) => Type.Literal(c)));
const CapabilitySchema = Type.Object({ capability: Type.String(), addedBy: Uuid, addedAt: Timestamp });

/**
 * Per-device capabilities: appDevelopment lets a device run developer-signed images and takes it
 * out of cloud app updates; fieldServicing allows servicing operations. Administrator only: a
 * capability weakens what a device accepts.
 */
export function capabilityRoutes(app: App, { store, clock }: RouteDeps): void {
  const Params = Type.Object({ deviceId: DeviceId });

  app.get(
    '/v1/devices/:deviceId/capabilities',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['devices'],
        summary: "A device's capabilities",
        params: Params,
        response: { 200: Type.Object({ items: Type.Array(CapabilitySchema) }), ...errorResponses(404) },
      },
    },
    async (req) => {
      const scope = tenantScope(store, req);
      await scope.devices.get(req.params.deviceId);
      const rows = await store.db
        .selectFrom('device_capabilities')
        .selectAll()
        .where('tenant_id', '=', scope.tenantId)
        .where('device_id', '=', req.params.deviceId)
        .orderBy('capability')
        .execute();
      return {
        items: rows.map((r) => ({ capability: r.capability, addedBy: r.added_by, addedAt: r.added_at })),
      };
    },
  );

  app.post(
    '/v1/devices/:deviceId/capabilities',
    {
      config: { access: access.tenant('Administrator') },
      schema: {
        tags: ['devices'],
        summary: 'Give a device a capability (appDevelopment, fieldServicing)',
        params: Params,
        body: Type.Object({ capability: Capability }, { additionalProperties: false }),
        response: { 201: CapabilitySchema, ...errorResponses(404, 409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      const row = await store.transaction(async (s) => {
        await s.forTenant(tenantId).devices.get(req.params.deviceId);
        const exists = await s.db
          .selectFrom('device_capabilities')
          .select('capability')
          .where('device_id', '=', req.params.deviceId)
          .where('capability', '=', req.body.capability)
          .executeTakeFirst();
        if (exists) throw new HeptadError('DEVICE_CAPABILITY_EXISTS');
        const r = {
          tenant_id: tenantId,
          device_id: req.params.deviceId,
          capability: req.body.capability,
          added_by: ctx.actor.userId,
          added_at: ctx.now.toISOString(),
        };
        await s.db.insertInto('device_capabilities').values(r).execute();
        await new AuditStore(s.db, tenantId).record(ctx, {
          tenantId,
          action: 'device.capability-added',
          targetType: 'device',
          targetId: req.params.deviceId,
          detail: { capability: req.body.capability },
        });
        return r;
      });
      return reply
        .code(201)
        .send({ capability: row.capability, addedBy: row.added_by, addedAt: row.added_at });
    },
  );

  app.delete(
    '/v1/devices/:deviceId/capabilities/:capability',
    {
      config: { access: access.tenant('Administrator') },
      schema: {
        tags: ['devices'],
        summary: 'Take a capability from a device',
        params: Type.Object({ deviceId: DeviceId, capability: Capability }),
        response: { 204: Empty, ...errorResponses(404) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      await store.transaction(async (s) => {
        await s.forTenant(tenantId).devices.get(req.params.deviceId);
        const r = await s.db
          .deleteFrom('device_capabilities')
          .where('tenant_id', '=', tenantId)
          .where('device_id', '=', req.params.deviceId)
          .where('capability', '=', req.params.capability)
          .executeTakeFirst();
        if (Number(r.numDeletedRows) === 0) throw new HeptadError('DEVICE_CAPABILITY_NOT_FOUND');
        await new AuditStore(s.db, tenantId).record(ctx, {
          tenantId,
          action: 'device.capability-removed',
          targetType: 'device',
          targetId: req.params.deviceId,
          detail: { capability: req.params.capability },
        });
      });
      return reply.code(204).send(null);
    },
  );
}
