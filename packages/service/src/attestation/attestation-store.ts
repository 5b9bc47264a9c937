import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../store/errors.ts';
import { RawQuery, type SqlTarget } from '../store/raw-query.ts';
import type { Database } from '../store/schema.ts';

export interface SecurityEvent {
  id: string;
  /** how many times it happened in this burst (repeats within a minute fold into one row) */
  count: number;
  lastAt: string;
  tenantId: string | null;
  deviceId: string;
  kind: string;
  reason: string;
  evidenceDigest: string | null;
  at: string;
}

/**
 * Attestation's own tables: challenge nonces, issued device certificates and security events.
 * Attestation runs before the device is authenticated, so this store is platform-wide; the
 * tenant-facing reads (events, certificates) filter on the tenant explicitly.
 */
/** Repeats of one (device, kind, reason) within this window fold into one event row. */
export const EVENT_WINDOW_MS = 60_000;
// Kind is part of the key: a device may report one code (IMAGE_SIGNATURE_INVALID) both for a
// refused slot and a refused install, and those are two things to tell the owner.
const FOLD_EVENT = new RawQuery(
  'update security_events set count = count + 1, last_at = ?, evidence_digest = ? ' +
    'where device_id = ? and reason = ? and kind = ? and last_at >= ?',
);
const NONCE_USED = new RawQuery<{ one: number }>('select 1 as one from used_nonces where nonce = ?');
const BURN_NONCE = new RawQuery('insert into used_nonces (nonce, expires_at) values (?, ?)');
const KEY_HOLDER = new RawQuery<{ device_id: string }>(
  'select device_id from device_certificates where spki_sha256 = ? and device_id <> ? limit 1',
);
const INSERT_CERTIFICATE = new RawQuery(
  'insert into device_certificates (serial, tenant_id, device_id, issuing_ca_id, spki_sha256, rot_kind, not_before, not_after, revoked_at) values (?, ?, ?, ?, ?, ?, ?, ?, null)',
);

export class AttestationStore {
  readonly #db: Kysely<Database>;
  readonly #sql: SqlTarget;
  constructor(db: Kysely<Database>, sql: SqlTarget) {
    this.#db = db;
    this.#sql = sql;
  }

  async isNonceUsed(nonce: string): Promise<boolean> {
    return (await NONCE_USED.first(this.#db, this.#sql, [nonce])) !== undefined;
  }

  /** Records an answered nonce; false when it was recorded already (a concurrent replay lost). */
  async burnNonce(nonce: string, expiresAt: string): Promise<boolean> {
    try {
      await BURN_NONCE.run(this.#db, this.#sql, [nonce, expiresAt]);
      return true;
    } catch (e) {
      if (isUniqueViolation(e)) return false;
      throw e;
    }
  }

  /** Forgets answered nonces that expired before `before`: they can no longer pass the expiry check. */
  async purgeNonces(before: string): Promise<number> {
    const r = await this.#db.deleteFrom('used_nonces').where('expires_at', '<', before).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** The device, if any, other than `deviceId` that holds a certificate for this key. */
  async keyHolder(spkiSha256: string, deviceId: string): Promise<string | undefined> {
    return (await KEY_HOLDER.first(this.#db, this.#sql, [spkiSha256, deviceId]))?.device_id;
  }

  async recordCertificate(c: {
    serial: string;
    tenantId: string;
    deviceId: string;
    issuingCaId: string;
    spkiSha256: string;
    rotKind: string;
    notBefore: string;
    notAfter: string;
  }): Promise<void> {
    await INSERT_CERTIFICATE.run(this.#db, this.#sql, [
      c.serial,
      c.tenantId,
      c.deviceId,
      c.issuingCaId,
      c.spkiSha256,
      c.rotKind,
      c.notBefore,
      c.notAfter,
    ]);
  }

  /** Revokes every unexpired certificate of the device (quarantine); returns how many. */
  async revokeDeviceCertificates(tenantId: string, deviceId: string, now: string): Promise<number> {
    const r = await this.#db
      .updateTable('device_certificates')
      .set({ revoked_at: now })
      .where('tenant_id', '=', tenantId)
      .where('device_id', '=', deviceId)
      .where('revoked_at', 'is', null)
      .where('not_after', '>', now)
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /**
   * Records a security event. The same kind and reason for the same device within EVENT_WINDOW_MS folds
   * into the last row (count + 1, latest time and evidence digest), so anyone sending bad evidence
   * for a known device id grows the store by one row per device and reason per minute at most,
   * while the count keeps the burst visible to threat detection.
   */
  async recordEvent(e: Omit<SecurityEvent, 'id' | 'count' | 'lastAt'>): Promise<void> {
    const since = new Date(Date.parse(e.at) - EVENT_WINDOW_MS).toISOString();
    const folded = await FOLD_EVENT.run(this.#db, this.#sql, [
      e.at,
      e.evidenceDigest,
      e.deviceId,
      e.reason,
      e.kind,
      since,
    ]);
    if (folded > 0) return;
    await this.#db
      .insertInto('security_events')
      .values({
        id: randomUUID(),
        tenant_id: e.tenantId,
        device_id: e.deviceId,
        kind: e.kind,
        reason: e.reason,
        evidence_digest: e.evidenceDigest,
        at: e.at,
        last_at: e.at,
        count: 1,
      })
      .execute();
  }

  async listEvents(tenantId: string, opts: { deviceId?: string; limit: number }): Promise<SecurityEvent[]> {
    let q = this.#db.selectFrom('security_events').selectAll().where('tenant_id', '=', tenantId);
    if (opts.deviceId) q = q.where('device_id', '=', opts.deviceId);
    const rows = await q.orderBy('last_at', 'desc').orderBy('id').limit(opts.limit).execute();
    return rows.map((r) => ({
      count: Number(r.count),
      lastAt: r.last_at,
      id: r.id,
      tenantId: r.tenant_id,
      deviceId: r.device_id,
      kind: r.kind,
      reason: r.reason,
      evidenceDigest: r.evidence_digest,
      at: r.at,
    }));
  }

  /**
   * What the app policy needs about a claimed device: its capabilities, and the package digests of
   * the images in the current and previous deployment of its group (an update in flight: a device
   * attests with either version). Read only when the device measured an app, or for capabilities.
   */
  async appPolicy(tenantId: string, deviceId: string, withDigests: boolean): Promise<AppPolicy> {
    const caps = await this.#db
      .selectFrom('device_capabilities')
      .select('capability')
      .where('tenant_id', '=', tenantId)
      .where('device_id', '=', deviceId)
      .orderBy('capability')
      .execute();
    const capabilities = caps.map((c) => c.capability);
    const keys = await this.#db
      .selectFrom('tenant_image_keys')
      .select('public_key_pem')
      .where('tenant_id', '=', tenantId)
      .execute();
    const imageKeysPem = keys.map((k) => k.public_key_pem).join('');
    if (!withDigests) return { capabilities, imageKeysPem, allowedAppDigests: new Set() };
    const device = await this.#db
      .selectFrom('devices')
      .select('device_group_id')
      .where('id', '=', deviceId)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    const group = device?.device_group_id ?? null;
    if (group === null) return { capabilities, imageKeysPem, allowedAppDigests: new Set() };
    const deployments = await this.#db
      .selectFrom('deployments')
      .select('image_ids')
      .where('tenant_id', '=', tenantId)
      .where('device_group_id', '=', group)
      .orderBy('seq', 'desc')
      .limit(2)
      .execute();
    const ids = [...new Set(deployments.flatMap((d) => JSON.parse(d.image_ids) as string[]))];
    if (ids.length === 0) return { capabilities, imageKeysPem, allowedAppDigests: new Set() };
    const images = await this.#db
      .selectFrom('images')
      .select('digest')
      .where('tenant_id', '=', tenantId)
      .where('id', 'in', ids)
      .execute();
    return { capabilities, imageKeysPem, allowedAppDigests: new Set(images.map((i) => i.digest)) };
  }

  async knownRuntimeDigests(digests: readonly string[]): Promise<Set<string>> {
    if (digests.length === 0) return new Set();
    const rows = await this.#db
      .selectFrom('runtime_images')
      .select('digest')
      .where('digest', 'in', [...new Set(digests)])
      .execute();
    return new Set(rows.map((r) => r.digest));
  }
}

export interface AppPolicy {
  /** the device's capabilities (appDevelopment, fieldServicing) */
  readonly capabilities: readonly string[];
  /** the tenant's production image public keys (PEM; empty before its first image) */
  readonly imageKeysPem: string;
  /** package digests of the apps its group may run now */
  readonly allowedAppDigests: ReadonlySet<string>;
}

export interface RuntimeImage {
  digest: string;
  version: string;
  securityVersion: number;
  createdAt: string;
}

/** The platform's known runtime images: a measured runtime must be one of them to attest. */
export class RuntimeImageStore {
  readonly #db: Kysely<Database>;
  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async add(image: Omit<RuntimeImage, 'createdAt'>, now: string): Promise<RuntimeImage> {
    await this.#db
      .insertInto('runtime_images')
      .values({
        digest: image.digest,
        version: image.version,
        security_version: image.securityVersion,
        created_at: now,
      })
      .execute();
    return { ...image, createdAt: now };
  }

  async exists(digest: string): Promise<boolean> {
    return (
      (await this.#db
        .selectFrom('runtime_images')
        .select('digest')
        .where('digest', '=', digest)
        .executeTakeFirst()) !== undefined
    );
  }

  async list(): Promise<RuntimeImage[]> {
    const rows = await this.#db.selectFrom('runtime_images').selectAll().orderBy('created_at').execute();
    return rows.map((r) => ({
      digest: r.digest,
      version: r.version,
      securityVersion: r.security_version,
      createdAt: r.created_at,
    }));
  }
}
