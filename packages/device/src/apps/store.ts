/**
 * The app store on the device (docs/apps.md §App store). Every installed app has two slots,
 * `apps/<componentId>/A|B/app.hpkg`, and one record in `apps/installed.json`: its committed slot,
 * its trial (slot and start attempts left) and its anti-rollback floor. The records of all apps
 * are ONE file written atomically, so each operation below ends in a single write that is its
 * commit point, as boot.json is for the runtime: a power cut before it leaves the old state (a
 * slot written but not named is invisible), after it the new.
 *
 * This is the API the update agent calls. The supervisor runs, for each app, its trial slot if it
 * has one, else its committed slot, and restarts an app whose running package changed.
 */
import {
  type AppManifest,
  type BoardDefinition,
  checkAppAgainstDevice,
  HeptadError,
  isHeptadError,
  parseAppManifest,
  parseBoardDefinitionText,
  RUNTIME_COMPONENT_ID,
  type VerifiedPackage,
  verifyPackage,
} from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';
import { type AppTrust, loadAppTrust } from './trust.ts';

export type AppSlot = 'A' | 'B';
export const APP_STORE_PATH = 'apps/installed.json';
export const BOARD_PATH = 'board.json';
export const DEFAULT_APP_TRIAL_STARTS = 3;
const MAX_TRIAL_STARTS = 100;
const MAX_SECURITY_VERSION = 2 ** 31 - 1;
/** More apps than this is a damaged or forged record, not a device. */
export const MAX_INSTALLED_APPS = 64;

export const appSlotPath = (componentId: string, slot: AppSlot): string =>
  `apps/${componentId}/${slot}/app.hpkg`;
const other = (s: AppSlot): AppSlot => (s === 'A' ? 'B' : 'A');

export interface AppRecord {
  /** null: installed but never committed (its first version is still on trial) */
  readonly committed: AppSlot | null;
  readonly trial: null | { readonly slot: AppSlot; readonly startsLeft: number };
  /** the highest security version ever committed for this component */
  readonly floor: number;
}

export interface AppStoreState {
  readonly schema: 1;
  readonly apps: Readonly<Record<string, AppRecord>>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const EMPTY: AppStoreState = { schema: 1, apps: {} };
const isSlot = (v: unknown): v is AppSlot => v === 'A' || v === 'B';
const isInt = (v: unknown, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/** Strict parse of apps/installed.json; undefined for anything but exactly the documented shape. */
export function parseAppStore(bytes: Uint8Array | undefined): AppStoreState | undefined {
  if (bytes === undefined) return EMPTY;
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (Object.keys(o).sort().join() !== 'apps,schema' || o.schema !== 1) return undefined;
  const apps = o.apps;
  if (typeof apps !== 'object' || apps === null || Array.isArray(apps)) return undefined;
  const ids = Object.keys(apps);
  if (ids.length > MAX_INSTALLED_APPS) return undefined;
  const out: Record<string, AppRecord> = {};
  for (const id of ids) {
    if (!UUID.test(id) || id === RUNTIME_COMPONENT_ID) return undefined;
    const r = (apps as Record<string, unknown>)[id] as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || Object.keys(r).sort().join() !== 'committed,floor,trial')
      return undefined;
    if (!(r.committed === null || isSlot(r.committed)) || !isInt(r.floor, MAX_SECURITY_VERSION))
      return undefined;
    let trial: AppRecord['trial'] = null;
    if (r.trial !== null) {
      const t = r.trial as Record<string, unknown>;
      if (typeof t !== 'object' || Object.keys(t).sort().join() !== 'slot,startsLeft') return undefined;
      if (!isSlot(t.slot) || t.slot === r.committed || !isInt(t.startsLeft, MAX_TRIAL_STARTS))
        return undefined;
      trial = { slot: t.slot, startsLeft: t.startsLeft };
    }
    if (r.committed === null && trial === null) return undefined;
    out[id] = { committed: r.committed as AppSlot | null, trial, floor: r.floor };
  }
  return { schema: 1, apps: out };
}

/**
 * The store's records. A damaged file (torn by a disk fault, edited) is APP_STORE_INVALID: the
 * apps it named are not run (fail closed); installing or removing an app rewrites it.
 */
export function loadAppStore(storage: Storage): AppStoreState {
  const s = parseAppStore(storage.read(APP_STORE_PATH));
  if (s === undefined) throw new HeptadError('APP_STORE_INVALID', `${APP_STORE_PATH} is damaged`);
  return s;
}

function loadForWrite(storage: Storage): AppStoreState {
  return parseAppStore(storage.read(APP_STORE_PATH)) ?? EMPTY;
}

function writeStore(storage: Storage, apps: Record<string, AppRecord>): void {
  storage.write(APP_STORE_PATH, Buffer.from(`${JSON.stringify({ schema: 1, apps })}\n`), 0o600);
}

/** A simulated development board, used when the device has no board.json of its own. */
export const DEFAULT_BOARD_JSON = {
  schemaVersion: 1,
  name: 'heptad-sim',
  peripherals: {
    LED1: { type: 'gpio', backend: 'sim' },
    LED2: { type: 'gpio', backend: 'sim' },
    LED3: { type: 'gpio', backend: 'sim' },
    BUTTON_A: { type: 'gpio', backend: 'sim' },
    BUTTON_B: { type: 'gpio', backend: 'sim' },
    RELAY1: { type: 'gpio', backend: 'sim' },
    UART1: { type: 'uart', backend: 'sim' },
    I2C1: { type: 'i2c', backend: 'sim' },
    SPI0: { type: 'spi', backend: 'sim' },
    PWM0: { type: 'pwm', backend: 'sim' },
    ADC0: { type: 'adc', backend: 'sim' },
  },
};

/** The device's board definition (board.json), or the simulated development board. */
export function loadBoard(storage: Storage): BoardDefinition {
  const bytes = storage.read(BOARD_PATH) ?? Buffer.from(JSON.stringify(DEFAULT_BOARD_JSON));
  return parseBoardDefinitionText(bytes);
}

/** Sets the device's board definition (checked first: BOARD_DEFINITION_INVALID changes nothing). */
export function setBoard(storage: Storage, text: string | Uint8Array): BoardDefinition {
  const board = parseBoardDefinitionText(text);
  storage.write(BOARD_PATH, typeof text === 'string' ? Buffer.from(text) : text, 0o644);
  return board;
}

export interface VerifiedApp {
  readonly pkg: VerifiedPackage;
  readonly manifest: AppManifest;
  /** signed by none of the production image keys (only a development device runs it) */
  readonly devSigned: boolean;
}

/**
 * Verifies an application package for this device: signature by a key the device trusts for
 * apps, type application, not the runtime's component id, a valid app manifest that agrees with
 * the package. Pure apart from the trust it is given.
 */
export function verifyApp(bytes: Uint8Array, trust: AppTrust): VerifiedApp {
  let pkg: VerifiedPackage;
  try {
    pkg = verifyPackage(bytes, trust.keys);
  } catch (e) {
    if (isHeptadError(e) && e.code === 'IMAGE_SIGNATURE_UNTRUSTED')
      throw new HeptadError(
        'APP_SIGNATURE_UNTRUSTED',
        trust.development
          ? 'not signed by a production image key or a developer key of this device'
          : 'not signed by a production image key (app development is not enabled)',
        { cause: e },
      );
    throw e;
  }
  const m = pkg.manifest;
  if (m.type !== 'application' || m.componentId === RUNTIME_COMPONENT_ID || m.appManifest === undefined)
    throw new HeptadError('APP_RUNTIME_COMPONENT', 'not an application package');
  const manifest = parseAppManifest(m.appManifest, {
    image: { componentId: m.componentId, name: m.name, entryPoint: m.entryPoint },
    files: pkg.files.map((f) => f.path),
  });
  return { pkg, manifest, devSigned: !pkg.signedBy.some((k) => trust.production.has(k)) };
}

/** Reads and verifies one slot of an installed app; APP_SLOT_INVALID when it does not verify. */
export function readAppSlot(
  storage: Storage,
  componentId: string,
  slot: AppSlot,
  trust: AppTrust = loadAppTrust(storage),
): VerifiedApp {
  const bytes = storage.read(appSlotPath(componentId, slot));
  if (bytes === undefined)
    throw new HeptadError('APP_SLOT_INVALID', `slot ${slot} of ${componentId} is empty`);
  try {
    const app = verifyApp(bytes, trust);
    if (app.pkg.manifest.componentId !== componentId) throw new HeptadError('APP_SLOT_INVALID');
    return app;
  } catch (e) {
    throw new HeptadError('APP_SLOT_INVALID', `slot ${slot} of ${componentId} does not verify`, {
      cause: e,
      detail: { code: isHeptadError(e) ? e.code : 'INTERNAL_ERROR' },
    });
  }
}

/** The slot the supervisor runs: the trial if there is one, else the committed slot. */
export const activeSlot = (r: AppRecord): AppSlot => r.trial?.slot ?? (r.committed as AppSlot);

export interface InstallAppOptions {
  /** the device's board (default: board.json or the simulated board) */
  readonly board?: BoardDefinition;
  /** start attempts the trial gets before it is rolled back by itself */
  readonly trialStarts?: number;
}

export interface InstallAppResult {
  readonly componentId: string;
  readonly slot: AppSlot;
  readonly verified: VerifiedApp;
}

/**
 * Verifies `pkgBytes` (trusted signature, application, manifest, not below this app's floor,
 * fits the board and the other installed apps), writes it into the slot that is not committed and
 * marks that slot as the app's trial. On any refusal nothing changes.
 */
export function installApp(
  storage: Storage,
  pkgBytes: Uint8Array,
  opts: InstallAppOptions = {},
): InstallAppResult {
  const trust = loadAppTrust(storage);
  const verified = verifyApp(pkgBytes, trust);
  const { manifest } = verified;
  const id = manifest.componentId;
  const state = loadForWrite(storage);
  const rec = state.apps[id];
  const sv = verified.pkg.manifest.securityVersion;
  if (rec !== undefined && sv < rec.floor)
    throw new HeptadError('APP_ROLLBACK_REFUSED', `security version ${sv} is below this app's floor`, {
      detail: { securityVersion: sv, floor: rec.floor },
    });
  if (Object.keys(state.apps).length >= MAX_INSTALLED_APPS && rec === undefined)
    throw new HeptadError('APP_STORE_INVALID', `at most ${MAX_INSTALLED_APPS} apps`);
  // The manifests of every other installed slot (committed and trial): a peripheral or port one of
  // them holds is taken. A slot that no longer verifies holds nothing (it cannot run).
  const installed: AppManifest[] = [];
  for (const [otherId, r] of Object.entries(state.apps)) {
    for (const s of [r.committed, r.trial?.slot]) {
      if (s === null || s === undefined) continue;
      try {
        installed.push(readAppSlot(storage, otherId, s, trust).manifest);
      } catch {
        // not runnable: ignored
      }
    }
  }
  checkAppAgainstDevice(manifest, opts.board ?? loadBoard(storage), installed);

  const slot: AppSlot = rec?.committed == null ? (rec?.trial?.slot ?? 'A') : other(rec.committed);
  const apps = { ...state.apps };
  // While the slot is rewritten it must not be named as a trial (the supervisor would try it).
  if (rec?.trial != null) {
    if (rec.committed === null) delete apps[id];
    else apps[id] = { ...rec, trial: null };
    writeStore(storage, apps);
  }
  storage.write(appSlotPath(id, slot), pkgBytes, 0o644);
  // Read back what is durable before naming it (a bad disk write must not become the trial).
  const back = readAppSlot(storage, id, slot, trust);
  if (back.pkg.digest !== verified.pkg.digest)
    throw new HeptadError('APP_SLOT_INVALID', `slot ${slot} does not hold the package after writing`);
  apps[id] = {
    committed: rec?.committed ?? null,
    trial: { slot, startsLeft: opts.trialStarts ?? DEFAULT_APP_TRIAL_STARTS },
    floor: rec?.floor ?? 0,
  };
  writeStore(storage, apps); // commit point
  return { componentId: id, slot, verified };
}

function withTrial(
  storage: Storage,
  componentId: string,
): { apps: Record<string, AppRecord>; rec: AppRecord } {
  const state = loadAppStore(storage);
  const rec = state.apps[componentId];
  if (rec === undefined) throw new HeptadError('APP_NOT_INSTALLED', `${componentId} is not installed`);
  if (rec.trial === null) throw new HeptadError('APP_NO_TRIAL', `${componentId} has no trial`);
  return { apps: { ...state.apps }, rec };
}

/**
 * Makes the trial the committed version (after the update agent's health check): verifies the
 * trial slot again, then in ONE write commits it and raises the app's floor.
 */
export function commitApp(storage: Storage, componentId: string): { slot: AppSlot; floor: number } {
  const { apps, rec } = withTrial(storage, componentId);
  const slot = (rec.trial as { slot: AppSlot }).slot;
  const app = readAppSlot(storage, componentId, slot);
  const floor = Math.max(rec.floor, app.pkg.manifest.securityVersion);
  apps[componentId] = { committed: slot, trial: null, floor };
  writeStore(storage, apps);
  return { slot, floor };
}

/**
 * Abandons the trial: back to the committed slot. An app whose first version was on trial has
 * nothing to go back to and is no longer installed. Returns the slot now active, or null.
 */
export function rollbackApp(storage: Storage, componentId: string): { slot: AppSlot | null } {
  const { apps, rec } = withTrial(storage, componentId);
  if (rec.committed === null) delete apps[componentId];
  else apps[componentId] = { ...rec, trial: null };
  writeStore(storage, apps);
  return { slot: rec.committed };
}

/**
 * Uninstalls an app: its record goes first (the commit point), then its slot files. A power cut
 * in between leaves unnamed slot files that the next install of that component overwrites.
 * Its mutable storage is kept (removeAppData in the supervisor's storage broker deletes it).
 */
export function removeApp(storage: Storage, componentId: string): void {
  const state = loadForWrite(storage);
  if (state.apps[componentId] === undefined)
    throw new HeptadError('APP_NOT_INSTALLED', `${componentId} is not installed`);
  const apps = { ...state.apps };
  delete apps[componentId];
  writeStore(storage, apps);
  storage.remove(appSlotPath(componentId, 'A'));
  storage.remove(appSlotPath(componentId, 'B'));
}

/**
 * Counts a start of an app's trial: the supervisor calls it before starting a trial slot. When
 * the trial has no starts left it is rolled back instead (a trial that keeps crashing before the
 * agent can judge it must not run forever). Returns the slot to start, or null (nothing left).
 */
export function noteTrialStart(storage: Storage, componentId: string): AppSlot | null {
  const state = loadAppStore(storage);
  const rec = state.apps[componentId];
  if (rec === undefined) return null;
  if (rec.trial === null) return rec.committed;
  const apps = { ...state.apps };
  if (rec.trial.startsLeft <= 0) {
    if (rec.committed === null) delete apps[componentId];
    else apps[componentId] = { ...rec, trial: null };
    writeStore(storage, apps);
    return rec.committed;
  }
  apps[componentId] = { ...rec, trial: { ...rec.trial, startsLeft: rec.trial.startsLeft - 1 } };
  writeStore(storage, apps);
  return rec.trial.slot;
}

export interface InstalledApp {
  readonly componentId: string;
  readonly name: string;
  readonly version: string;
  readonly imageId: string;
  readonly digest: string;
  readonly securityVersion: number;
  /** the slot the supervisor runs */
  readonly slot: AppSlot;
  readonly committedSlot: AppSlot | null;
  readonly trial: boolean;
  readonly floor: number;
  readonly devSigned: boolean;
  /** APP_SLOT_INVALID etc. when the running slot no longer verifies (then it is not run) */
  readonly problem?: string;
}

/** Every installed app, with its running slot verified now (sorted by name). */
export function listApps(storage: Storage): InstalledApp[] {
  const state = loadAppStore(storage);
  const trust = loadAppTrust(storage);
  const out: InstalledApp[] = [];
  for (const [componentId, rec] of Object.entries(state.apps)) {
    const slot = activeSlot(rec);
    const base = {
      componentId,
      slot,
      committedSlot: rec.committed,
      trial: rec.trial !== null,
      floor: rec.floor,
    };
    try {
      const { pkg, devSigned } = readAppSlot(storage, componentId, slot, trust);
      out.push({
        ...base,
        name: pkg.manifest.name,
        version: pkg.manifest.version,
        imageId: pkg.manifest.imageId,
        digest: pkg.digest,
        securityVersion: pkg.manifest.securityVersion,
        devSigned,
      });
    } catch (e) {
      out.push({
        ...base,
        name: '',
        version: '',
        imageId: '',
        digest: '',
        securityVersion: 0,
        devSigned: false,
        problem: isHeptadError(e) ? String(e.detail['code'] ?? e.code) : 'INTERNAL_ERROR',
      });
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.componentId.localeCompare(b.componentId));
}
