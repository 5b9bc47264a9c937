/**
 * Runtime installation into the inactive slot, and the trial's commit or rollback. Each
 * operation ends in ONE boot.json write, its commit point: a power cut before it leaves the old
 * state (the slot write is invisible until boot.json names the slot as a trial), after it the new.
 */
import { HeptadError, type TrustedKeys, type VerifiedPackage, verifyPackage } from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';
import {
  type BootState,
  checkSlot,
  DEFAULT_TRIAL_BOOTS,
  loadBootState,
  otherSlot,
  type SlotName,
  slotPath,
  writeBootState,
} from './slots.ts';

export interface InstallOptions {
  readonly storage: Storage;
  readonly platformKeys: TrustedKeys;
  readonly pkg: Uint8Array;
  readonly trialBoots?: number;
}

/**
 * Verifies `pkg` (platform signature, type runtime, not below the floor), writes it into the
 * slot that is NOT committed and marks that slot as on trial. Returns the slot and the package.
 */
export function installRuntime(options: InstallOptions): { slot: SlotName; pkg: VerifiedPackage } {
  const { storage, platformKeys } = options;
  // Verify before touching storage: a refused package changes nothing.
  const pkg = verifyPackage(options.pkg, platformKeys);
  if (pkg.manifest.type !== 'runtime') throw new HeptadError('BOOT_NOT_RUNTIME', 'not a runtime package');
  const { state } = loadBootState(storage, platformKeys);
  // Distinct from a verification failure: the package is genuine but older than allowed.
  if (pkg.manifest.securityVersion < state.floor) {
    throw new HeptadError('BOOT_ROLLBACK_REFUSED', 'security version below the floor', {
      detail: { securityVersion: pkg.manifest.securityVersion, floor: state.floor },
    });
  }
  // Normally the slot that is not committed. But when the committed slot no longer verifies
  // (damaged) and the other one does, the device is running from the other one: overwrite the
  // damaged slot instead, and make the running one the committed slot in the same final write.
  let base = state;
  let slot = otherSlot(state.committed);
  if (
    !checkSlot(storage, platformKeys, state.committed, state.floor).ok &&
    checkSlot(storage, platformKeys, slot, state.floor).ok
  ) {
    base = { ...state, committed: slot };
    slot = state.committed;
  }
  // Clear any trial first: while the inactive slot is being rewritten it must not be a trial
  // that the bootloader would try (it would be refused, but would burn an attempt).
  if (state.trial !== null) writeBootState(storage, { ...state, trial: null });
  storage.write(slotPath(slot), options.pkg, 0o644);
  // Read back and verify what is durable before pointing boot.json at it (a bad disk write
  // must not become the trial).
  const back = checkSlot(storage, platformKeys, slot, state.floor);
  if (!back.ok) throw new HeptadError('BOOT_SLOT_UNREADABLE', `slot ${slot} does not verify after writing`);
  writeBootState(storage, {
    ...base,
    trial: { slot, attemptsLeft: options.trialBoots ?? DEFAULT_TRIAL_BOOTS },
  });
  return { slot, pkg };
}

export interface TrialOptions {
  readonly storage: Storage;
  readonly platformKeys: TrustedKeys;
}

function pendingTrial(options: TrialOptions): { state: BootState; slot: SlotName } {
  const { state } = loadBootState(options.storage, options.platformKeys);
  if (state.trial === null) throw new HeptadError('BOOT_NO_TRIAL', 'no trial is pending');
  return { state, slot: state.trial.slot };
}

/**
 * Called by the runtime after its health check. Verifies the trial slot again, then in ONE
 * write makes it committed, raises the floor to its security version and clears the trial.
 */
export function commitTrial(options: TrialOptions): { slot: SlotName; floor: number } {
  const { state, slot } = pendingTrial(options);
  // A trial slot changed since install (bit rot, tampering) must never become the committed one.
  const check = checkSlot(options.storage, options.platformKeys, slot, state.floor);
  if (!check.ok)
    throw new HeptadError(
      check.code === 'BOOT_BELOW_FLOOR' ? 'BOOT_ROLLBACK_REFUSED' : 'BOOT_NO_VALID_RUNTIME',
      `slot ${slot} does not verify`,
      { detail: { slots: { [slot]: check.code } } },
    );
  const floor = Math.max(state.floor, check.pkg.manifest.securityVersion);
  writeBootState(options.storage, { schema: 1, committed: slot, trial: null, floor });
  return { slot, floor };
}

/** Abandons the pending trial: the committed slot stays as it is. */
export function rollbackTrial(options: TrialOptions): { slot: SlotName } {
  const { state } = pendingTrial(options);
  writeBootState(options.storage, { ...state, trial: null });
  return { slot: state.committed };
}
