import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HeptadError, isDeviceId, type MeasurementEntry, writeFileAtomic } from '@heptad/protocol';
import { formatRotSpec, parseRotSpec, type RotSpec } from '../rot/spec.ts';

/** Written once at manufacture into the read-only area. */
export interface DeviceConfig {
  readonly schema: 1;
  readonly deviceId: string;
  readonly rot: RotSpec;
  readonly serviceUrl: string;
  readonly measurementPcr: number;
  readonly manufacturedAt: string;
}

/** What `heptad device register --from` sends: exactly the registry's request body. */
export interface RegistrationRecord {
  readonly id: string;
  readonly publicKey: string;
  readonly rotKind: 'soft' | 'tpm';
  readonly measurementPcr: number;
  readonly tpmPublic?: string;
}

export interface AttestationRecord {
  readonly at: string;
  readonly outcome: 'certified' | 'refused' | 'failed';
  readonly code?: string;
  readonly serial?: string;
  readonly notAfter?: string;
  readonly rotKind: string;
}

/**
 * The device state folder:
 *
 *     ro/device.json          config (read-only after manufacture)
 *     ro/platform-ca.pem      the service's CA, trusted for HTTPS (optional)
 *     ro/runtime-signers.pem  the platform's runtime-signing public keys (the bootloader's trust)
 *     boot.json               A/B slot state: committed slot, trial, anti-rollback floor
 *     slots/A|B/runtime.hpkg  the runtime packages
 *     events.json             boot and runtime events not yet told to the service
 *     incoming/runtime.hpkg   a runtime package staged for install (heptad device sideload)
 *     run/status.json         what heptad device run is doing (for heptad device status)
 *     registration.json       the public registration record
 *     secrets/                0700: soft identity key and registers, TLS client key
 *     certs/device-chain.pem  the current 24 h certificate and its issuing CA
 *     certs/tenant-root.pem   the tenant root CA
 *     attestation.json        the last attestation's outcome
 *     capabilities.json       the capabilities named at the last successful attestation
 *     update/jobs.json        the update agent's jobs (update/download/: chunks of downloads)
 *     tuf/TENANT/image|director  TUF metadata the update agent trusts (tuf-js's files)
 *     measurements.json       the measurement log since the root of trust was reset
 *
 * Every write is atomic (state/atomic-file.ts).
 */
export class DeviceState {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  get secretsDir(): string {
    return join(this.dir, 'secrets');
  }

  /** Prepares an empty folder for a new device; refuses one that holds anything. */
  static prepare(dir: string): DeviceState {
    if (existsSync(dir) && readdirSync(dir).length > 0) {
      throw new HeptadError('DEVICE_STATE_EXISTS', `${dir} is not empty`);
    }
    mkdirSync(join(dir, 'ro'), { recursive: true, mode: 0o700 });
    mkdirSync(join(dir, 'secrets'), { recursive: true, mode: 0o700 });
    mkdirSync(join(dir, 'certs'), { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    return new DeviceState(dir);
  }

  writeReadOnly(config: DeviceConfig, platformCaPem: string | undefined): void {
    writeFileAtomic(
      join(this.dir, 'ro', 'device.json'),
      `${JSON.stringify({ ...config, rot: formatRotSpec(config.rot) }, null, 2)}\n`,
      0o444,
    );
    if (platformCaPem !== undefined)
      writeFileAtomic(join(this.dir, 'ro', 'platform-ca.pem'), platformCaPem, 0o444);
    chmodSync(join(this.dir, 'ro'), 0o500);
  }

  /** The platform runtime-signing keys, into the read-only area (once, at manufacture). */
  writeRuntimeSigners(pem: string): void {
    const ro = join(this.dir, 'ro');
    chmodSync(ro, 0o700);
    writeFileAtomic(join(ro, 'runtime-signers.pem'), pem, 0o444);
    chmodSync(ro, 0o500);
  }

  writeRegistration(r: RegistrationRecord): string {
    const path = join(this.dir, 'registration.json');
    writeFileAtomic(path, `${JSON.stringify(r, null, 2)}\n`, 0o644);
    return path;
  }

  config(): DeviceConfig {
    const path = join(this.dir, 'ro', 'device.json');
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    } catch (cause) {
      throw new HeptadError('DEVICE_STATE_INVALID', `${path} cannot be read`, { cause });
    }
    const { schema, deviceId, rot, serviceUrl, measurementPcr, manufacturedAt } = raw;
    if (
      schema !== 1 ||
      !isDeviceId(deviceId) ||
      typeof rot !== 'string' ||
      typeof serviceUrl !== 'string' ||
      !Number.isInteger(measurementPcr) ||
      typeof manufacturedAt !== 'string'
    ) {
      throw new HeptadError('DEVICE_STATE_INVALID', `${path} is not a Heptad device config`);
    }
    return {
      schema: 1,
      deviceId,
      rot: parseRotSpec(rot),
      serviceUrl,
      measurementPcr: measurementPcr as number,
      manufacturedAt,
    };
  }

  platformCaPem(): string | undefined {
    const path = join(this.dir, 'ro', 'platform-ca.pem');
    return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  }

  measurementLog(): MeasurementEntry[] {
    const path = join(this.dir, 'measurements.json');
    if (!existsSync(path)) return [];
    try {
      const log = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      if (!Array.isArray(log)) throw new Error('not an array');
      return log as MeasurementEntry[];
    } catch (cause) {
      throw new HeptadError('DEVICE_STATE_INVALID', 'measurements.json is damaged', { cause });
    }
  }

  writeMeasurementLog(log: readonly MeasurementEntry[]): void {
    writeFileAtomic(join(this.dir, 'measurements.json'), `${JSON.stringify(log)}\n`, 0o644);
  }

  /**
   * Saves a new certificate and its key, each atomically. A crash between the two leaves a key
   * that does not match the chain; certificate() then reports none and the device re-attests.
   */
  saveCertificate(c: { keyPem: string; chainPem: string; rootPem: string }): void {
    writeFileAtomic(join(this.dir, 'certs', 'tenant-root.pem'), c.rootPem, 0o644);
    writeFileAtomic(join(this.secretsDir, 'tls-key.pem'), c.keyPem, 0o600);
    writeFileAtomic(join(this.dir, 'certs', 'device-chain.pem'), c.chainPem, 0o644);
  }

  /** The current certificate, its key and the tenant root; undefined when none or they do not match. */
  certificate():
    | { keyPem: string; chainPem: string; rootPem: string; notAfter: string; serial: string }
    | undefined {
    const chainPath = join(this.dir, 'certs', 'device-chain.pem');
    const keyPath = join(this.secretsDir, 'tls-key.pem');
    if (!existsSync(chainPath) || !existsSync(keyPath)) return undefined;
    const chainPem = readFileSync(chainPath, 'utf8');
    const keyPem = readFileSync(keyPath, 'utf8');
    try {
      const leaf = new X509Certificate(chainPem);
      if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) return undefined;
      return {
        keyPem,
        chainPem,
        rootPem: readFileSync(join(this.dir, 'certs', 'tenant-root.pem'), 'utf8'),
        notAfter: new Date(leaf.validTo).toISOString(),
        serial: leaf.serialNumber.toLowerCase(),
      };
    } catch {
      return undefined;
    }
  }

  saveAttestation(r: AttestationRecord): void {
    writeFileAtomic(join(this.dir, 'attestation.json'), `${JSON.stringify(r, null, 2)}\n`, 0o644);
  }

  /** The capabilities the service named at the last successful attestation. */
  saveCapabilities(capabilities: readonly string[]): void {
    writeFileAtomic(join(this.dir, 'capabilities.json'), `${JSON.stringify({ capabilities })}\n`, 0o644);
  }

  /** The broker URL the service named at the last attestation (null: it runs none). */
  saveBrokerUrl(url: string | null): void {
    writeFileAtomic(join(this.dir, 'broker.json'), `${JSON.stringify({ mqttUrl: url })}\n`, 0o644);
  }

  brokerUrl(): string | null {
    try {
      const doc = JSON.parse(readFileSync(join(this.dir, 'broker.json'), 'utf8')) as { mqttUrl?: unknown };
      return typeof doc.mqttUrl === 'string' ? doc.mqttUrl : null;
    } catch {
      return null; // never told: no broker
    }
  }

  capabilities(): readonly string[] {
    try {
      const doc = JSON.parse(readFileSync(join(this.dir, 'capabilities.json'), 'utf8')) as {
        capabilities?: unknown;
      };
      return Array.isArray(doc.capabilities)
        ? doc.capabilities.filter((c): c is string => typeof c === 'string')
        : [];
    } catch {
      // none yet (never attested) or unreadable: no capability, the safe default
      return [];
    }
  }

  lastAttestation(): AttestationRecord | undefined {
    const path = join(this.dir, 'attestation.json');
    return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as AttestationRecord) : undefined;
  }
}
