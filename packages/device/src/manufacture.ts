import type { KeyObject } from 'node:crypto';
import {
  DEFAULT_MEASUREMENT_PCR,
  deviceIdOf,
  HeptadError,
  type VerifiedPackage,
  verifyPackage,
} from '@heptad/protocol';
import { parseRuntimeSigners } from './boot/platform-keys.ts';
import { slotPath, writeBootState } from './boot/slots.ts';
import type { RootOfTrust } from './rot/root-of-trust.ts';
import { SoftRootOfTrust } from './rot/soft/soft-root-of-trust.ts';
import type { RotSpec } from './rot/spec.ts';
import { DeviceState, type RegistrationRecord } from './state/device-state.ts';
import { FsStorage } from './state/storage.ts';

export interface ManufactureOptions {
  readonly stateDir: string;
  readonly rot: RotSpec;
  readonly serviceUrl: string;
  readonly platformCaPem?: string | undefined;
  readonly measurementPcr?: number;
  readonly now?: Date;
  /** opens a TPM root of trust (injected so the device core does not depend on a TPM being there) */
  readonly openTpm?: (spec: Extract<RotSpec, { kind: 'tpm' }>) => Promise<RootOfTrust>;
  /** the factory runtime package, written into slot A and committed */
  readonly runtime?: Uint8Array | undefined;
  /** the platform's runtime-signing public keys (PEM), written into the read-only area */
  readonly runtimeSignersPem?: string | undefined;
}

export interface ManufactureResult {
  readonly deviceId: string;
  readonly registration: RegistrationRecord;
  readonly registrationPath: string;
  /** the factory runtime in slot A, when one was given */
  readonly runtime?: { readonly version: string; readonly securityVersion: number; readonly digest: string };
}

/**
 * Creates a device: its identity inside the root of trust (the private key never leaves it), the
 * read-only area (config, platform CA) and the public registration record for the operator.
 */
export async function manufacture(opts: ManufactureOptions): Promise<ManufactureResult> {
  let url: URL;
  try {
    url = new URL(opts.serviceUrl);
  } catch (cause) {
    throw new HeptadError('CLI_USAGE', `--service "${opts.serviceUrl}" is not a URL`, { cause });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new HeptadError('CLI_USAGE', '--service must be an https:// URL');
  const pcr = opts.measurementPcr ?? DEFAULT_MEASUREMENT_PCR;
  if (!Number.isInteger(pcr) || pcr < 0 || pcr > 23)
    throw new HeptadError('CLI_USAGE', 'the measurement register must be 0–23');
  // The factory runtime must verify against the platform key it will be booted with, and is
  // checked before anything is written: a refused runtime leaves no half-made device behind.
  let factory: VerifiedPackage | undefined;
  if (opts.runtime !== undefined || opts.runtimeSignersPem !== undefined) {
    if (opts.runtime === undefined || opts.runtimeSignersPem === undefined)
      throw new HeptadError('CLI_USAGE', '--runtime and --runtime-signer go together');
    factory = verifyPackage(opts.runtime, parseRuntimeSigners(opts.runtimeSignersPem));
    if (factory.manifest.type !== 'runtime')
      throw new HeptadError('BOOT_NOT_RUNTIME', 'the factory runtime is not a runtime package');
  }
  const state = DeviceState.prepare(opts.stateDir);
  let rot: RootOfTrust;
  if (opts.rot.kind === 'soft') {
    rot = SoftRootOfTrust.create(state.secretsDir);
  } else {
    if (!opts.openTpm) throw new HeptadError('DEVICE_ROT_SPEC_INVALID', 'no TPM support in this build');
    rot = await opts.openTpm(opts.rot);
  }
  try {
    const key: KeyObject = await rot.identityPublicKey();
    const deviceId = deviceIdOf(key);
    const material = await rot.identityKeyMaterial();
    state.writeReadOnly(
      {
        schema: 1,
        deviceId,
        rot: opts.rot,
        serviceUrl: url.toString().replace(/\/$/, ''),
        measurementPcr: pcr,
        manufacturedAt: (opts.now ?? new Date()).toISOString(),
      },
      opts.platformCaPem,
    );
    const registration: RegistrationRecord = {
      id: deviceId,
      publicKey: key.export({ format: 'pem', type: 'spki' }).toString(),
      rotKind: rot.kind,
      measurementPcr: pcr,
      ...(material['tpmPublic'] ? { tpmPublic: material['tpmPublic'] } : {}),
    };
    const registrationPath = state.writeRegistration(registration);
    if (factory !== undefined && opts.runtime !== undefined && opts.runtimeSignersPem !== undefined) {
      const storage = new FsStorage(opts.stateDir);
      state.writeRuntimeSigners(opts.runtimeSignersPem);
      storage.write(slotPath('A'), opts.runtime, 0o644);
      // The factory runtime is committed from the start; its security version is the first floor.
      writeBootState(storage, {
        schema: 1,
        committed: 'A',
        trial: null,
        floor: factory.manifest.securityVersion,
      });
      return {
        deviceId,
        registration,
        registrationPath,
        runtime: {
          version: factory.manifest.version,
          securityVersion: factory.manifest.securityVersion,
          digest: factory.digest,
        },
      };
    }
    return { deviceId, registration, registrationPath };
  } finally {
    await rot.close();
  }
}
