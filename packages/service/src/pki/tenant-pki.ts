import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import {
  createCrl,
  createDeviceCertificateIssuer,
  createSerialNumber,
  createTenantIssuingCa,
  createTenantRootCa,
  HeptadError,
  toPem,
  toPrivateKey,
} from '@heptad/protocol';
import type { Kysely } from 'kysely';
import type { KeyStore } from '../keys/key-store.ts';
import { isUniqueViolation } from '../store/errors.ts';
import type { Database, TenantCasTable } from '../store/schema.ts';

export const ROOT_CA_DAYS = 3650 * 2;
export const ISSUING_CA_DAYS = 3650;
/** Azure Sphere published a new tenant CA about 45 days before it took over. */
export const DEFAULT_ROTATION_OVERLAP_DAYS = 45;
/** Device certificates: 24 h, backdated 5 min for clocks slightly behind. */
export const DEVICE_CERT_TTL_MS = 24 * 3_600_000;
export const DEVICE_CERT_BACKDATE_MS = 5 * 60_000;
/** Issuer objects are re-read at least this often, so another instance's rotation is seen. */
const ISSUER_CACHE_MS = 60_000;

export type CaStatus = 'active' | 'next' | 'retiring' | 'retired';

export interface TenantCaInfo {
  id: string;
  kind: 'root' | 'issuing';
  generation: number;
  status: CaStatus;
  subject: string;
  serial: string;
  fingerprintSha256: string;
  notBefore: string;
  notAfter: string;
  activeFrom: string;
  certificatePem: string;
}

export interface IssuedCertificate {
  serial: string;
  notBefore: string;
  notAfter: string;
  issuingCaId: string;
  certificatePem: string;
  /** leaf, then the issuing CA */
  chainPem: string;
  rootPem: string;
}

interface CachedIssuer {
  caId: string;
  issue: ReturnType<typeof createDeviceCertificateIssuer>['issue'];
  issuingPem: string;
  rootPem: string;
  /** re-read after this time (ms) */
  until: number;
}

const sealLabel = (tenantId: string, id: string) => `tenant-ca:${tenantId}:${id}`;

/**
 * The per-tenant certificate authority: a root CA and one or more generations of issuing CA,
 * private keys sealed under the service master key. Created on first need. Issuance runs from a
 * cached template issuer (no ASN.1 library on the hot path).
 */
export class TenantPki {
  readonly #db: Kysely<Database>;
  readonly #keys: KeyStore;
  readonly #clock: () => Date;
  readonly #issuers = new Map<string, CachedIssuer>();
  readonly #crls = new Map<string, { pem: string; until: number; stamp: string }>();

  /** told (and awaited) when a CA is created or rotated: the broker's TLS listener re-reads what it trusts */
  readonly #onChange: (() => Promise<void>) | undefined;

  constructor(db: Kysely<Database>, keys: KeyStore, clock: () => Date, onChange?: () => Promise<void>) {
    this.#db = db;
    this.#keys = keys;
    this.#clock = clock;
    this.#onChange = onChange;
  }

  /** Creates the tenant's root and first issuing CA if it has none; safe under races. */
  async ensure(tenantId: string): Promise<void> {
    const existing = await this.#db
      .selectFrom('tenant_cas')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .where('kind', '=', 'root')
      .executeTakeFirst();
    if (existing) return;
    const now = this.#clock();
    const root = await createTenantRootCa({ tenantId, now, validityDays: ROOT_CA_DAYS });
    const issuing = await createTenantIssuingCa({
      root,
      tenantId,
      now,
      validityDays: ISSUING_CA_DAYS,
      generation: 1,
    });
    const rootId = randomUUID();
    const issuingId = randomUUID();
    try {
      await this.#db.transaction().execute(async (trx) => {
        await trx
          .insertInto('tenant_cas')
          .values(this.#row(tenantId, rootId, 'root', 1, root, now, now))
          .execute();
        await trx
          .insertInto('tenant_cas')
          .values(this.#row(tenantId, issuingId, 'issuing', 1, issuing, now, now))
          .execute();
      });
    } catch (e) {
      if (!isUniqueViolation(e)) throw e; // another request created it first: use theirs
    }
    await this.#onChange?.();
  }

  #row(
    tenantId: string,
    id: string,
    kind: 'root' | 'issuing',
    generation: number,
    ca: { certPem: string; keyPkcs8: Buffer },
    now: Date,
    activeFrom: Date,
  ): TenantCasTable {
    const cert = new X509Certificate(ca.certPem);
    return {
      id,
      tenant_id: tenantId,
      kind,
      generation,
      cert_pem: ca.certPem,
      key_sealed: this.#keys.seal(ca.keyPkcs8, sealLabel(tenantId, id)).toString('base64'),
      not_before: new Date(cert.validFrom).toISOString(),
      not_after: new Date(cert.validTo).toISOString(),
      active_from: activeFrom.toISOString(),
      created_at: now.toISOString(),
    };
  }

  async #rows(tenantId: string): Promise<TenantCasTable[]> {
    return this.#db
      .selectFrom('tenant_cas')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('kind')
      .orderBy('generation')
      .execute();
  }

  /** The issuing CA in force now: the newest generation whose activation time has come. */
  #activeIssuing(rows: TenantCasTable[], now: string): TenantCasTable {
    const active = rows.filter((r) => r.kind === 'issuing' && r.active_from <= now).at(-1);
    if (!active) throw new HeptadError('INTERNAL_ERROR', 'tenant has no active issuing CA');
    return active;
  }

  async #issuer(tenantId: string): Promise<CachedIssuer> {
    const cached = this.#issuers.get(tenantId);
    if (cached && cached.until > this.#clock().getTime()) return cached;
    await this.ensure(tenantId);
    const nowMs = this.#clock().getTime();
    const rows = await this.#rows(tenantId);
    const now = new Date(nowMs).toISOString();
    const active = this.#activeIssuing(rows, now);
    const root = rows.find((r) => r.kind === 'root');
    if (!root) throw new HeptadError('INTERNAL_ERROR', 'tenant has no root CA');
    const key = toPrivateKey(
      this.#keys.open(Buffer.from(active.key_sealed, 'base64'), sealLabel(tenantId, active.id)),
    );
    const issuer = createDeviceCertificateIssuer({
      issuerCertDer: Buffer.from(new X509Certificate(active.cert_pem).raw),
      issuerKey: key,
      tenantId,
    });
    // Re-read when the next generation activates, or after a minute at most.
    const next = rows.find((r) => r.kind === 'issuing' && r.active_from > now);
    const until = Math.min(
      nowMs + ISSUER_CACHE_MS,
      next ? Date.parse(next.active_from) : Number.POSITIVE_INFINITY,
    );
    const entry: CachedIssuer = {
      caId: active.id,
      issue: issuer.issue,
      issuingPem: active.cert_pem,
      rootPem: root.cert_pem,
      until,
    };
    this.#issuers.set(tenantId, entry);
    return entry;
  }

  /** Issues a 24 h device certificate from the tenant's active issuing CA (the caller persists it). */
  async issueDeviceCertificate(
    tenantId: string,
    deviceId: string,
    spkiDer: Buffer,
  ): Promise<IssuedCertificate> {
    const issuer = await this.#issuer(tenantId);
    const now = this.#clock().getTime();
    const serial = createSerialNumber();
    const notBefore = new Date(now - DEVICE_CERT_BACKDATE_MS);
    const notAfter = new Date(now + DEVICE_CERT_TTL_MS);
    const der = issuer.issue({ deviceId, publicKeySpkiDer: spkiDer, serial, notBefore, notAfter });
    const certificatePem = toPem(der, 'CERTIFICATE');
    return {
      serial: serial.toString('hex'),
      notBefore: notBefore.toISOString(),
      notAfter: notAfter.toISOString(),
      issuingCaId: issuer.caId,
      certificatePem,
      chainPem: `${certificatePem.trim()}\n${issuer.issuingPem.trim()}\n`,
      rootPem: issuer.rootPem,
    };
  }

  async list(tenantId: string): Promise<TenantCaInfo[]> {
    await this.ensure(tenantId);
    return this.#describe(await this.#rows(tenantId));
  }

  /** Each CA row with its status now (no I/O). */
  #describe(rows: TenantCasTable[]): TenantCaInfo[] {
    const now = this.#clock();
    const nowIso = now.toISOString();
    const active = this.#activeIssuing(rows, nowIso);
    return rows.map((r) => {
      const cert = new X509Certificate(r.cert_pem);
      let status: CaStatus;
      if (r.kind === 'root' || r.id === active.id) status = 'active';
      else if (r.active_from > nowIso) status = 'next';
      else {
        // An older generation stays published while certificates it issued may still be valid.
        const successor = rows.find((o) => o.kind === 'issuing' && o.generation === r.generation + 1);
        const retiredAt = successor ? Date.parse(successor.active_from) + DEVICE_CERT_TTL_MS : 0;
        status = now.getTime() < retiredAt ? 'retiring' : 'retired';
      }
      return {
        id: r.id,
        kind: r.kind,
        generation: r.generation,
        status,
        subject: cert.subject,
        serial: cert.serialNumber.toLowerCase(),
        fingerprintSha256: cert.fingerprint256,
        notBefore: r.not_before,
        notAfter: r.not_after,
        activeFrom: r.active_from,
        certificatePem: r.cert_pem,
      };
    });
  }

  /** The certificates brokers and clouds should trust: the root, then every published issuing CA. */
  async published(tenantId: string): Promise<{ root: string; chain: string }> {
    const cas = (await this.list(tenantId)).filter((c) => c.status !== 'retired');
    const root = cas.find((c) => c.kind === 'root');
    if (!root) throw new HeptadError('INTERNAL_ERROR', 'tenant has no root CA');
    const chain = cas.map((c) => c.certificatePem.trim()).join('\n');
    return { root: root.certificatePem, chain: `${chain}\n` };
  }

  /**
   * Creates the next issuing CA, published now and active after `overlapDays` (0: at once).
   * Only one generation may wait at a time.
   */
  async rotate(tenantId: string, overlapDays: number): Promise<TenantCaInfo> {
    await this.ensure(tenantId);
    const rows = await this.#rows(tenantId);
    const now = this.#clock();
    if (rows.some((r) => r.kind === 'issuing' && r.active_from > now.toISOString())) {
      throw new HeptadError('TENANT_CA_ROTATION_PENDING');
    }
    const rootRow = rows.find((r) => r.kind === 'root');
    if (!rootRow) throw new HeptadError('INTERNAL_ERROR', 'tenant has no root CA');
    const generation = Math.max(...rows.filter((r) => r.kind === 'issuing').map((r) => r.generation)) + 1;
    const root = {
      certPem: rootRow.cert_pem,
      keyPkcs8: this.#keys.open(Buffer.from(rootRow.key_sealed, 'base64'), sealLabel(tenantId, rootRow.id)),
    };
    const issuing = await createTenantIssuingCa({
      root,
      tenantId,
      now,
      validityDays: ISSUING_CA_DAYS,
      generation,
    });
    const id = randomUUID();
    const activeFrom = new Date(now.getTime() + overlapDays * 86_400_000);
    await this.#db
      .insertInto('tenant_cas')
      .values(this.#row(tenantId, id, 'issuing', generation, issuing, now, activeFrom))
      .execute();
    this.#issuers.delete(tenantId);
    await this.#onChange?.();
    const info = (await this.list(tenantId)).find((c) => c.id === id);
    if (!info) throw new HeptadError('INTERNAL_ERROR', 'rotated CA not found');
    return info;
  }

  /**
   * The tenant's certificate revocation lists (one per published issuing CA, PEM-concatenated):
   * every unexpired certificate revoked (a device quarantined or unclaimed). Cached until the next change.
   */
  async crl(tenantId: string): Promise<string> {
    const nowMs = this.#clock().getTime();
    const now = new Date(nowMs);
    await this.ensure(tenantId);
    const revoked = await this.#db
      .selectFrom('device_certificates')
      .select(['serial', 'revoked_at', 'issuing_ca_id'])
      .where('tenant_id', '=', tenantId)
      .where('revoked_at', 'is not', null)
      .where('not_after', '>', now.toISOString())
      .orderBy('serial')
      .execute();
    // The revoked set, read fresh on every call (so a quarantine on another instance shows at
    // once); only the signing is cached.
    const stamp = createHash('sha256')
      .update(revoked.map((r) => `${r.serial}:${r.revoked_at}`).join(','))
      .digest('hex');
    const cached = this.#crls.get(tenantId);
    if (cached && cached.until > nowMs && cached.stamp === stamp) return cached.pem;
    const rows = await this.#rows(tenantId);
    const published = this.#describe(rows).filter((c) => c.kind === 'issuing' && c.status !== 'retired');
    const parts: string[] = [];
    for (const ca of published) {
      const row = rows.find((r) => r.id === ca.id);
      if (!row) continue;
      const crl = createCrl({
        issuerCertPem: row.cert_pem,
        issuerKeyPkcs8: this.#keys.open(Buffer.from(row.key_sealed, 'base64'), sealLabel(tenantId, row.id)),
        entries: revoked
          .filter((r) => r.issuing_ca_id === row.id)
          .map((r) => ({ serialHex: r.serial, revokedAt: new Date(r.revoked_at ?? now.toISOString()) })),
        thisUpdate: now,
        nextUpdate: new Date(nowMs + DEVICE_CERT_TTL_MS),
        crlNumber: Math.floor(nowMs / 1000),
      });
      parts.push(crl.pem.trim());
    }
    const pem = `${parts.join('\n')}\n`;
    // Re-signed at least hourly, so nextUpdate always stays a day ahead.
    this.#crls.set(tenantId, { pem, until: nowMs + 3_600_000, stamp });
    return pem;
  }
}

export function spkiSha256(spkiDer: Buffer): string {
  return createHash('sha256').update(spkiDer).digest('hex');
}
