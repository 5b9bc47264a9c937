/**
 * Device authentication over mTLS on the service's HTTPS listener.
 *
 * A device has no token: its credential is the 24 h certificate its tenant CA issued after
 * attestation (docs/attestation.md). The listener asks every client for a certificate but does
 * not require one (`requestCert: true, rejectUnauthorized: false`, see app.ts), so operators and
 * the CLI keep using bearer tokens on the same port. TLS itself proves that the client holds the
 * certificate's private key (the handshake signature is checked whatever the verify mode); this
 * module decides whether the certificate is one this service stands behind, for routes whose
 * access rule is `device`:
 *
 * 1. a certificate was presented                                   AUTH_DEVICE_CERT_MISSING
 * 2. its SAN names a device and a tenant, and its signature verifies under one of that
 *    tenant's issuing CAs (which chain to the tenant root by construction: they are ours)  AUTH_DEVICE_CERT_UNTRUSTED
 * 3. it is inside its validity window, on the service clock         AUTH_DEVICE_CERT_EXPIRED
 * 4. the service issued it: its serial is on record for that device, tenant and key  AUTH_DEVICE_CERT_UNTRUSTED
 * 5. the device is still claimed by that tenant                     AUTH_DEVICE_NOT_CLAIMED
 * 6. the device is not quarantined                                  AUTH_DEVICE_QUARANTINED
 * 7. the certificate is not revoked                                 AUTH_DEVICE_CERT_REVOKED
 *
 * Steps 1–2 run once per TLS connection (cached on the socket); 3–7 on every request, against
 * the store, so a quarantine or revocation made by any service process takes effect at once.
 * The device and tenant ids come from the certificate, never from the request. The MQTT broker
 * makes the same decision for its connections; the two are meant to converge on this module.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { HeptadError } from '@heptad/protocol';
import type { FastifyRequest } from 'fastify';
import type { Store } from '../store/store.ts';

/** Who is calling, from a verified device certificate. */
export interface DeviceIdentity {
  readonly deviceId: string;
  readonly tenantId: string;
  /** lowercase hex, as in device_certificates */
  readonly serial: string;
  readonly notAfter: string;
  /** the device's group now (reports record it) */
  readonly deviceGroupId: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    device: DeviceIdentity | null;
  }
}

/** A certificate parsed and chain-checked for one TLS connection. */
interface VerifiedCertificate {
  readonly deviceId: string;
  readonly tenantId: string;
  readonly serial: string;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly spkiSha256: string;
}

/** Issuing CAs per tenant are re-read at least this often (another process may have rotated). */
const CA_CACHE_MS = 60_000;
const DEVICE_URN = 'urn:heptad:device:';
const TENANT_URN = 'urn:heptad:tenant:';
const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface CertRow {
  serial: string;
  tenant_id: string;
  device_id: string;
  spki_sha256: string;
  revoked_at: string | null;
  device_tenant_id: string | null;
  quarantined_at: string | null;
  device_group_id: string | null;
}

export interface DeviceAuthenticator {
  /** Resolves the caller's identity or throws a coded AUTH_DEVICE_* error. */
  authenticate(request: FastifyRequest): Promise<DeviceIdentity>;
}

/** `URI:urn:heptad:device:<id>, URI:urn:heptad:tenant:<id>` → the two ids. */
function sanIds(cert: X509Certificate): { deviceId?: string; tenantId?: string } {
  const out: { deviceId?: string; tenantId?: string } = {};
  for (const part of (cert.subjectAltName ?? '').split(', ')) {
    if (part.startsWith(`URI:${DEVICE_URN}`)) out.deviceId = part.slice(4 + DEVICE_URN.length);
    else if (part.startsWith(`URI:${TENANT_URN}`)) out.tenantId = part.slice(4 + TENANT_URN.length);
  }
  return out;
}

export function createDeviceAuthenticator(store: Store, clock: () => Date): DeviceAuthenticator {
  const db = store.db;
  const cas = new Map<string, { certs: X509Certificate[]; at: number }>();
  const verified = new WeakMap<object, VerifiedCertificate>();

  const issuingCas = async (tenantId: string, fresh: boolean): Promise<X509Certificate[]> => {
    const now = Date.now();
    const hit = cas.get(tenantId);
    if (hit && !fresh && now - hit.at < CA_CACHE_MS) return hit.certs;
    const rows = await db
      .selectFrom('tenant_cas')
      .select('cert_pem')
      .where('tenant_id', '=', tenantId)
      .where('kind', '=', 'issuing')
      .execute();
    const certs = rows.map((r) => new X509Certificate(r.cert_pem));
    if (cas.size > 10_000) cas.clear();
    cas.set(tenantId, { certs, at: now });
    return certs;
  };

  const verifyChain = async (raw: Buffer): Promise<VerifiedCertificate> => {
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(raw);
    } catch (cause) {
      throw new HeptadError('AUTH_DEVICE_CERT_UNTRUSTED', 'the client certificate cannot be parsed', {
        cause,
      });
    }
    const { deviceId, tenantId } = sanIds(leaf);
    if (!deviceId || !tenantId || !HEX64.test(deviceId) || !UUID.test(tenantId)) {
      throw new HeptadError(
        'AUTH_DEVICE_CERT_UNTRUSTED',
        'the certificate names no Heptad device and tenant',
      );
    }
    const signedBy = (list: X509Certificate[]) =>
      list.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
    // A miss re-reads the tenant's CAs once: a rotation may have added a generation since.
    if (!signedBy(await issuingCas(tenantId, false)) && !signedBy(await issuingCas(tenantId, true))) {
      throw new HeptadError('AUTH_DEVICE_CERT_UNTRUSTED');
    }
    return {
      deviceId,
      tenantId,
      serial: leaf.serialNumber.toLowerCase(),
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
      spkiSha256: createHash('sha256')
        .update(leaf.publicKey.export({ type: 'spki', format: 'der' }))
        .digest('hex'),
    };
  };

  const lookup = async (serial: string): Promise<CertRow | undefined> =>
    (await db
      .selectFrom('device_certificates as c')
      .innerJoin('devices as d', 'd.id', 'c.device_id')
      .select([
        'c.serial',
        'c.tenant_id',
        'c.device_id',
        'c.spki_sha256',
        'c.revoked_at',
        'd.tenant_id as device_tenant_id',
        'd.quarantined_at',
        'd.device_group_id',
      ])
      .where('c.serial', '=', serial)
      .executeTakeFirst()) as CertRow | undefined;

  return {
    async authenticate(request) {
      const socket = request.raw.socket as Partial<TLSSocket>;
      let cert = verified.get(socket);
      if (!cert) {
        const peer =
          typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(false) : null;
        if (!peer?.raw) throw new HeptadError('AUTH_DEVICE_CERT_MISSING');
        cert = await verifyChain(peer.raw);
        verified.set(socket, cert);
      }
      const now = clock().getTime();
      if (now < cert.notBefore || now >= cert.notAfter) throw new HeptadError('AUTH_DEVICE_CERT_EXPIRED');
      // Serials are stored without leading zeros' ambiguity: compare on the hex digits.
      const row = (await lookup(cert.serial)) ?? (await lookup(cert.serial.replace(/^0+/, '')));
      if (
        !row ||
        row.device_id !== cert.deviceId ||
        row.tenant_id !== cert.tenantId ||
        row.spki_sha256 !== cert.spkiSha256
      ) {
        throw new HeptadError('AUTH_DEVICE_CERT_UNTRUSTED', 'the service has no record of this certificate');
      }
      if (row.device_tenant_id !== cert.tenantId) throw new HeptadError('AUTH_DEVICE_NOT_CLAIMED');
      if (row.quarantined_at !== null) throw new HeptadError('AUTH_DEVICE_QUARANTINED');
      if (row.revoked_at !== null) throw new HeptadError('AUTH_DEVICE_CERT_REVOKED');
      const identity: DeviceIdentity = {
        deviceId: cert.deviceId,
        tenantId: cert.tenantId,
        serial: row.serial,
        notAfter: new Date(cert.notAfter).toISOString(),
        deviceGroupId: row.device_group_id,
      };
      request.device = identity;
      return identity;
    },
  };
}

/** The calling device on a `device` route (set by the authenticator before the handler runs). */
export function deviceOf(request: FastifyRequest): DeviceIdentity {
  if (!request.device) throw new HeptadError('AUTH_DEVICE_CERT_MISSING');
  return request.device;
}
