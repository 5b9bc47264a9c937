/**
 * The bootloader: the device's trusted computing base (DESIGN.md flow 3). It chooses a runtime
 * slot, verifies its package against the platform key and the anti-rollback floor, measures it
 * into the root of trust, and returns it to be started. Nothing that fails verification is ever
 * returned. Imports: node built-ins and @heptad/protocol only (STYLE.md: the TCB stays small).
 */
import {
  HeptadError,
  type ImageManifest,
  type MeasurementEntry,
  type PackageFile,
  type TrustedKeys,
} from '@heptad/protocol';
import type { RootOfTrust } from '../rot/root-of-trust.ts';
import type { Storage } from '../state/storage.ts';
import {
  checkSlot,
  loadBootState,
  otherSlot,
  type SlotCheck,
  type SlotName,
  writeBootState,
} from './slots.ts';

export interface BootOptions {
  readonly storage: Storage;
  /** The platform's runtime-signing keys, from the device's read-only area. */
  readonly platformKeys: TrustedKeys;
  readonly rot?: RootOfTrust;
  readonly measurementPcr: number;
}

export interface BootResult {
  readonly slot: SlotName;
  readonly manifest: ImageManifest;
  readonly files: readonly PackageFile[];
  /** Package digest (hex): what was extended into the measurement register. */
  readonly digest: string;
  /** True when this boot is a trial of a newly installed runtime (not yet committed). */
  readonly trial: boolean;
  /** The measurement-log entry for this boot (extended only when a root of trust was given). */
  readonly measurement: MeasurementEntry;
  /** Slots refused before the chosen one, with their reason codes: reported to the service. */
  readonly refused: ReadonlyArray<{ readonly slot: SlotName; readonly code: string }>;
  /** True when boot.json was unreadable and the state was derived from the slots. */
  readonly recovered: boolean;
  /** The trial slot given up at this boot because its attempts ran out (reported as trial-abandoned). */
  readonly abandoned: SlotName | null;
  /** The anti-rollback floor in force for this boot. */
  readonly floor: number;
}

export async function boot(options: BootOptions): Promise<BootResult> {
  const { storage, platformKeys } = options;
  const { state, recovered } = loadBootState(storage, platformKeys);
  let order: SlotName[] = [state.committed, otherSlot(state.committed)];
  let trialSlot: SlotName | undefined;
  let abandoned: SlotName | null = null;
  if (state.trial !== null && state.trial.attemptsLeft > 0) {
    // Spend one attempt BEFORE starting the trial: a trial that crashes or hangs before it can
    // commit has used its attempt anyway, so it runs out and we return to the committed slot.
    writeBootState(storage, {
      ...state,
      trial: { ...state.trial, attemptsLeft: state.trial.attemptsLeft - 1 },
    });
    trialSlot = state.trial.slot;
    order = [trialSlot, state.committed];
  } else if (state.trial !== null) {
    // Budget exhausted: the trial failed. Clear it so the device settles on the committed slot.
    writeBootState(storage, { ...state, trial: null });
    abandoned = state.trial.slot;
  }
  // First slot that passes every check (signature, type, floor); the other one is the fallback,
  // under the same checks, so a damaged committed slot does not brick the device.
  const refused: Array<{ slot: SlotName; code: string }> = [];
  let chosen: Extract<SlotCheck, { ok: true }> | undefined;
  for (const slot of order) {
    const check = checkSlot(storage, platformKeys, slot, state.floor);
    if (check.ok) {
      chosen = check;
      break;
    }
    refused.push({ slot, code: check.code });
  }
  if (chosen === undefined) {
    throw new HeptadError('BOOT_NO_VALID_RUNTIME', 'no runtime slot verifies', {
      detail: { slots: Object.fromEntries(refused.map((r) => [r.slot, r.code])), recovered },
    });
  }
  const { manifest, files, digest } = chosen.pkg;
  const measurement: MeasurementEntry = {
    kind: 'runtime',
    digest,
    name: manifest.name,
    version: manifest.version,
    componentId: manifest.componentId,
    imageId: manifest.imageId,
  };
  // Measured boot: the register now commits to exactly the package that will run, so remote
  // attestation can tell this runtime from any other.
  if (options.rot !== undefined) await options.rot.extend(options.measurementPcr, Buffer.from(digest, 'hex'));
  return {
    slot: chosen.slot,
    manifest,
    files,
    digest,
    trial: chosen.slot === trialSlot,
    measurement,
    refused,
    recovered,
    abandoned,
    floor: state.floor,
  };
}
