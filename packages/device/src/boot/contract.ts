/**
 * The contract between the bootloader (parent process, `heptad device run`) and the runtime it
 * starts (child process running the verified bundle). The runtime gets what was booted in an
 * environment variable and answers over Node's IPC channel; its exit code says what it wants next.
 */
import type { SlotName } from './slots.ts';

/** What the bootloader booted; handed to the runtime as JSON in HEPTAD_BOOT. */
export interface BootInfo {
  readonly slot: SlotName;
  readonly version: string;
  /** the runtime package's image id (the update agent compares it with what the director names) */
  readonly imageId: string;
  readonly digest: string;
  readonly securityVersion: number;
  readonly trial: boolean;
  readonly floor: number;
  /** ms since the epoch when the bootloader process started (boot-to-ready is measured from it) */
  readonly bootStartedAt: number;
  /** this boot's id (UUID): the error reports of one boot share it */
  readonly bootId: string;
}

export interface RuntimeSettings {
  /** how often the runtime reports it is alive (ms) */
  readonly heartbeatMs: number;
  /** how long a trial may take to pass its health check before it gives up (ms) */
  readonly healthTimeoutMs: number;
  /** how often the runtime looks for a staged runtime package (ms) */
  readonly installPollMs: number;
  /** how often the runtime checks whether error reports are due for upload (ms) */
  readonly reportCheckMs: number;
  /** how often the update agent asks the director (ms; ±10 % jitter); also at each boot and on demand */
  readonly updateCheckMs: number;
  /** how long an updated app must run without a restart before it is committed (ms) */
  readonly appHealthMs: number;
}

export const ENV_STATE_DIR = 'HEPTAD_DEVICE_STATE';
export const ENV_BOOT = 'HEPTAD_BOOT';
export const ENV_SETTINGS = 'HEPTAD_RUNTIME_SETTINGS';

/** Messages the runtime sends to the bootloader. */
export type RuntimeMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'heartbeat' }
  | { readonly type: 'attested'; readonly ok: boolean; readonly code?: string; readonly notAfter?: string }
  | { readonly type: 'committed'; readonly floor: number }
  | {
      readonly type: 'installed';
      readonly slot: SlotName;
      readonly version: string;
      readonly digest: string;
    };

/** Exit codes the runtime uses on purpose; any other exit (or a signal) is a crash. */
export const EXIT = {
  /** asked to stop (SIGTERM, or the bootloader went away) */
  STOPPED: 0,
  /** a runtime was installed: boot again (into its trial) */
  REBOOT: 10,
  /** the trial failed its health check: boot again (the bootloader falls back when attempts run out) */
  HEALTH_FAILED: 11,
} as const;

/** Staged runtime package the runtime installs (written by `heptad device sideload`, later the update agent). */
export const INCOMING_RUNTIME_PATH = 'incoming/runtime.hpkg';

/** Written by `heptad device update-now`: the runtime runs an update check at once. */
export const UPDATE_NOW_PATH = 'incoming/update-now';
/** The outcome of the newest update check (for `heptad device update-now` and `device status`). */
export const LAST_CHECK_PATH = 'update/last-check.json';
/** Written by `heptad device upload-reports`: the runtime uploads its queued error reports at once. */
export const UPLOAD_NOW_PATH = 'incoming/upload-reports';
/** The outcome of the newest error-report upload (for `heptad device upload-reports`). */
export const LAST_UPLOAD_PATH = 'reports/last-upload.json';
