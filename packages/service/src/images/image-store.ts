import { HeptadError } from '@heptad/protocol';
import type { Kysely } from 'kysely';
import { AuditStore } from '../audit/audit-store.ts';
import type { ChangeContext } from '../context.ts';
import { mapUnique } from '../store/errors.ts';
import type { Database, ImagesTable } from '../store/schema.ts';

export interface Image {
  id: string;
  tenantId: string;
  componentId: string;
  name: string;
  version: string;
  securityVersion: number;
  type: string;
  /** package digest (SHA-256 of the signed region): what devices measure and attestation checks */
  digest: string;
  size: number;
  uploadedBy: string;
  createdAt: string;
}

export interface ImageDetail extends Image {
  appManifest: Record<string, unknown> | null;
}

const toImage = (r: ImagesTable): Image => ({
  id: r.id,
  tenantId: r.tenant_id,
  componentId: r.component_id,
  name: r.name,
  version: r.version,
  securityVersion: Number(r.security_version),
  type: r.type,
  digest: r.digest,
  size: Number(r.size),
  uploadedBy: r.uploaded_by,
  createdAt: r.created_at,
});

/** The tenant's images (obtained via Store.forTenant): every query filters on the tenant. */
export class ImageStore {
  readonly #db: Kysely<Database>;
  readonly #tenantId: string;

  constructor(db: Kysely<Database>, tenantId: string) {
    this.#db = db;
    this.#tenantId = tenantId;
  }

  async #row(id: string): Promise<ImagesTable | undefined> {
    return this.#db
      .selectFrom('images')
      .selectAll()
      .where('tenant_id', '=', this.#tenantId)
      .where('id', '=', id.toLowerCase())
      .executeTakeFirst();
  }

  async find(id: string): Promise<ImageDetail | undefined> {
    const r = await this.#row(id);
    return r
      ? { ...toImage(r), appManifest: r.app_manifest === null ? null : JSON.parse(r.app_manifest) }
      : undefined;
  }

  async get(id: string): Promise<ImageDetail> {
    const image = await this.find(id);
    if (!image) throw new HeptadError('IMAGE_NOT_FOUND');
    return image;
  }

  /** The images with these ids (one query); unknown ids are simply absent. */
  async byIds(ids: readonly string[]): Promise<Image[]> {
    if (ids.length === 0) return [];
    const rows = await this.#db
      .selectFrom('images')
      .selectAll()
      .where('tenant_id', '=', this.#tenantId)
      .where('id', 'in', [...ids])
      .execute();
    return rows.map(toImage);
  }

  /**
   * Every image with where its file is (blob name and size), or only those with `ids`: the update
   * metadata (tuf/) names each as a target. Never part of the API.
   */
  async files(ids?: readonly string[]): Promise<Array<Image & { blobSha256: string }>> {
    if (ids?.length === 0) return [];
    let q = this.#db.selectFrom('images').selectAll().where('tenant_id', '=', this.#tenantId);
    if (ids) q = q.where('id', 'in', [...ids]);
    const rows = await q.orderBy('id').execute();
    return rows.map((r) => ({ ...toImage(r), blobSha256: r.blob_sha256 }));
  }

  /** Where the stored file is (blob name) — never part of the API. */
  async blobOf(id: string): Promise<{ sha256: string; size: number; digest: string }> {
    const r = await this.#row(id);
    if (!r) throw new HeptadError('IMAGE_NOT_FOUND');
    return { sha256: r.blob_sha256, size: Number(r.size), digest: r.digest };
  }

  /** Newest first; `after` is the id of the last image of the previous page. */
  async list(opts: {
    limit: number;
    after?: string | undefined;
    componentId?: string | undefined;
  }): Promise<Image[]> {
    let q = this.#db.selectFrom('images').selectAll().where('tenant_id', '=', this.#tenantId);
    if (opts.componentId) q = q.where('component_id', '=', opts.componentId);
    if (opts.after) {
      const last = await this.#row(opts.after);
      if (!last) throw new HeptadError('IMAGE_NOT_FOUND', 'the "after" image does not exist');
      q = q.where((eb) =>
        eb.or([
          eb('created_at', '<', last.created_at),
          eb.and([eb('created_at', '=', last.created_at), eb('id', '>', last.id)]),
        ]),
      );
    }
    const rows = await q.orderBy('created_at', 'desc').orderBy('id').limit(opts.limit).execute();
    return rows.map(toImage);
  }

  /** The name other images of this component id carry (one app per component id), if any. */
  async componentName(componentId: string): Promise<string | undefined> {
    const r = await this.#db
      .selectFrom('images')
      .select('name')
      .where('tenant_id', '=', this.#tenantId)
      .where('component_id', '=', componentId)
      .executeTakeFirst();
    return r?.name;
  }

  async insert(
    ctx: ChangeContext,
    row: Omit<ImagesTable, 'tenant_id' | 'created_at' | 'uploaded_by'>,
  ): Promise<Image> {
    const full: ImagesTable = {
      ...row,
      tenant_id: this.#tenantId,
      uploaded_by: ctx.actor.userId,
      created_at: ctx.now.toISOString(),
    };
    await mapUnique('IMAGE_EXISTS', () => this.#db.insertInto('images').values(full).execute());
    await new AuditStore(this.#db, this.#tenantId).record(ctx, {
      tenantId: this.#tenantId,
      action: 'image.add',
      targetType: 'image',
      targetId: row.id,
      detail: { name: row.name, version: row.version, componentId: row.component_id, digest: row.digest },
    });
    return toImage(full);
  }
}
