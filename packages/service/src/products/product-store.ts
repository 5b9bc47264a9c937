import { randomUUID } from 'node:crypto';
import { HeptadError } from '@heptad/protocol';
import type { Kysely } from 'kysely';
import { AuditStore } from '../audit/audit-store.ts';
import type { ChangeContext } from '../context.ts';
import { mapUnique } from '../store/errors.ts';
import type { Database, DeviceGroupsTable, OsFeed, ProductsTable, UpdatePolicy } from '../store/schema.ts';

export interface Product {
  id: string;
  tenantId: string;
  name: string;
  description: string;
  createdAt: string;
  updatedAt: string;
}

export interface DeviceGroup {
  id: string;
  tenantId: string;
  productId: string;
  productName: string;
  name: string;
  description: string;
  osFeed: OsFeed;
  updatePolicy: UpdatePolicy;
  /** devices of this group may message each other under groups/<id>/… on the broker */
  allowPeerMessages: boolean;
  deviceCount: number;
  createdAt: string;
  updatedAt: string;
}

/**
 * The device groups every new product gets, as Azure Sphere created them: development devices
 * take no app updates from the cloud; the two OS-evaluation groups take the retail-eval feed.
 */
export const DEFAULT_DEVICE_GROUPS: ReadonlyArray<{
  name: string;
  description: string;
  osFeed: OsFeed;
  updatePolicy: UpdatePolicy;
}> = [
  {
    name: 'Development',
    description: 'Devices on developers’ desks: apps are sideloaded, no app updates from the cloud',
    osFeed: 'retail',
    updatePolicy: 'no-app-updates',
  },
  {
    name: 'Field Test',
    description: 'Devices in field testing',
    osFeed: 'retail',
    updatePolicy: 'update-all',
  },
  { name: 'Production', description: 'Devices in production', osFeed: 'retail', updatePolicy: 'update-all' },
  {
    name: 'Production OS Evaluation',
    description: 'Production apps on the next runtime release (retail-eval feed)',
    osFeed: 'retail-eval',
    updatePolicy: 'update-all',
  },
  {
    name: 'Field Test OS Evaluation',
    description: 'Field-test apps on the next runtime release (retail-eval feed)',
    osFeed: 'retail-eval',
    updatePolicy: 'update-all',
  },
];

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string): boolean => UUID_RE.test(s);

const toProduct = (r: ProductsTable): Product => ({
  id: r.id,
  tenantId: r.tenant_id,
  name: r.name,
  description: r.description,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** Products and their device groups, always inside one tenant (obtained via Store.forTenant). */
export class ProductStore {
  readonly #db: Kysely<Database>;
  readonly #tenantId: string;

  constructor(db: Kysely<Database>, tenantId: string) {
    this.#db = db;
    this.#tenantId = tenantId;
  }

  #audit(): AuditStore {
    return new AuditStore(this.#db, this.#tenantId);
  }

  /** Finds a product by id or by name. */
  async get(ref: string): Promise<Product> {
    const row = await this.#db
      .selectFrom('products')
      .selectAll()
      .where('tenant_id', '=', this.#tenantId)
      .where(isUuid(ref) ? 'id' : 'name', '=', isUuid(ref) ? ref.toLowerCase() : ref)
      .executeTakeFirst();
    if (!row) throw new HeptadError('PRODUCT_NOT_FOUND');
    return toProduct(row);
  }

  async list(): Promise<Product[]> {
    const rows = await this.#db
      .selectFrom('products')
      .selectAll()
      .where('tenant_id', '=', this.#tenantId)
      .orderBy('name')
      .execute();
    return rows.map(toProduct);
  }

  async create(ctx: ChangeContext, name: string, description: string): Promise<Product> {
    await this.#assertProductNameFree(name);
    const now = ctx.now.toISOString();
    const row: ProductsTable = {
      id: randomUUID(),
      tenant_id: this.#tenantId,
      name,
      description,
      created_at: now,
      updated_at: now,
    };
    await mapUnique('PRODUCT_NAME_TAKEN', () => this.#db.insertInto('products').values(row).execute());
    await this.#db
      .insertInto('device_groups')
      .values(
        DEFAULT_DEVICE_GROUPS.map((g) => ({
          id: randomUUID(),
          tenant_id: this.#tenantId,
          product_id: row.id,
          name: g.name,
          description: g.description,
          os_feed: g.osFeed,
          update_policy: g.updatePolicy,
          allow_peer_messages: 0,
          created_at: now,
          updated_at: now,
        })),
      )
      .execute();
    await this.#audit().record(ctx, {
      tenantId: this.#tenantId,
      action: 'product.created',
      targetType: 'product',
      targetId: row.id,
      detail: { name },
    });
    return toProduct(row);
  }

  async update(
    ctx: ChangeContext,
    ref: string,
    patch: { name?: string; description?: string },
  ): Promise<Product> {
    const current = await this.get(ref);
    if (patch.name !== undefined && patch.name !== current.name)
      await this.#assertProductNameFree(patch.name);
    const updated_at = ctx.now.toISOString();
    await mapUnique('PRODUCT_NAME_TAKEN', () =>
      this.#db
        .updateTable('products')
        .set({
          name: patch.name ?? current.name,
          description: patch.description ?? current.description,
          updated_at,
        })
        .where('tenant_id', '=', this.#tenantId)
        .where('id', '=', current.id)
        .execute(),
    );
    await this.#audit().record(ctx, {
      tenantId: this.#tenantId,
      action: 'product.updated',
      targetType: 'product',
      targetId: current.id,
      detail: { ...patch },
    });
    return this.get(current.id);
  }

  async delete(ctx: ChangeContext, ref: string): Promise<void> {
    const product = await this.get(ref);
    const used = await this.#db
      .selectFrom('devices')
      .innerJoin('device_groups', 'device_groups.id', 'devices.device_group_id')
      .select('devices.id')
      .where('device_groups.product_id', '=', product.id)
      .where('devices.tenant_id', '=', this.#tenantId)
      .limit(1)
      .executeTakeFirst();
    if (used) throw new HeptadError('PRODUCT_HAS_DEVICES');
    await this.#db
      .deleteFrom('deployments')
      .where('tenant_id', '=', this.#tenantId)
      .where('device_group_id', 'in', (eb) =>
        eb
          .selectFrom('device_groups')
          .select('id')
          .where('tenant_id', '=', this.#tenantId)
          .where('product_id', '=', product.id),
      )
      .execute();
    await this.#db
      .deleteFrom('device_groups')
      .where('tenant_id', '=', this.#tenantId)
      .where('product_id', '=', product.id)
      .execute();
    await this.#db
      .deleteFrom('products')
      .where('tenant_id', '=', this.#tenantId)
      .where('id', '=', product.id)
      .execute();
    await this.#audit().record(ctx, {
      tenantId: this.#tenantId,
      action: 'product.deleted',
      targetType: 'product',
      targetId: product.id,
      detail: { name: product.name },
    });
  }

  async #assertProductNameFree(name: string): Promise<void> {
    const taken = await this.#db
      .selectFrom('products')
      .select('id')
      .where('tenant_id', '=', this.#tenantId)
      .where('name', '=', name)
      .executeTakeFirst();
    if (taken) throw new HeptadError('PRODUCT_NAME_TAKEN');
  }

  // ---- device groups ----

  #groupQuery() {
    return this.#db
      .selectFrom('device_groups as g')
      .innerJoin('products as p', 'p.id', 'g.product_id')
      .select([
        'g.id',
        'g.tenant_id',
        'g.product_id',
        'p.name as product_name',
        'g.name',
        'g.description',
        'g.os_feed',
        'g.update_policy',
        'g.allow_peer_messages',
        'g.created_at',
        'g.updated_at',
      ])
      .select((eb) =>
        eb
          .selectFrom('devices as d')
          .select((e) => e.fn.countAll<number>().as('n'))
          .whereRef('d.device_group_id', '=', 'g.id')
          .as('device_count'),
      )
      .where('g.tenant_id', '=', this.#tenantId);
  }

  /** Resolves a device group given as its id or as "Product/Group" (Azure Sphere CLI style). */
  async getGroup(ref: string): Promise<DeviceGroup> {
    let q = this.#groupQuery();
    if (isUuid(ref)) {
      q = q.where('g.id', '=', ref.toLowerCase());
    } else {
      const slash = ref.indexOf('/');
      if (slash <= 0) throw new HeptadError('DEVICE_GROUP_NOT_FOUND');
      q = q.where('p.name', '=', ref.slice(0, slash)).where('g.name', '=', ref.slice(slash + 1));
    }
    const row = await q.executeTakeFirst();
    if (!row) throw new HeptadError('DEVICE_GROUP_NOT_FOUND');
    return toGroup(row);
  }

  async listGroups(productRef?: string): Promise<DeviceGroup[]> {
    let q = this.#groupQuery();
    if (productRef !== undefined) q = q.where('g.product_id', '=', (await this.get(productRef)).id);
    const rows = await q.orderBy('p.name').orderBy('g.name').execute();
    return rows.map(toGroup);
  }

  async createGroup(
    ctx: ChangeContext,
    productRef: string,
    g: { name: string; description: string; osFeed: OsFeed; updatePolicy: UpdatePolicy },
  ): Promise<DeviceGroup> {
    const product = await this.get(productRef);
    await this.#assertGroupNameFree(product.id, g.name);
    const now = ctx.now.toISOString();
    const id = randomUUID();
    await mapUnique('DEVICE_GROUP_NAME_TAKEN', () =>
      this.#db
        .insertInto('device_groups')
        .values({
          id,
          tenant_id: this.#tenantId,
          product_id: product.id,
          name: g.name,
          description: g.description,
          os_feed: g.osFeed,
          update_policy: g.updatePolicy,
          allow_peer_messages: 0,
          created_at: now,
          updated_at: now,
        })
        .execute(),
    );
    await this.#audit().record(ctx, {
      tenantId: this.#tenantId,
      action: 'device-group.created',
      targetType: 'device-group',
      targetId: id,
      detail: { productId: product.id, ...g },
    });
    return this.getGroup(id);
  }

  async updateGroup(
    ctx: ChangeContext,
    ref: string,
    patch: {
      name?: string;
      description?: string;
      osFeed?: OsFeed;
      updatePolicy?: UpdatePolicy;
      allowPeerMessages?: boolean;
    },
  ): Promise<DeviceGroup> {
    const current = await this.getGroup(ref);
    if (patch.name !== undefined && patch.name !== current.name) {
      await this.#assertGroupNameFree(current.productId, patch.name);
    }
    await mapUnique('DEVICE_GROUP_NAME_TAKEN', () =>
      this.#db
        .updateTable('device_groups')
        .set({
          name: patch.name ?? current.name,
          description: patch.description ?? current.description,
          os_feed: patch.osFeed ?? current.osFeed,
          update_policy: patch.updatePolicy ?? current.updatePolicy,
          allow_peer_messages: (patch.allowPeerMessages ?? current.allowPeerMessages) ? 1 : 0,
          updated_at: ctx.now.toISOString(),
        })
        .where('tenant_id', '=', this.#tenantId)
        .where('id', '=', current.id)
        .execute(),
    );
    await this.#audit().record(ctx, {
      tenantId: this.#tenantId,
      action: 'device-group.updated',
      targetType: 'device-group',
      targetId: current.id,
      detail: { ...patch },
    });
    return this.getGroup(current.id);
  }

  async deleteGroup(ctx: ChangeContext, ref: string): Promise<void> {
    const group = await this.getGroup(ref);
    if (group.deviceCount > 0) {
      throw new HeptadError('DEVICE_GROUP_HAS_DEVICES', undefined, {
        detail: { deviceCount: group.deviceCount },
      });
    }
    // Its deployment history goes with it (a group's deployments mean nothing without it).
    await this.#db
      .deleteFrom('deployments')
      .where('tenant_id', '=', this.#tenantId)
      .where('device_group_id', '=', group.id)
      .execute();
    await this.#db
      .deleteFrom('device_groups')
      .where('tenant_id', '=', this.#tenantId)
      .where('id', '=', group.id)
      .execute();
    await this.#audit().record(ctx, {
      tenantId: this.#tenantId,
      action: 'device-group.deleted',
      targetType: 'device-group',
      targetId: group.id,
      detail: { name: group.name, productId: group.productId },
    });
  }

  async #assertGroupNameFree(productId: string, name: string): Promise<void> {
    const taken = await this.#db
      .selectFrom('device_groups')
      .select('id')
      .where('tenant_id', '=', this.#tenantId)
      .where('product_id', '=', productId)
      .where('name', '=', name)
      .executeTakeFirst();
    if (taken) throw new HeptadError('DEVICE_GROUP_NAME_TAKEN');
  }
}

function toGroup(
  r: Omit<DeviceGroupsTable, never> & { product_name: string; device_count: number | string | bigint | null },
): DeviceGroup {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    productId: r.product_id,
    productName: r.product_name,
    name: r.name,
    description: r.description,
    osFeed: r.os_feed,
    updatePolicy: r.update_policy,
    allowPeerMessages: Number(r.allow_peer_messages) === 1,
    deviceCount: Number(r.device_count ?? 0),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
