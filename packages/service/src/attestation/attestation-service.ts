import {
  type AttestationEvidence,
  type ErrorCode,
  HeptadError,
  isHeptadError,
  NONCE_TTL_MS,
} from '@heptad/protocol';
import type { Logger } from 'pino';
import type { TenantPki } from '../pki/tenant-pki.ts';
import { spkiSha256 } from '../pki/tenant-pki.ts';
import type { Store } from '../store/store.ts';
import { assertReportMatchesLog, securityEventOf } from './device-report.ts';
import type { NonceIssuer } from './nonce-store.ts';
import { evidenceDigest, verifyDeviceCsr, verifyQuoteAndLog } from './verify-evidence.ts';

/** Answered nonces past their expiry are purged on one evidence in this many. */
const PURGE_EVERY = 256;

export interface AttestationResult {
  deviceId: string;
  tenantId: string;
  rotKind: string;
  /** the device's capabilities now: the device acts on them (appDevelopment: no cloud app updates) */
  capabilities: string[];
  /** the tenant's production image public keys (PEM): the device verifies cloud-deployed apps with them */
  imageKeysPem: string;
  certificate: {
    serial: string;
    notBefore: string;
    notAfter: string;
    chainPem: string;
    rootPem: string;
  };
}

/**
 * Remote attestation: a fresh single-use nonce, then evidence checked in a fixed order, each
 * failure with its own code and a stored security event; success earns a 24 h certificate from
 * the tenant CA.
 */
export class AttestationService {
  readonly #store: Store;
  readonly #pki: TenantPki;
  readonly #clock: () => Date;
  readonly #log: Logger | undefined;
  readonly #nonces: NonceIssuer;
  #answers = 0;

  constructor(store: Store, nonces: NonceIssuer, pki: TenantPki, clock: () => Date, log?: Logger) {
    this.#store = store;
    this.#nonces = nonces;
    this.#pki = pki;
    this.#clock = clock;
    this.#log = log;
  }

  /** A fresh nonce for a registered device. Nothing is stored: the nonce carries its own proof. */
  async challenge(deviceId: string): Promise<{ nonce: string; expiresAt: string }> {
    const now = this.#clock();
    const device = await this.#store.platform().registry.attestationView(deviceId);
    if (!device) throw new HeptadError('ATTEST_DEVICE_UNKNOWN');
    const expiresAt = new Date(now.getTime() + NONCE_TTL_MS);
    return { nonce: this.#nonces.issue(deviceId, expiresAt), expiresAt: expiresAt.toISOString() };
  }

  async attest(evidence: AttestationEvidence): Promise<AttestationResult> {
    const now = this.#clock();
    const nowIso = now.toISOString();
    const att = this.#store.attestation();
    const device = await this.#store.platform().registry.attestationView(evidence.deviceId);
    let tenantId: string | null = device?.tenantId ?? null;
    // Set once the nonce checks passed: from then on the nonce is burnt whatever happens.
    let nonceExpiry: string | undefined;
    try {
      // 1–3: the device is registered, claimed, not quarantined.
      if (!device) throw new HeptadError('ATTEST_DEVICE_UNKNOWN');
      if (device.tenantId === null) throw new HeptadError('ATTEST_DEVICE_UNCLAIMED');
      tenantId = device.tenantId;
      if (device.quarantinedAt !== null) throw new HeptadError('ATTEST_DEVICE_QUARANTINED');
      // 4: the nonce is known, this device's, unexpired, unused — then burnt, whatever follows.
      const { expiresAt } = this.#nonces.check(evidence.nonce, device.id, now);
      if (await att.isNonceUsed(evidence.nonce)) throw new HeptadError('ATTEST_NONCE_REPLAYED');
      nonceExpiry = expiresAt.toISOString();
      // 5–8: the quote's signature, its binding to nonce, CSR and report, its register, the log replay.
      const quoted = verifyQuoteAndLog(device, evidence, Buffer.from(evidence.nonce, 'hex'));
      // 9: the report, if any, describes the runtime the boot chain measured last.
      if (evidence.report !== undefined) assertReportMatchesLog(evidence.log, evidence.report);
      // 10: every measured runtime is one the platform knows (apps: any, until app policy exists).
      const known = await att.knownRuntimeDigests(quoted.runtimeDigests);
      if (quoted.runtimeDigests.some((d) => !known.has(d))) throw new HeptadError('ATTEST_RUNTIME_UNKNOWN');
      // 10b: every measured app is one the device's group may run: in its current or previous
      // deployment, or — on an appDevelopment device only — a developer's app.
      const apps = evidence.log.filter((e) => e.kind === 'app');
      const policy = await att.appPolicy(device.tenantId, device.id, apps.length > 0);
      if (!policy.capabilities.includes('appDevelopment')) {
        const bad = apps.find((a) => !policy.allowedAppDigests.has(a.digest));
        if (bad) {
          throw new HeptadError('ATTEST_APP_NOT_ALLOWED', undefined, {
            detail: { componentId: bad.componentId ?? null, imageId: bad.imageId ?? null },
          });
        }
      }
      // 11–12: the CSR is valid and for this device, and its key is not certified for another.
      const spkiDer = verifyDeviceCsr(device.id, quoted.csrDer);
      const keyHash = spkiSha256(spkiDer);
      if (await att.keyHolder(keyHash, device.id)) throw new HeptadError('ATTEST_CSR_KEY_REUSED');

      const cert = await this.#pki.issueDeviceCertificate(device.tenantId, device.id, spkiDer);
      const claimedTenant = device.tenantId;
      // One commit for the success path: burn the nonce (a concurrent replay that also got this
      // far loses here and rolls back), record the certificate, mark the device attested with the
      // runtime it reported, and raise the reported events an owner must hear about.
      const raised = await this.#store.transaction(async (s) => {
        if (!(await s.attestation().burnNonce(evidence.nonce, String(nonceExpiry)))) {
          throw new HeptadError('ATTEST_NONCE_REPLAYED');
        }
        await s.attestation().recordCertificate({
          serial: cert.serial,
          tenantId: claimedTenant,
          deviceId: device.id,
          issuingCaId: cert.issuingCaId,
          spkiSha256: keyHash,
          rotKind: device.rotKind,
          notBefore: cert.notBefore,
          notAfter: cert.notAfter,
        });
        const fresh = await s.platform().registry.markAttested(device.id, nowIso, evidence.report);
        const digest = fresh.length > 0 ? evidenceDigest(evidence) : null;
        const kinds: string[] = [];
        for (const e of fresh) {
          const ev = securityEventOf(e);
          if (!ev) continue;
          // Stamped with the service's time: the device's own time is kept with the event on the
          // device record, and a device clock must not reorder or unfold the tenant's events.
          await s.attestation().recordEvent({
            tenantId: claimedTenant,
            deviceId: device.id,
            ...ev,
            evidenceDigest: digest,
            at: nowIso,
          });
          kinds.push(ev.kind);
        }
        return kinds;
      });
      if (raised.length > 0) {
        this.#log?.warn({ deviceId: device.id, tenantId, events: raised }, 'device reported security events');
      }
      if (++this.#answers % PURGE_EVERY === 0) await att.purgeNonces(nowIso);
      this.#log?.info(
        { deviceId: device.id, tenantId, serial: cert.serial, rotKind: device.rotKind },
        'certificate issued',
      );
      return {
        deviceId: device.id,
        tenantId: claimedTenant,
        rotKind: device.rotKind,
        capabilities: [...policy.capabilities],
        imageKeysPem: policy.imageKeysPem,
        certificate: {
          serial: cert.serial,
          notBefore: cert.notBefore,
          notAfter: cert.notAfter,
          chainPem: cert.chainPem,
          rootPem: cert.rootPem,
        },
      };
    } catch (e) {
      if (nonceExpiry !== undefined && !(isHeptadError(e) && e.code === 'ATTEST_NONCE_REPLAYED')) {
        await att.burnNonce(evidence.nonce, nonceExpiry);
      }
      const code: ErrorCode = isHeptadError(e) ? e.code : 'INTERNAL_ERROR';
      // Evidence for an id nobody registered belongs to no tenant: logged, not stored, so an
      // anonymous sender cannot grow the store with it.
      if (code === 'ATTEST_DEVICE_UNKNOWN') {
        this.#log?.warn({ deviceId: evidence.deviceId, reason: code }, 'attestation refused');
      } else if (code !== 'INTERNAL_ERROR') {
        await att.recordEvent({
          tenantId,
          deviceId: evidence.deviceId,
          kind: 'attestation.refused',
          reason: code,
          evidenceDigest: evidenceDigest(evidence),
          at: nowIso,
        });
        this.#log?.warn({ deviceId: evidence.deviceId, tenantId, reason: code }, 'attestation refused');
      }
      throw e;
    }
  }
}
