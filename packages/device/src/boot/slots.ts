/**
 * A/B runtime slot state. `boot.json` says which slot is committed, whether the other one is on
 * trial (and how many boot attempts it has left) and the anti-rollback floor. It is ONE file
 * written atomically, so every transition (install → trial, boot attempt, commit, rollback) is a
 * single commit point: a power cut leaves the old state or the new one.
 */
import { HeptadError, type TrustedKeys, type VerifiedPackage, verifyPackage } from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';

export type SlotName = 'A' | 'B';
export const SLOTS: readonly SlotName[] = ['A', 'B'];

export interface BootState {
  readonly schema: 1;
  readonly committed: SlotName;
  readonly trial: null | { readonly slot: SlotName; readonly attemptsLeft: number };
  /** Anti-rollback floor: the highest security version ever committed. */
  readonly floor: number;
}

export const BOOT_STATE_PATH = 'boot.json';
export const DEFAULT_TRIAL_BOOTS = 3;
/** A larger budget is a damaged or forged file, not a setting: refused like any bad field. */
export const MAX_TRIAL_BOOTS = 100;
const MAX_SECURITY_VERSION = 2 ** 31 - 1;

export const slotPath = (slot: SlotName): string => `slots/${slot}/runtime.hpkg`;
export const otherSlot = (slot: SlotName): SlotName => (slot === 'A' ? 'B' : 'A');
const isSlot = (v: unknown): v is SlotName => v === 'A' || v === 'B';
const isInt = (v: unknown, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/**
 * Strict parse: exactly the documented fields, nothing else. Returns undefined for anything
 * else (missing, not JSON, wrong schema, unknown slot, trial on the committed slot…): the
 * caller then takes the documented recovery path rather than guessing at a half-understood file.
 */
export function parseBootState(bytes: Uint8Array | undefined): BootState | undefined {
  if (bytes === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (Object.keys(o).sort().join() !== 'committed,floor,schema,trial') return undefined;
  if (o.schema !== 1 || !isSlot(o.committed) || !isInt(o.floor, MAX_SECURITY_VERSION)) return undefined;
  let trial: BootState['trial'] = null;
  if (o.trial !== null) {
    const t = o.trial as Record<string, unknown>;
    if (typeof t !== 'object' || Array.isArray(t) || Object.keys(t).sort().join() !== 'attemptsLeft,slot')
      return undefined;
    // A trial always runs in the slot that is NOT committed; anything else is inconsistent.
    if (!isSlot(t.slot) || t.slot === o.committed || !isInt(t.attemptsLeft, MAX_TRIAL_BOOTS))
      return undefined;
    trial = { slot: t.slot, attemptsLeft: t.attemptsLeft };
  }
  return { schema: 1, committed: o.committed, trial, floor: o.floor };
}

export function writeBootState(storage: Storage, state: BootState): void {
  storage.write(BOOT_STATE_PATH, Buffer.from(`${JSON.stringify(state)}\n`), 0o600);
}

export type SlotCheck =
  | { readonly ok: true; readonly slot: SlotName; readonly pkg: VerifiedPackage }
  | { readonly ok: false; readonly slot: SlotName; readonly code: string };

/**
 * Verifies one slot: platform signature (verifyPackage), type runtime, security version at or
 * above the floor. Never throws: a slot that fails any check is simply not bootable.
 */
export function checkSlot(storage: Storage, keys: TrustedKeys, slot: SlotName, floor: number): SlotCheck {
  try {
    const bytes = storage.read(slotPath(slot));
    if (bytes === undefined) return { ok: false, slot, code: 'BOOT_SLOT_EMPTY' };
    const pkg = verifyPackage(bytes, keys);
    // An application package is signed too, but it is not a runtime: never boot it as one.
    if (pkg.manifest.type !== 'runtime') return { ok: false, slot, code: 'BOOT_NOT_RUNTIME' };
    // Stops a downgrade to an old, signed but vulnerable runtime.
    if (pkg.manifest.securityVersion < floor) return { ok: false, slot, code: 'BOOT_BELOW_FLOOR' };
    return { ok: true, slot, pkg };
  } catch (e) {
    return { ok: false, slot, code: e instanceof HeptadError ? e.code : 'BOOT_SLOT_UNREADABLE' };
  }
}

/**
 * The state to act on. When boot.json is unreadable (damaged, missing, wrong schema) we cannot
 * know which slot was committed nor the floor. The one outcome that must never happen is
 * running an unverified runtime: that cannot happen here, because every slot is still verified
 * against the platform key before it is chosen. The next worst outcomes are a rollback and a
 * brick. An attacker who can damage boot.json would like it to reset the floor to 0 and
 * boot an older signed runtime, so the floor is taken as the HIGHEST security version among the
 * slots that verify (never lower than the real floor, which no installed package is below), and
 * the committed slot is the first of A, B that reaches it. If a slot verifies, the device boots:
 * no brick. The cost: a newer trial may be treated as committed; it is platform-signed and
 * not below any floor, so that is a liveness risk, not a security one.
 */
export function loadBootState(storage: Storage, keys: TrustedKeys): { state: BootState; recovered: boolean } {
  const parsed = parseBootState(storage.read(BOOT_STATE_PATH));
  if (parsed !== undefined) return { state: parsed, recovered: false };
  const good = SLOTS.map((s) => checkSlot(storage, keys, s, 0)).filter((c) => c.ok);
  const floor = Math.max(0, ...good.map((c) => c.pkg.manifest.securityVersion));
  const committed = good.find((c) => c.pkg.manifest.securityVersion === floor)?.slot ?? 'A';
  return { state: { schema: 1, committed, trial: null, floor }, recovered: true };
}
