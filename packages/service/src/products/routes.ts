import { Type } from 'typebox';
import { access, changeContext, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import {
  Description,
  DeviceGroupRef,
  Empty,
  errorResponses,
  Name,
  OsFeed,
  ProductRef,
  Timestamp,
  UpdatePolicy,
  Uuid,
} from '../http/schemas.ts';

const ProductSchema = Type.Object(
  {
    id: Uuid,
    tenantId: Uuid,
    name: Type.String(),
    description: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'Product' },
);

const DeviceGroupSchema = Type.Object(
  {
    id: Uuid,
    tenantId: Uuid,
    productId: Uuid,
    productName: Type.String(),
    name: Type.String(),
    description: Type.String(),
    osFeed: OsFeed,
    updatePolicy: UpdatePolicy,
    allowPeerMessages: Type.Boolean({
      description: 'devices of this group may message each other under groups/<id>/… on the broker',
    }),
    deviceCount: Type.Integer(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'DeviceGroup' },
);

export function productRoutes(app: App, { store, clock, updates }: RouteDeps): void {
  app.addSchema(ProductSchema);
  app.addSchema(DeviceGroupSchema);
  const ProductParams = Type.Object({ product: ProductRef });
  // "Product/Group" arrives with its slash encoded (%2F), e.g. /v1/device-groups/DW100%2FField%20Test
  const GroupParams = Type.Object({ deviceGroup: DeviceGroupRef });

  app.post(
    '/v1/products',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['products'],
        summary: 'Create a product and its five default device groups',
        body: Type.Object(
          { name: Name, description: Type.Optional(Description) },
          { additionalProperties: false },
        ),
        response: { 201: Type.Ref('Product'), ...errorResponses(409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      const product = await store.transaction((s) =>
        s.forTenant(tenantId).products.create(ctx, req.body.name, req.body.description ?? ''),
      );
      return reply.code(201).send(product);
    },
  );

  app.get(
    '/v1/products',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['products'],
        summary: "List the tenant's products",
        response: { 200: Type.Object({ items: Type.Array(Type.Ref('Product')) }), ...errorResponses() },
      },
    },
    async (req) => ({ items: await tenantScope(store, req).products.list() }),
  );

  app.get(
    '/v1/products/:product',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['products'],
        summary: 'Show a product (by id or name)',
        params: ProductParams,
        response: { 200: Type.Ref('Product'), ...errorResponses(404) },
      },
    },
    async (req) => tenantScope(store, req).products.get(req.params.product),
  );

  app.patch(
    '/v1/products/:product',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['products'],
        summary: 'Rename a product or change its description',
        params: ProductParams,
        body: Type.Object(
          { name: Type.Optional(Name), description: Type.Optional(Description) },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Type.Ref('Product'), ...errorResponses(404, 409) },
      },
    },
    async (req) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      return store.transaction((s) =>
        s.forTenant(tenantId).products.update(ctx, req.params.product, req.body),
      );
    },
  );

  app.delete(
    '/v1/products/:product',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['products'],
        summary: 'Delete a product and its device groups (refused while any group has devices)',
        params: ProductParams,
        response: { 204: Empty, ...errorResponses(404, 409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      await store.transaction((s) => s.forTenant(tenantId).products.delete(ctx, req.params.product));
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/device-groups',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['device groups'],
        summary: 'Create a device group in a product',
        body: Type.Object(
          {
            product: ProductRef,
            name: Name,
            description: Type.Optional(Description),
            osFeed: Type.Optional(OsFeed),
            updatePolicy: Type.Optional(UpdatePolicy),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Ref('DeviceGroup'), ...errorResponses(404, 409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      const b = req.body;
      const group = await store.transaction((s) =>
        s.forTenant(tenantId).products.createGroup(ctx, b.product, {
          name: b.name,
          description: b.description ?? '',
          osFeed: b.osFeed ?? 'retail',
          updatePolicy: b.updatePolicy ?? 'update-all',
        }),
      );
      return reply.code(201).send(group);
    },
  );

  app.get(
    '/v1/device-groups',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['device groups'],
        summary: 'List device groups, optionally of one product',
        querystring: Type.Object({ product: Type.Optional(ProductRef) }, { additionalProperties: false }),
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('DeviceGroup')) }),
          ...errorResponses(404),
        },
      },
    },
    async (req) => ({ items: await tenantScope(store, req).products.listGroups(req.query.product) }),
  );

  app.get(
    '/v1/device-groups/:deviceGroup',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['device groups'],
        summary: 'Show a device group (by id or "Product/Group")',
        params: GroupParams,
        response: { 200: Type.Ref('DeviceGroup'), ...errorResponses(404) },
      },
    },
    async (req) => tenantScope(store, req).products.getGroup(req.params.deviceGroup),
  );

  app.patch(
    '/v1/device-groups/:deviceGroup',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['device groups'],
        summary: 'Change a device group',
        params: GroupParams,
        body: Type.Object(
          {
            name: Type.Optional(Name),
            description: Type.Optional(Description),
            osFeed: Type.Optional(OsFeed),
            updatePolicy: Type.Optional(UpdatePolicy),
            allowPeerMessages: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Type.Ref('DeviceGroup'), ...errorResponses(404, 409) },
      },
    },
    async (req) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      return store.transaction(async (s) => {
        const group = await s.forTenant(tenantId).products.updateGroup(ctx, req.params.deviceGroup, req.body);
        // A new feed or update policy changes what the group's devices must run.
        if (req.body.osFeed !== undefined || req.body.updatePolicy !== undefined)
          await updates.groupChanged(s, tenantId, group.id);
        return group;
      });
    },
  );

  app.delete(
    '/v1/device-groups/:deviceGroup',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['device groups'],
        summary: 'Delete a device group (refused while it has devices)',
        params: GroupParams,
        response: { 204: Empty, ...errorResponses(404, 409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      await store.transaction(async (s) => {
        const group = await s.forTenant(tenantId).products.getGroup(req.params.deviceGroup);
        await s.forTenant(tenantId).products.deleteGroup(ctx, group.id);
        await updates.groupDeleted(s, tenantId, group.id);
      });
      return reply.code(204).send(null);
    },
  );
}
