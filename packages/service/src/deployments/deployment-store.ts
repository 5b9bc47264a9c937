import { randomUUID } from 'node:crypto';
import { HeptadError } from '@heptad/protocol';
import type { Kysely } from 'kysely';
import { AuditStore } from '../audit/audit-store.ts';
import type { ChangeContext } from '../context.ts';
import type { Image, ImageStore } from '../images/image-store.ts';
import type { DeviceGroup, ProductStore } from '../products/product-store.ts';
import { mapUnique } from '../store/errors.ts';
import type { Database, DeploymentsTable } from '../store/schema.ts';

/** The most images one deployment may name (one per application on the device). */
export const MAX_DEPLOYMENT_IMAGES = 32;

export interface DeploymentImage {
  id: string;
  componentId: string;
  name: string;
  version: string;
  securityVersion: number;
  digest: string;
}

export interface Deployment {
  id: string;
  tenantId: string;
  deviceGroupId: string;
  deviceGroupName: string;
  productName: string;
  /** true for the newest deployment of its group: what its devices must run */
  current: boolean;
  images: DeploymentImage[];
  createdBy: string;
  createdAt: string;
}

const toDeploymentImage = (i: Image): DeploymentImage => ({
  id: i.id,
  componentId: i.componentId,
  name: i.name,
  version: i.version,
  securityVersion: i.securityVersion,
  digest: i.digest,
});

/** Deployments of one tenant (via Store.forTenant): which images each device group must run. */
export class DeploymentStore {
  readonly #db: Kysely<Database>;
  readonly #tenantId: string;
  readonly #products: ProductStore;
  readonly #images: ImageStore;

  constructor(db: Kysely<Database>, tenantId: string, products: ProductStore, images: ImageStore) {
    this.#db = db;
    this.#tenantId = tenantId;
    this.#products = products;
    this.#images = images;
  }

  /**
   * Makes `imageIds` the images `groupRef` must run. Every image must be an application of this
   * tenant, and no two may be versions of the same application (component id).
   */
  async create(ctx: ChangeContext, groupRef: string, imageIds: readonly string[]): Promise<Deployment> {
    const group = await this.#products.getGroup(groupRef);
    const ids = imageIds.map((i) => i.toLowerCase());
    if (new Set(ids).size !== ids.length)
      throw new HeptadError('DEPLOYMENT_INVALID', 'an image is named twice');
    const images: DeploymentImage[] = [];
    const components = new Map<string, string>();
    for (const id of ids) {
      const image = await this.#images.find(id);
      if (!image)
        throw new HeptadError('IMAGE_NOT_FOUND', `image ${id} does not exist`, { detail: { imageId: id } });
      const other = components.get(image.componentId);
      if (other !== undefined)
        throw new HeptadError(
          'DEPLOYMENT_INVALID',
          `images ${other} and ${id} are versions of the same application`,
          {
            detail: { componentId: image.componentId },
          },
        );
      components.set(image.componentId, id);
      images.push(toDeploymentImage(image));
    }
    const last = await this.#db
      .selectFrom('deployments')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('tenant_id', '=', this.#tenantId)
      .where('device_group_id', '=', group.id)
      .executeTakeFirst();
    const row: DeploymentsTable = {
      id: randomUUID(),
      tenant_id: this.#tenantId,
      device_group_id: group.id,
      image_ids: JSON.stringify(images.map((i) => i.id)),
      created_by: ctx.actor.userId,
      created_at: ctx.now.toISOString(),
      seq: Number(last?.seq ?? 0) + 1,
    };
    // Two deployments to one group at once: the unique (group, seq) lets one win.
    await mapUnique('DEPLOYMENT_CONCURRENT', () => this.#db.insertInto('deployments').values(row).execute());
    await new AuditStore(this.#db, this.#tenantId).record(ctx, {
      tenantId: this.#tenantId,
      action: 'deployment.created',
      targetType: 'device-group',
      targetId: group.id,
      detail: { deploymentId: row.id, imageIds: images.map((i) => i.id) },
    });
    return {
      id: row.id,
      tenantId: this.#tenantId,
      deviceGroupId: group.id,
      deviceGroupName: group.name,
      productName: group.productName,
      current: true,
      images,
      createdBy: row.created_by,
      createdAt: row.created_at,
    };
  }

  async get(id: string): Promise<Deployment> {
    const row = await this.#db
      .selectFrom('deployments')
      .selectAll()
      .where('tenant_id', '=', this.#tenantId)
      .where('id', '=', id.toLowerCase())
      .executeTakeFirst();
    if (!row) throw new HeptadError('DEPLOYMENT_NOT_FOUND');
    return (await this.#expand([row], await this.#products.getGroup(row.device_group_id)))[0] as Deployment;
  }

  /** The image ids of a group's current (newest) deployment; [] before its first. */
  async currentImageIds(groupId: string): Promise<string[]> {
    const row = await this.#db
      .selectFrom('deployments')
      .select('image_ids')
      .where('tenant_id', '=', this.#tenantId)
      .where('device_group_id', '=', groupId)
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? (JSON.parse(row.image_ids) as string[]) : [];
  }

  /** A group's deployments, newest (current) first. */
  async list(groupRef: string, limit: number): Promise<Deployment[]> {
    const group = await this.#products.getGroup(groupRef);
    const rows = await this.#db
      .selectFrom('deployments')
      .selectAll()
      .where('tenant_id', '=', this.#tenantId)
      .where('device_group_id', '=', group.id)
      .orderBy('seq', 'desc')
      .limit(limit)
      .execute();
    return this.#expand(rows, group);
  }

  /** Rows of ONE group as API objects: the group, its newest seq and the images read once for all. */
  async #expand(rows: DeploymentsTable[], group: DeviceGroup): Promise<Deployment[]> {
    if (rows.length === 0) return [];
    const newest = await this.#db
      .selectFrom('deployments')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('tenant_id', '=', this.#tenantId)
      .where('device_group_id', '=', group.id)
      .executeTakeFirst();
    const ids = rows.map((r) => JSON.parse(r.image_ids) as string[]);
    const images = new Map((await this.#images.byIds([...new Set(ids.flat())])).map((i) => [i.id, i]));
    return rows.map((row, n) => ({
      id: row.id,
      tenantId: row.tenant_id,
      deviceGroupId: row.device_group_id,
      deviceGroupName: group.name,
      productName: group.productName,
      current: Number(newest?.seq) === Number(row.seq),
      images: (ids[n] ?? []).map((id) => {
        const image = images.get(id);
        // Images are never deleted, so a deployment's images always exist.
        if (!image) throw new HeptadError('INTERNAL_ERROR', `image ${id} of deployment ${row.id} is missing`);
        return toDeploymentImage(image);
      }),
      createdBy: row.created_by,
      createdAt: row.created_at,
    }));
  }
}
