import { assertDeviceIdentity, type DeviceEvent, type DeviceReport, HeptadError } from '@heptad/protocol';
import type { Kysely } from 'kysely';
import { AttestationStore } from '../attestation/attestation-store.ts';
import { type DeviceRuntime, mergeReportedEvents } from '../attestation/device-report.ts';
import { AuditStore } from '../audit/audit-store.ts';
import type { ChangeContext } from '../context.ts';
import type { ProductStore } from '../products/product-store.ts';
import { mapUnique } from '../store/errors.ts';
import { RawQuery, type SqlTarget } from '../store/raw-query.ts';
import type { Database } from '../store/schema.ts';
import { assertTpmPublicMatches } from './tpm-registration.ts';

export interface Device {
  id: string;
  rotKind: string;
  measurementPcr: number;
  quarantinedAt: string | null;
  quarantineReason: string | null;
  lastAttestedAt: string | null;
  /** what the device reported at its last successful attestation; null until a report came */
  runtime: DeviceRuntime | null;
  registeredAt: string;
  tenantId: string | null;
  claimedAt: string | null;
  deviceGroupId: string | null;
  deviceGroupName: string | null;
  productId: string | null;
  productName: string | null;
}

export interface RegisteredDevice extends Device {
  publicKeyPem: string;
  tpmPublic: string | null;
}

/** What attestation needs to know about a device. */
export interface AttestationView {
  id: string;
  publicKeyPem: string;
  rotKind: string;
  measurementPcr: number;
  tenantId: string | null;
  quarantinedAt: string | null;
}

export interface Registration {
  id: string;
  publicKeyPem: string;
  rotKind: string;
  measurementPcr: number;
  /** base64 TPM2B_PUBLIC of a TPM identity key; must describe the same key */
  tpmPublic?: string | undefined;
}

/** The most devices one claim request may name (Azure Sphere's bulk claim limit is similar). */
export const MAX_CLAIM_BATCH = 1000;

export interface DevicePage {
  readonly limit: number;
  /** return devices whose id sorts after this one */
  readonly after?: string;
}

function deviceQuery(db: Kysely<Database>) {
  return db
    .selectFrom('devices as d')
    .leftJoin('device_groups as g', 'g.id', 'd.device_group_id')
    .leftJoin('products as p', 'p.id', 'g.product_id')
    .select([
      'd.id',
      'd.rot_kind',
      'd.measurement_pcr',
      'd.quarantined_at',
      'd.quarantine_reason',
      'd.last_attested_at',
      'd.runtime_slot',
      'd.runtime_version',
      'd.runtime_digest',
      'd.runtime_security_version',
      'd.runtime_trial',
      'd.runtime_floor',
      'd.runtime_reported_at',
      'd.registered_at',
      'd.tenant_id',
      'd.claimed_at',
      'd.device_group_id',
      'g.name as group_name',
      'g.product_id',
      'p.name as product_name',
    ]);
}

type DeviceRow = {
  id: string;
  rot_kind: string;
  measurement_pcr: number;
  quarantined_at: string | null;
  quarantine_reason: string | null;
  last_attested_at: string | null;
  runtime_slot: 'A' | 'B' | null;
  runtime_version: string | null;
  runtime_digest: string | null;
  runtime_security_version: number | null;
  runtime_trial: number | null;
  runtime_floor: number | null;
  runtime_reported_at: string | null;
  registered_at: string;
  tenant_id: string | null;
  claimed_at: string | null;
  device_group_id: string | null;
  group_name: string | null;
  product_id: string | null;
  product_name: string | null;
};

/** `events`: the runtime_events column where it was read (one device), undefined in lists. */
function toRuntime(r: DeviceRow, events?: string | null): DeviceRuntime | null {
  if (
    r.runtime_slot === null ||
    r.runtime_version === null ||
    r.runtime_digest === null ||
    r.runtime_reported_at === null
  ) {
    return null;
  }
  return {
    slot: r.runtime_slot,
    version: r.runtime_version,
    digest: r.runtime_digest,
    securityVersion: Number(r.runtime_security_version),
    trial: Number(r.runtime_trial) === 1,
    floor: Number(r.runtime_floor),
    reportedAt: r.runtime_reported_at,
    ...(events === undefined ? {} : { events: eventsOf(events) }),
  };
}

const eventsOf = (json: string | null): DeviceEvent[] =>
  json === null ? [] : (JSON.parse(json) as DeviceEvent[]);

const toDevice = (r: DeviceRow, events?: string | null): Device => ({
  id: r.id,
  rotKind: r.rot_kind,
  measurementPcr: Number(r.measurement_pcr),
  quarantinedAt: r.quarantined_at,
  quarantineReason: r.quarantine_reason,
  lastAttestedAt: r.last_attested_at,
  runtime: toRuntime(r, events),
  registeredAt: r.registered_at,
  tenantId: r.tenant_id,
  claimedAt: r.claimed_at,
  deviceGroupId: r.device_group_id,
  deviceGroupName: r.group_name,
  productId: r.product_id,
  productName: r.product_name,
});

// Attestation's hot path: fixed SQL (see store/raw-query.ts).
const ATTESTATION_VIEW = new RawQuery<{
  id: string;
  public_key_pem: string;
  rot_kind: string;
  measurement_pcr: number;
  tenant_id: string | null;
  quarantined_at: string | null;
}>(
  'select id, public_key_pem, rot_kind, measurement_pcr, tenant_id, quarantined_at from devices where id = ?',
);
const MARK_ATTESTED = new RawQuery('update devices set last_attested_at = ? where id = ?');
const MARK_ATTESTED_WITH_RUNTIME = new RawQuery(
  'update devices set last_attested_at = ?, runtime_slot = ?, runtime_version = ?, runtime_digest = ?, ' +
    'runtime_security_version = ?, runtime_trial = ?, runtime_floor = ?, runtime_reported_at = ? where id = ?',
);
const RUNTIME_EVENTS = new RawQuery<{ runtime_events: string | null }>(
  'select runtime_events from devices where id = ?',
);
const SET_RUNTIME_EVENTS = new RawQuery('update devices set runtime_events = ? where id = ?');
const TENANT_DEVICE = new RawQuery<DeviceRow & { runtime_events: string | null }>(
  'select d.id, d.rot_kind, d.measurement_pcr, d.quarantined_at, d.quarantine_reason, d.last_attested_at, ' +
    'd.runtime_slot, d.runtime_version, d.runtime_digest, d.runtime_security_version, d.runtime_trial, ' +
    'd.runtime_floor, d.runtime_reported_at, d.runtime_events, d.registered_at, d.tenant_id, d.claimed_at, ' +
    'd.device_group_id, g.name as group_name, g.product_id, p.name as product_name ' +
    'from devices d left join device_groups g on g.id = d.device_group_id left join products p on p.id = g.product_id ' +
    'where d.tenant_id = ? and d.id = ?',
);

/** The platform-wide device registry: the operator's view (Store.platform()). */
export class DeviceRegistry {
  readonly #db: Kysely<Database>;
  readonly #sql: SqlTarget;
  constructor(db: Kysely<Database>, sql: SqlTarget) {
    this.#db = db;
    this.#sql = sql;
  }

  async register(ctx: ChangeContext, reg: Registration): Promise<RegisteredDevice> {
    const identity = assertDeviceIdentity(reg.id, reg.publicKeyPem);
    if (reg.tpmPublic !== undefined) assertTpmPublicMatches(reg.tpmPublic, identity.publicKeyPem);
    const existing = await this.#db
      .selectFrom('devices')
      .select('id')
      .where('id', '=', identity.id)
      .executeTakeFirst();
    if (existing) throw new HeptadError('DEVICE_ALREADY_REGISTERED');
    await mapUnique('DEVICE_ALREADY_REGISTERED', () =>
      this.#db
        .insertInto('devices')
        .values({
          id: identity.id,
          public_key_pem: identity.publicKeyPem,
          rot_kind: reg.rotKind,
          registered_at: ctx.now.toISOString(),
          tenant_id: null,
          device_group_id: null,
          claimed_at: null,
          measurement_pcr: reg.measurementPcr,
          tpm_public: reg.tpmPublic ?? null,
          quarantined_at: null,
          quarantine_reason: null,
          last_attested_at: null,
        })
        .execute(),
    );
    await new AuditStore(this.#db).record(ctx, {
      tenantId: null,
      action: 'device.registered',
      targetType: 'device',
      targetId: identity.id,
      detail: { rotKind: reg.rotKind, measurementPcr: reg.measurementPcr },
    });
    return this.get(identity.id);
  }

  async attestationView(id: string): Promise<AttestationView | undefined> {
    const r = await ATTESTATION_VIEW.first(this.#db, this.#sql, [id]);
    return r
      ? {
          id: r.id,
          publicKeyPem: r.public_key_pem,
          rotKind: r.rot_kind,
          measurementPcr: Number(r.measurement_pcr),
          tenantId: r.tenant_id,
          quarantinedAt: r.quarantined_at,
        }
      : undefined;
  }

  /**
   * Marks a successful attestation and stores the device report it carried, if any: the running
   * runtime, and its events added to the newest ones kept (see mergeReportedEvents). Returns the
   * events not reported before, for the caller to raise. Run inside the attestation's
   * transaction: the first update takes the row lock (PostgreSQL), so a concurrent attestation of
   * the same device cannot read the kept events between this one's read and write.
   */
  async markAttested(id: string, at: string, report?: DeviceReport): Promise<DeviceEvent[]> {
    if (report === undefined) {
      await MARK_ATTESTED.run(this.#db, this.#sql, [at, id]);
      return [];
    }
    const r = report.runtime;
    await MARK_ATTESTED_WITH_RUNTIME.run(this.#db, this.#sql, [
      at,
      r.slot,
      r.version,
      r.digest,
      r.securityVersion,
      r.trial ? 1 : 0,
      r.floor,
      at,
      id,
    ]);
    if (report.events.length === 0) return [];
    const row = await RUNTIME_EVENTS.first(this.#db, this.#sql, [id]);
    const { events, fresh } = mergeReportedEvents(eventsOf(row?.runtime_events ?? null), report.events);
    if (fresh.length > 0) await SET_RUNTIME_EVENTS.run(this.#db, this.#sql, [JSON.stringify(events), id]);
    return fresh;
  }

  async get(id: string): Promise<RegisteredDevice> {
    const row = await deviceQuery(this.#db)
      .select(['d.public_key_pem', 'd.tpm_public', 'd.runtime_events'])
      .where('d.id', '=', id)
      .executeTakeFirst();
    if (!row) throw new HeptadError('DEVICE_NOT_FOUND');
    return {
      ...toDevice(row, row.runtime_events),
      publicKeyPem: row.public_key_pem,
      tpmPublic: row.tpm_public,
    };
  }

  async list(page: DevicePage): Promise<{ items: Device[]; nextCursor: string | null }> {
    let q = deviceQuery(this.#db);
    if (page.after !== undefined) q = q.where('d.id', '>', page.after);
    const rows = await q
      .orderBy('d.id')
      .limit(page.limit + 1)
      .execute();
    return pageOf(
      rows.map((r) => toDevice(r)),
      page.limit,
    );
  }

  /**
   * Takes a claimed device from its tenant (operator only); it can then be claimed again. Every
   * unexpired certificate it holds is revoked, so it goes on the old tenant's CRL: a broker that
   * checks only the CRL (Mosquitto) refuses it at once, not when the certificate expires.
   */
  async unclaim(ctx: ChangeContext, id: string): Promise<RegisteredDevice> {
    const device = await this.get(id);
    if (device.tenantId === null) throw new HeptadError('DEVICE_NOT_CLAIMED');
    const revoked = await new AttestationStore(this.#db, this.#sql).revokeDeviceCertificates(
      device.tenantId,
      id,
      ctx.now.toISOString(),
    );
    // The report goes with the tenant: the next owner learns the runtime at the next attestation,
    // not the events the device reported while it was someone else's.
    await this.#db
      .updateTable('devices')
      .set({
        tenant_id: null,
        device_group_id: null,
        claimed_at: null,
        runtime_slot: null,
        runtime_version: null,
        runtime_digest: null,
        runtime_security_version: null,
        runtime_trial: null,
        runtime_floor: null,
        runtime_reported_at: null,
        runtime_events: null,
      })
      .where('id', '=', id)
      .execute();
    await new AuditStore(this.#db).record(ctx, {
      tenantId: device.tenantId,
      action: 'device.unclaimed',
      targetType: 'device',
      targetId: id,
      detail: { revokedCertificates: revoked },
    });
    return this.get(id);
  }
}

function pageOf(items: Device[], limit: number): { items: Device[]; nextCursor: string | null } {
  const page = items.slice(0, limit);
  const last = page.at(-1);
  return { items: page, nextCursor: items.length > limit && last ? last.id : null };
}

export interface ClaimResult {
  claimed: string[];
  alreadyClaimed: string[];
}

/** A tenant's devices (Store.forTenant): claimed devices only. */
export class TenantDeviceStore {
  readonly #db: Kysely<Database>;
  readonly #tenantId: string;
  readonly #products: ProductStore;
  readonly #sql: SqlTarget;

  constructor(db: Kysely<Database>, sql: SqlTarget, tenantId: string, products: ProductStore) {
    this.#db = db;
    this.#sql = sql;
    this.#tenantId = tenantId;
    this.#products = products;
  }

  /** The hot read (GET /v1/devices/:id): fixed SQL, always filtered on this tenant. */
  async get(id: string): Promise<Device> {
    const row = await TENANT_DEVICE.first(this.#db, this.#sql, [this.#tenantId, id]);
    if (!row) throw new HeptadError('DEVICE_NOT_FOUND');
    return toDevice(row, row.runtime_events);
  }

  async list(
    page: DevicePage & { deviceGroup?: string },
  ): Promise<{ items: Device[]; nextCursor: string | null }> {
    let q = deviceQuery(this.#db).where('d.tenant_id', '=', this.#tenantId);
    if (page.deviceGroup !== undefined) {
      q = q.where('d.device_group_id', '=', (await this.#products.getGroup(page.deviceGroup)).id);
    }
    if (page.after !== undefined) q = q.where('d.id', '>', page.after);
    const rows = await q
      .orderBy('d.id')
      .limit(page.limit + 1)
      .execute();
    return pageOf(
      rows.map((r) => toDevice(r)),
      page.limit,
    );
  }

  /**
   * Claims devices for this tenant, all or nothing: an unknown id or a device claimed by another
   * tenant fails the whole request (listing every offending id) and nothing changes. Claiming a
   * device this tenant already holds is reported, not an error.
   */
  async claim(ctx: ChangeContext, ids: readonly string[], deviceGroupRef?: string): Promise<ClaimResult> {
    const group = deviceGroupRef === undefined ? undefined : await this.#products.getGroup(deviceGroupRef);
    const unique = [...new Set(ids)];
    const rows: Array<{ id: string; tenant_id: string | null }> = [];
    for (let i = 0; i < unique.length; i += 500) {
      const chunk = unique.slice(i, i + 500);
      rows.push(
        ...(await this.#db
          .selectFrom('devices')
          .select(['id', 'tenant_id'])
          .where('id', 'in', chunk)
          .execute()),
      );
    }
    const found = new Map(rows.map((r) => [r.id, r.tenant_id]));
    const unknown = unique.filter((id) => !found.has(id));
    if (unknown.length > 0) {
      throw new HeptadError('DEVICE_NOT_FOUND', `${unknown.length} device id(s) are not registered`, {
        detail: { deviceIds: unknown },
      });
    }
    const others = unique.filter((id) => {
      const t = found.get(id);
      return t !== null && t !== this.#tenantId;
    });
    if (others.length > 0) {
      // Do not say which tenant: that would leak another tenant's fleet.
      throw new HeptadError('DEVICE_CLAIMED_BY_OTHER_TENANT', undefined, { detail: { deviceIds: others } });
    }
    const toClaim = unique.filter((id) => found.get(id) === null);
    const alreadyClaimed = unique.filter((id) => found.get(id) === this.#tenantId);
    for (let i = 0; i < toClaim.length; i += 500) {
      const chunk = toClaim.slice(i, i + 500);
      const res = await this.#db
        .updateTable('devices')
        .set({
          tenant_id: this.#tenantId,
          device_group_id: group?.id ?? null,
          claimed_at: ctx.now.toISOString(),
        })
        .where('id', 'in', chunk)
        .where('tenant_id', 'is', null) // a concurrent claim by another tenant loses here
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== chunk.length) {
        throw new HeptadError('DEVICE_CLAIMED_BY_OTHER_TENANT', 'a device was claimed concurrently');
      }
    }
    const audit = new AuditStore(this.#db, this.#tenantId);
    for (const id of toClaim) {
      await audit.record(ctx, {
        tenantId: this.#tenantId,
        action: 'device.claimed',
        targetType: 'device',
        targetId: id,
        detail: group ? { deviceGroupId: group.id } : {},
      });
    }
    return { claimed: toClaim, alreadyClaimed };
  }

  /**
   * Quarantine: the device gets no new certificate, and every unexpired certificate it holds is
   * revoked (it goes on the tenant CRL). Quarantining again only updates the reason.
   */
  async quarantine(ctx: ChangeContext, id: string, reason: string): Promise<Device> {
    const device = await this.get(id);
    const now = ctx.now.toISOString();
    await this.#db
      .updateTable('devices')
      .set({ quarantined_at: device.quarantinedAt ?? now, quarantine_reason: reason })
      .where('tenant_id', '=', this.#tenantId)
      .where('id', '=', device.id)
      .execute();
    const revoked = await new AttestationStore(this.#db, this.#sql).revokeDeviceCertificates(
      this.#tenantId,
      device.id,
      now,
    );
    await new AuditStore(this.#db, this.#tenantId).record(ctx, {
      tenantId: this.#tenantId,
      action: 'device.quarantined',
      targetType: 'device',
      targetId: device.id,
      detail: { reason, revokedCertificates: revoked },
    });
    return this.get(device.id);
  }

  /** Lifts a quarantine; revoked certificates stay revoked, and the device attests afresh. */
  async release(ctx: ChangeContext, id: string): Promise<Device> {
    const device = await this.get(id);
    if (device.quarantinedAt === null) throw new HeptadError('DEVICE_NOT_QUARANTINED');
    await this.#db
      .updateTable('devices')
      .set({ quarantined_at: null, quarantine_reason: null })
      .where('tenant_id', '=', this.#tenantId)
      .where('id', '=', device.id)
      .execute();
    await new AuditStore(this.#db, this.#tenantId).record(ctx, {
      tenantId: this.#tenantId,
      action: 'device.released',
      targetType: 'device',
      targetId: device.id,
      detail: {},
    });
    return this.get(device.id);
  }

  async update(ctx: ChangeContext, id: string, patch: { deviceGroup: string | null }): Promise<Device> {
    const device = await this.get(id);
    const group = patch.deviceGroup === null ? null : await this.#products.getGroup(patch.deviceGroup);
    await this.#db
      .updateTable('devices')
      .set({ device_group_id: group?.id ?? null })
      .where('tenant_id', '=', this.#tenantId)
      .where('id', '=', device.id)
      .execute();
    await new AuditStore(this.#db, this.#tenantId).record(ctx, {
      tenantId: this.#tenantId,
      action: 'device.updated',
      targetType: 'device',
      targetId: device.id,
      detail: { deviceGroupId: group?.id ?? null, previousDeviceGroupId: device.deviceGroupId },
    });
    return this.get(device.id);
  }
}
