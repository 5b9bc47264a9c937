import { Type } from 'typebox';
import { access, changeContext, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import { DeviceGroupRef, errorResponses, Limit, Timestamp, Uuid } from '../http/schemas.ts';
import { MAX_DEPLOYMENT_IMAGES } from './deployment-store.ts';

const DeploymentSchema = Type.Object(
  {
    id: Uuid,
    tenantId: Uuid,
    deviceGroupId: Uuid,
    deviceGroupName: Type.String(),
    productName: Type.String(),
    current: Type.Boolean({ description: 'the newest deployment of its group: what its devices must run' }),
    images: Type.Array(
      Type.Object({
        id: Uuid,
        componentId: Uuid,
        name: Type.String(),
        version: Type.String(),
        securityVersion: Type.Integer(),
        digest: Type.String(),
      }),
    ),
    createdBy: Uuid,
    createdAt: Timestamp,
  },
  { $id: 'Deployment' },
);

export function deploymentRoutes(app: App, { store, clock, updates }: RouteDeps): void {
  app.addSchema(DeploymentSchema);

  app.post(
    '/v1/deployments',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['deployments'],
        summary: 'Deploy images to a device group: the newest deployment is what its devices must run',
        body: Type.Object(
          {
            deviceGroup: DeviceGroupRef,
            imageIds: Type.Array(Uuid, { minItems: 1, maxItems: MAX_DEPLOYMENT_IMAGES }),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Ref('Deployment'), ...errorResponses(404, 409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      // The group's director metadata names the new images in the same transaction.
      const d = await store.transaction(async (s) => {
        const created = await s
          .forTenant(tenantId)
          .deployments.create(ctx, req.body.deviceGroup, req.body.imageIds);
        await updates.groupChanged(s, tenantId, created.deviceGroupId);
        return created;
      });
      return reply.code(201).send(d);
    },
  );

  app.get(
    '/v1/deployments',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['deployments'],
        summary: "A device group's deployments, newest (current) first",
        querystring: Type.Object(
          { deviceGroup: DeviceGroupRef, limit: Type.Optional(Limit) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(Type.Ref('Deployment')) }), ...errorResponses(404) },
      },
    },
    async (req) => ({
      items: await tenantScope(store, req).deployments.list(
        req.query.deviceGroup,
        req.query.limit === undefined ? 100 : Number(req.query.limit),
      ),
    }),
  );

  app.get(
    '/v1/deployments/:id',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['deployments'],
        summary: 'One deployment',
        params: Type.Object({ id: Uuid }),
        response: { 200: Type.Ref('Deployment'), ...errorResponses(404) },
      },
    },
    async (req) => tenantScope(store, req).deployments.get(req.params.id),
  );
}
