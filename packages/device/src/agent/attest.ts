import { generateKeyPairSync } from 'node:crypto';
import {
  type AttestationEvidence,
  attestationBinding,
  createCsr,
  type DeviceReport,
  HeptadError,
  isHeptadError,
  replayMeasurements,
} from '@heptad/protocol';
import type { RootOfTrust } from '../rot/root-of-trust.ts';
import type { AttestationRecord, DeviceState } from '../state/device-state.ts';
import { type DeviceServiceClient, ServiceRefusal } from './service-client.ts';

export interface AttestationOutcome {
  readonly deviceId: string;
  readonly rotKind: string;
  /** the device's capabilities, as the service granted them at this attestation */
  readonly capabilities: readonly string[];
  /** the tenant's production image public keys (PEM; may be empty) */
  readonly imageKeysPem: string;
  /** the broker the service names (mqtts://HOST:PORT), null when it runs none */
  readonly mqttUrl: string | null;
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly chainPem: string;
}

interface EvidenceAnswer {
  rotKind: string;
  capabilities?: string[];
  imageKeysPem?: string;
  mqttUrl?: string | null;
  certificate: { serial: string; notBefore: string; notAfter: string; chainPem: string; rootPem: string };
}

/**
 * One attestation: fetch a nonce, make a fresh TLS key and its CSR, quote the measurement
 * register over the nonce bound to the CSR, send quote + log + CSR, keep the certificate.
 * The outcome (or the refusal code) is recorded in the device state either way.
 */
export async function attestOnce(opts: {
  state: DeviceState;
  rot: RootOfTrust;
  client: DeviceServiceClient;
  clock?: () => Date;
  /** what the boot chain did: sent with the evidence and bound into the quote */
  report?: DeviceReport | undefined;
}): Promise<AttestationOutcome> {
  const { state, rot, client } = opts;
  const clock = opts.clock ?? (() => new Date());
  const config = state.config();
  const record = (r: Omit<AttestationRecord, 'at' | 'rotKind'>) =>
    state.saveAttestation({ at: clock().toISOString(), rotKind: rot.kind, ...r });
  try {
    // The log must replay to the register, or the device cannot attest honestly.
    const log = state.measurementLog();
    const registers = await rot.readRegisters([config.measurementPcr]);
    const replayed = replayMeasurements(log.map((e) => Buffer.from(e.digest, 'hex')));
    if (!replayed.equals(registers.get(config.measurementPcr) ?? Buffer.alloc(0))) {
      throw new HeptadError('DEVICE_LOG_OUT_OF_SYNC');
    }
    const { nonce } = await client.post<{ nonce: string }>('/v1/attestation/challenge', {
      deviceId: config.deviceId,
    });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const csr = createCsr({ privateKey, subjectCommonName: config.deviceId });
    const quote = await rot.quote(attestationBinding(Buffer.from(nonce, 'hex'), csr, opts.report), [
      config.measurementPcr,
    ]);
    const evidence: AttestationEvidence = {
      deviceId: config.deviceId,
      nonce,
      quote: { attest: quote.attest.toString('base64'), signature: quote.signature.toString('base64') },
      log,
      csr: csr.toString('base64'),
      ...(opts.report !== undefined ? { report: opts.report } : {}),
    };
    const answer = await client.post<EvidenceAnswer>('/v1/attestation/evidence', evidence);
    const c = answer.certificate;
    state.saveCertificate({
      keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      chainPem: c.chainPem,
      rootPem: c.rootPem,
    });
    const capabilities = Array.isArray(answer.capabilities)
      ? answer.capabilities.filter((x): x is string => typeof x === 'string')
      : [];
    state.saveCapabilities(capabilities);
    const mqttUrl = typeof answer.mqttUrl === 'string' ? answer.mqttUrl : null;
    state.saveBrokerUrl(mqttUrl);
    record({ outcome: 'certified', serial: c.serial, notAfter: c.notAfter });
    return {
      deviceId: config.deviceId,
      rotKind: answer.rotKind,
      capabilities,
      imageKeysPem: typeof answer.imageKeysPem === 'string' ? answer.imageKeysPem : '',
      mqttUrl,
      serial: c.serial,
      notBefore: c.notBefore,
      notAfter: c.notAfter,
      chainPem: c.chainPem,
    };
  } catch (e) {
    if (e instanceof ServiceRefusal) record({ outcome: 'refused', code: e.code });
    else record({ outcome: 'failed', code: isHeptadError(e) ? e.code : 'INTERNAL_ERROR' });
    throw e;
  }
}

/** Attest again when less than this remains of the certificate. */
export const RENEW_BEFORE_MS = 4 * 3_600_000;
export const RETRY_BASE_MS = 5_000;
export const RETRY_MAX_MS = 15 * 60_000;

/** When to attest next: at once without a certificate or inside the renewal window. */
export function nextAttestationDelay(notAfter: string | undefined, now: Date): number {
  if (notAfter === undefined) return 0;
  return Math.max(0, Date.parse(notAfter) - RENEW_BEFORE_MS - now.getTime());
}

/**
 * Retry delay after `failures` consecutive failures: exponential from 5 s to 15 min, with full
 * jitter in [½, 1] of the step so a fleet that lost the service does not come back in lockstep.
 */
export function retryDelay(failures: number, random: () => number = Math.random): number {
  const step = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, failures - 1));
  return Math.round(step / 2 + (random() * step) / 2);
}

/**
 * Keeps the device certified: attests at start, again when under 4 h of validity remain, and
 * retries failures with backoff. A device that was offline longer than its certificate's life
 * simply attests when it is back: nothing locks it out. Time and timers come in as parameters.
 */
export class AttestationScheduler {
  readonly #attest: () => Promise<AttestationOutcome>;
  readonly #clock: () => Date;
  readonly #setTimer: (fn: () => void, ms: number) => unknown;
  readonly #clearTimer: (t: unknown) => void;
  readonly #random: () => number;
  #timer: unknown;
  #failures = 0;
  #stopped = false;
  #notAfter: string | undefined;
  readonly onOutcome: Array<
    (o: { ok: true; outcome: AttestationOutcome } | { ok: false; error: unknown }) => void
  > = [];

  constructor(opts: {
    attest: () => Promise<AttestationOutcome>;
    currentNotAfter?: string | undefined;
    clock?: () => Date;
    setTimer?: (fn: () => void, ms: number) => unknown;
    clearTimer?: (t: unknown) => void;
    random?: () => number;
  }) {
    this.#attest = opts.attest;
    this.#notAfter = opts.currentNotAfter;
    this.#clock = opts.clock ?? (() => new Date());
    this.#setTimer = opts.setTimer ?? ((fn, ms) => setTimeout(fn, ms).unref());
    this.#clearTimer = opts.clearTimer ?? ((t) => clearTimeout(t as NodeJS.Timeout));
    this.#random = opts.random ?? Math.random;
  }

  start(): void {
    this.#schedule(nextAttestationDelay(this.#notAfter, this.#clock()));
  }

  /** Attest at once (e.g. after a runtime commit, so the service hears of it now), then as usual. */
  now(): void {
    // Deferred: when called from an onOutcome handler, the run that called it schedules its
    // next attempt first, and this replaces it.
    setImmediate(() => this.#schedule(0));
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clearTimer(this.#timer);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer !== undefined) this.#clearTimer(this.#timer);
    this.#timer = this.#setTimer(() => void this.#run(), ms);
  }

  async #run(): Promise<void> {
    try {
      const outcome = await this.#attest();
      this.#failures = 0;
      this.#notAfter = outcome.notAfter;
      for (const f of this.onOutcome) f({ ok: true, outcome });
      this.#schedule(nextAttestationDelay(this.#notAfter, this.#clock()));
    } catch (error) {
      this.#failures += 1;
      for (const f of this.onOutcome) f({ ok: false, error });
      this.#schedule(retryDelay(this.#failures, this.#random));
    }
  }
}
