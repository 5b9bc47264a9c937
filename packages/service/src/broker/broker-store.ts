import type { Kysely } from 'kysely';
import { AttestationStore } from '../attestation/attestation-store.ts';
import { RawQuery, type SqlTarget } from '../store/raw-query.ts';
import type { Database } from '../store/schema.ts';

/** A device certificate as the broker checks it at connect, with its device's current state. */
export interface CertificateView {
  serial: string;
  /** the tenant the certificate was issued for, and the device */
  tenantId: string;
  deviceId: string;
  /** the tenant CA that signed it, and the SHA-256 of its subject public key (SPKI DER, hex) */
  issuingCaId: string;
  spkiSha256: string;
  notAfter: string;
  revokedAt: string | null;
  /** the device's tenant now (null: unclaimed since) and quarantine */
  deviceTenantId: string | null;
  quarantinedAt: string | null;
}

// Fixed SQL: the broker asks these on every connect and on every group/cross-device publish.
const CERTIFICATE = new RawQuery<{
  serial: string;
  tenant_id: string;
  device_id: string;
  issuing_ca_id: string;
  spki_sha256: string;
  not_after: string;
  revoked_at: string | null;
  device_tenant_id: string | null;
  quarantined_at: string | null;
}>(
  'select c.serial, c.tenant_id, c.device_id, c.issuing_ca_id, c.spki_sha256, c.not_after, c.revoked_at, d.tenant_id as device_tenant_id, ' +
    'd.quarantined_at from device_certificates c join devices d on d.id = c.device_id where c.serial = ?',
);
const DEVICE = new RawQuery<{ tenant_id: string | null; device_group_id: string | null }>(
  'select tenant_id, device_group_id from devices where id = ?',
);
const GROUP = new RawQuery<{ tenant_id: string; allow_peer_messages: number }>(
  'select tenant_id, allow_peer_messages from device_groups where id = ?',
);
const TENANT_CAS = new RawQuery<{ id: string; cert_pem: string; not_after: string }>(
  "select id, cert_pem, not_after from tenant_cas where tenant_id = ? and kind = 'issuing' order by generation",
);

/**
 * The broker's reads. The broker authenticates before it knows a tenant, so this store is
 * platform-wide like attestation's; every answer carries the tenant and the broker compares it
 * with the session's.
 */
export class BrokerStore {
  readonly #db: Kysely<Database>;
  readonly #sql: SqlTarget;

  constructor(db: Kysely<Database>, target: SqlTarget) {
    this.#db = db;
    this.#sql = target;
  }

  async certificate(serial: string): Promise<CertificateView | undefined> {
    const r = await CERTIFICATE.first(this.#db, this.#sql, [serial]);
    if (!r) return undefined;
    return {
      serial: r.serial,
      tenantId: r.tenant_id,
      deviceId: r.device_id,
      issuingCaId: r.issuing_ca_id,
      spkiSha256: r.spki_sha256,
      notAfter: r.not_after,
      revokedAt: r.revoked_at,
      deviceTenantId: r.device_tenant_id,
      quarantinedAt: r.quarantined_at,
    };
  }

  async device(id: string): Promise<{ tenantId: string | null; deviceGroupId: string | null } | undefined> {
    const r = await DEVICE.first(this.#db, this.#sql, [id]);
    return r && { tenantId: r.tenant_id, deviceGroupId: r.device_group_id };
  }

  async group(id: string): Promise<{ tenantId: string; allowPeerMessages: boolean } | undefined> {
    const r = await GROUP.first(this.#db, this.#sql, [id]);
    return r && { tenantId: r.tenant_id, allowPeerMessages: Number(r.allow_peer_messages) === 1 };
  }

  /** One tenant's issuing CAs (every generation): the only CAs a device certificate naming that tenant may chain to. */
  async issuingCas(tenantId: string): Promise<Array<{ id: string; certPem: string; notAfter: string }>> {
    return (await TENANT_CAS.all(this.#db, this.#sql, [tenantId])).map((r) => ({
      id: r.id,
      certPem: r.cert_pem,
      notAfter: r.not_after,
    }));
  }

  /** A refused connection or message of a known device, as a security event (bursts fold). */
  async recordRefusal(e: { tenantId: string | null; deviceId: string; reason: string; at: string }) {
    await new AttestationStore(this.#db, this.#sql).recordEvent({
      tenantId: e.tenantId,
      deviceId: e.deviceId,
      kind: 'broker.refused',
      reason: e.reason,
      evidenceDigest: null,
      at: e.at,
    });
  }
}
