import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SoftRootOfTrust } from '@heptad/device';
import {
  type AttestationEvidence,
  attestationBinding,
  createCsr,
  DEFAULT_MEASUREMENT_PCR,
  type DeviceReport,
  deviceIdOf,
  type MeasurementEntry,
} from '@heptad/protocol';
import type { TestService } from './service.ts';

/** A device with a software root of trust, registered (and optionally claimed) on a test service. */
export interface SoftDevice {
  readonly id: string;
  readonly rot: SoftRootOfTrust;
  readonly publicKeyPem: string;
  readonly log: MeasurementEntry[];
  /** measures an image into the register and the log, as the boot chain does */
  measure(entry: MeasurementEntry): Promise<void>;
  /** fetches a challenge from the service */
  challenge(): Promise<string>;
  /**
   * evidence for `nonce`: quote over the nonce bound to a fresh CSR (and the report, when one is
   * given, as the device runtime sends it), the log, the CSR
   */
  evidence(
    nonce: string,
    opts?: { tlsKey?: KeyObject; csrCommonName?: string; report?: DeviceReport },
  ): Promise<AttestationEvidence & { tlsKey: KeyObject }>;
  cleanup(): void;
}

export async function createSoftDevice(
  svc: TestService,
  opts: { claimToken?: string; deviceGroup?: string } = {},
): Promise<SoftDevice> {
  const dir = mkdtempSync(join(tmpdir(), 'heptad-softdev-'));
  const rot = SoftRootOfTrust.create(dir);
  const key = await rot.identityPublicKey();
  const id = deviceIdOf(key);
  const publicKeyPem = key.export({ format: 'pem', type: 'spki' }).toString();
  const reg = await svc.call('POST', '/v1/devices', {
    token: svc.operatorToken,
    body: { id, publicKey: publicKeyPem, rotKind: 'soft', measurementPcr: DEFAULT_MEASUREMENT_PCR },
  });
  if (reg.status !== 201) throw new Error(`register soft device: ${reg.status} ${reg.body}`);
  if (opts.claimToken) {
    const c = await svc.call('POST', '/v1/devices/claim', {
      token: opts.claimToken,
      body: { deviceIds: [id], ...(opts.deviceGroup ? { deviceGroup: opts.deviceGroup } : {}) },
    });
    if (c.status !== 200) throw new Error(`claim soft device: ${c.status} ${c.body}`);
  }
  const log: MeasurementEntry[] = [];
  return {
    id,
    rot,
    publicKeyPem,
    log,
    async measure(entry) {
      await rot.extend(DEFAULT_MEASUREMENT_PCR, Buffer.from(entry.digest, 'hex'));
      log.push(entry);
    },
    async challenge() {
      const r = await svc.call('POST', '/v1/attestation/challenge', { body: { deviceId: id } });
      if (r.status !== 201) throw new Error(`challenge: ${r.status} ${r.body}`);
      return String(r.json['nonce']);
    },
    async evidence(nonce, o = {}) {
      const tlsKey = o.tlsKey ?? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
      const csr = createCsr({ privateKey: tlsKey, subjectCommonName: o.csrCommonName ?? id });
      const quote = await rot.quote(attestationBinding(Buffer.from(nonce, 'hex'), csr, o.report), [
        DEFAULT_MEASUREMENT_PCR,
      ]);
      return {
        deviceId: id,
        nonce,
        quote: { attest: quote.attest.toString('base64'), signature: quote.signature.toString('base64') },
        log: [...log],
        csr: csr.toString('base64'),
        ...(o.report ? { report: o.report } : {}),
        tlsKey,
      };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The evidence as sent on the wire (without the test's TLS key). */
export function wire(e: AttestationEvidence & { tlsKey?: KeyObject }): AttestationEvidence {
  const { tlsKey: _k, ...rest } = e;
  return rest;
}
