/**
 * `heptad device run`: the device's power-on. Boot loop: power on the root of trust, let the
 * bootloader pick and verify a runtime slot, measure it, then start exactly the verified bytes
 * (piped into `node -`, never read back from disk) and watch them: a runtime that stops sending
 * heartbeats is killed (the watchdog), one that exits is booted again — and a trial that keeps
 * failing runs out of attempts, so the bootloader returns to the committed slot by itself.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { HeptadError, isHeptadError, type MeasurementEntry, RUNTIME_COMPONENT_ID } from '@heptad/protocol';
import { ReportQueue } from '../reports/queue.ts';
import { openRootOfTrust } from '../rot/open.ts';
import { DeviceState } from '../state/device-state.ts';
import { FsStorage } from '../state/storage.ts';
import { type BootResult, boot } from './bootloader.ts';
import {
  type BootInfo,
  ENV_BOOT,
  ENV_SETTINGS,
  ENV_STATE_DIR,
  EXIT,
  type RuntimeMessage,
  type RuntimeSettings,
} from './contract.ts';
import { appendEvents } from './events.ts';
import { measure, powerOn } from './measure.ts';
import { loadPlatformKeys } from './platform-keys.ts';
import { type RunStatus, writeRunStatus } from './status.ts';

export interface RunOptions {
  readonly stateDir: string;
  /** the runtime must say "ready", and then send a heartbeat, within this many ms (default 30 s) */
  readonly watchdogMs?: number;
  readonly settings?: Partial<RuntimeSettings>;
  /** the node binary that runs the runtime (default: this one) */
  readonly nodePath?: string;
  readonly log?: (line: string) => void;
  /** resolves when the device should power off (e.g. SIGTERM) */
  readonly stop?: AbortSignal;
  /** stop after this many boots (tests and benchmarks); default unlimited */
  readonly maxBoots?: number;
  /** ms since the epoch the bootloader process started at (default: the process's start) */
  readonly startedAt?: number;
}

export const DEFAULT_SETTINGS: RuntimeSettings = {
  heartbeatMs: 2_000,
  healthTimeoutMs: 120_000,
  installPollMs: 1_000,
  reportCheckMs: 10 * 60_000,
  updateCheckMs: 20 * 3_600_000,
  appHealthMs: 5_000,
};
export const DEFAULT_WATCHDOG_MS = 30_000;
const MAX_RESTART_DELAY_MS = 60_000;

/**
 * The state folder holds the device's secrets and the slots the bootloader trusts to have been
 * written by the device itself: it must belong to this user and be closed to everyone else.
 */
export function checkStatePermissions(dir: string): void {
  const uid = process.getuid?.();
  for (const [path, what] of [
    [dir, 'state folder'],
    [join(dir, 'secrets'), 'secrets folder'],
  ] as const) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch (cause) {
      throw new HeptadError('DEVICE_STATE_INVALID', `${path} cannot be read`, { cause });
    }
    if (!st.isDirectory()) throw new HeptadError('DEVICE_STATE_INVALID', `${path} is not a folder`);
    if ((st.mode & 0o077) !== 0 || (uid !== undefined && st.uid !== uid)) {
      throw new HeptadError(
        'DEVICE_STATE_PERMISSIONS',
        `the ${what} ${path} has mode ${(st.mode & 0o777).toString(8)}${uid !== undefined && st.uid !== uid ? ` and owner ${st.uid}` : ''}`,
        { detail: { path, mode: (st.mode & 0o777).toString(8) } },
      );
    }
  }
}

/** One `device run` per state folder: an O_EXCL lock file naming the holder, taken over when the holder is dead. */
function acquireLock(dir: string): () => void {
  const path = join(dir, 'run.lock');
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(readFileSync(path, 'utf8'));
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
        throw new HeptadError('BOOT_ALREADY_RUNNING', `device run ${holder} uses this state folder`, {
          detail: { pid: holder },
        });
      }
      rmSync(path, { force: true }); // stale: its holder died (power cut, kill -9)
    }
  }
  throw new HeptadError('BOOT_ALREADY_RUNNING', 'the state folder lock cannot be taken');
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

type RunEnd =
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null; ready: boolean }
  | { kind: 'watchdog'; ready: boolean };

/** Powers the device on and keeps it running until `stop` aborts; resolves with the boots done. */
export async function runDevice(options: RunOptions): Promise<{ boots: number }> {
  const dir = options.stateDir;
  const log = options.log ?? (() => {});
  const watchdogMs = options.watchdogMs ?? DEFAULT_WATCHDOG_MS;
  // Heartbeats come at least four times per watchdog period, so one late beat is not a reset.
  const settings: RuntimeSettings = {
    ...DEFAULT_SETTINGS,
    heartbeatMs: Math.min(DEFAULT_SETTINGS.heartbeatMs, Math.floor(watchdogMs / 4)),
    ...options.settings,
  };
  checkStatePermissions(dir);
  const state = new DeviceState(dir);
  const config = state.config();
  const release = acquireLock(dir);
  const storage = new FsStorage(dir);
  let boots = 0;
  let crashes = 0;
  let startedAt = options.startedAt ?? Math.round(performance.timeOrigin);
  type StatusFields = Partial<Omit<RunStatus, 'schema' | 'supervisorPid' | 'at'>>;
  let current: StatusFields = { phase: 'starting' };
  // Each boot starts a fresh record (reset: true); later updates of the same boot merge into it.
  const status = (s: StatusFields, reset = false) => {
    current = reset ? s : { ...current, ...s };
    writeRunStatus(dir, {
      phase: 'starting',
      ...current,
      schema: 1,
      supervisorPid: process.pid,
      at: new Date().toISOString(),
    });
  };
  try {
    while (!options.stop?.aborted && (options.maxBoots === undefined || boots < options.maxBoots)) {
      boots += 1;
      const bootId = randomUUID();
      // Failure reports (issue 7): the boot chain's failures go into the device's durable queue,
      // which the runtime uploads over mTLS.
      const reports = new ReportQueue(storage, { deviceId: config.deviceId, bootId });
      const platformKeys = loadPlatformKeys(storage);
      // Power on: registers reset where the root of trust can be told (soft, swtpm).
      await powerOn(config.rot, state.secretsDir);
      let result: BootResult;
      try {
        result = await boot({ storage, platformKeys, measurementPcr: config.measurementPcr });
      } catch (e) {
        status({ phase: 'halted', code: isHeptadError(e) ? e.code : 'INTERNAL_ERROR' }, true);
        throw e;
      }
      const events: Parameters<typeof appendEvents>[1][number][] = [];
      for (const r of result.refused) events.push({ kind: 'slot-refused', slot: r.slot, code: r.code });
      if (result.abandoned !== null) events.push({ kind: 'trial-abandoned', slot: result.abandoned });
      const m = result.manifest;
      if (result.trial)
        events.push({ kind: 'trial-started', slot: result.slot, version: m.version, digest: result.digest });
      appendEvents(storage, events, new Date());
      for (const e of events) log(`boot: ${e.kind} slot ${e.slot}${e.code ? ` (${e.code})` : ''}`);
      for (const r of result.refused)
        recordReport(reports, 'update-failure', {
          phase: 'boot-verify',
          code: r.code,
          target: `slot ${r.slot}`,
        });
      if (result.abandoned !== null)
        recordReport(reports, 'rollback', {
          phase: 'trial',
          code: 'TRIAL_ABANDONED',
          target: `slot ${result.abandoned}`,
        });

      // Measured boot: the register commits to this runtime before a single byte of it runs.
      const rot = await openRootOfTrust(config.rot, state.secretsDir);
      try {
        const { inSync } = await measure(
          {
            rot,
            pcr: config.measurementPcr,
            readLog: () => state.measurementLog(),
            writeLog: (l: readonly MeasurementEntry[]) => state.writeMeasurementLog(l),
          },
          result.measurement,
        );
        if (!inSync)
          log(
            'boot: the measurement register was extended by something else; attestation will fail until a reset',
          );
      } finally {
        await rot.close();
      }

      const info: BootInfo = {
        slot: result.slot,
        version: m.version,
        imageId: m.imageId,
        digest: result.digest,
        securityVersion: m.securityVersion,
        trial: result.trial,
        floor: result.floor,
        bootStartedAt: startedAt,
        bootId,
      };
      const base = { slot: info.slot, version: info.version, digest: info.digest, trial: info.trial };
      status({ phase: 'starting', ...base }, true);
      log(
        `boot: slot ${info.slot} runtime ${info.version} (security version ${info.securityVersion})${info.trial ? ' on trial' : ''}`,
      );
      const entry = result.files.find((f) => f.path === m.entryPoint);
      if (entry === undefined) throw new HeptadError('BOOT_NO_VALID_RUNTIME', 'the entry point is missing');
      const child = spawn(options.nodePath ?? process.execPath, ['--input-type=module', '-'], {
        stdio: ['pipe', 'inherit', 'inherit', 'ipc'],
        // Only what the runtime needs: nothing of the caller's environment (tokens, proxies,
        // NODE_OPTIONS that could load code) reaches it.
        env: {
          ...(process.env['TZ'] !== undefined ? { TZ: process.env['TZ'] } : {}),
          [ENV_STATE_DIR]: JSON.stringify(dir),
          [ENV_BOOT]: JSON.stringify(info),
          [ENV_SETTINGS]: JSON.stringify(settings),
        },
      });
      child.stdin?.on('error', () => {}); // a runtime that exits at once closes its stdin early
      child.stdin?.end(entry.content);
      const ranFrom = Date.now();
      const end = await supervise(child, watchdogMs, options.stop, (msg) => {
        if (msg.type === 'ready') {
          status({
            phase: 'running',
            runtimePid: child.pid ?? 0,
            readyAt: new Date().toISOString(),
            ...base,
          });
          log(`ready in ${Date.now() - startedAt} ms (pid ${child.pid})`);
        } else if (msg.type === 'committed') {
          base.trial = false;
          status({ trial: false });
        } else if (msg.type === 'attested') {
          status({ lastAttestation: msg.ok ? 'certified' : (msg.code ?? 'failed') });
        }
      });
      startedAt = Date.now();
      if (options.stop?.aborted) break;
      if (end.kind === 'watchdog') {
        appendEvents(
          storage,
          [{ kind: 'watchdog-expired', slot: info.slot, version: info.version }],
          new Date(),
        );
        recordReport(reports, 'runtime-error', {
          code: 'WATCHDOG_EXPIRED',
          message: `runtime ${info.version} stopped answering`,
        });
        log(`watchdog: runtime ${info.version} stopped answering; killed`);
      } else if (end.code === EXIT.REBOOT) {
        crashes = 0;
        continue;
      } else if (end.code === EXIT.STOPPED && end.signal === null) {
        break;
      } else {
        const code = end.signal ?? String(end.code);
        if (end.code !== EXIT.HEALTH_FAILED) {
          appendEvents(
            storage,
            [{ kind: 'runtime-exited', slot: info.slot, version: info.version, code }],
            new Date(),
          );
          recordReport(reports, 'runtime-error', {
            ...(end.signal ? { signal: end.signal } : { exitCode: end.code ?? -1 }),
            message: `runtime ${info.version} exited`,
          });
        }
        log(
          `runtime ${info.version} exited (${end.code === EXIT.HEALTH_FAILED ? 'health check failed' : code})`,
        );
      }
      // A trial is booted again at once: its attempts are counted by the bootloader. A committed
      // runtime that keeps crashing is restarted with a growing pause (1 s … 60 s).
      if (!info.trial || base.trial === false) {
        crashes = Date.now() - ranFrom > MAX_RESTART_DELAY_MS ? 1 : crashes + 1;
        await sleep(Math.min(MAX_RESTART_DELAY_MS, 1000 * 2 ** (crashes - 1)), options.stop);
      }
    }
    status({ phase: 'stopped' }, true);
    return { boots };
  } finally {
    release();
  }
}

/** Records a failure report about the runtime; the queue is best effort here (a boot never stops for it). */
function recordReport(
  reports: ReportQueue,
  kind: 'update-failure' | 'rollback' | 'runtime-error',
  details: Parameters<ReportQueue['record']>[0]['details'],
): void {
  try {
    reports.record({ kind, componentId: RUNTIME_COMPONENT_ID, details });
  } catch {
    // a damaged queue file must not keep the device from booting
  }
}

function supervise(
  child: ChildProcess,
  watchdogMs: number,
  stop: AbortSignal | undefined,
  onMessage: (m: RuntimeMessage) => void,
): Promise<RunEnd> {
  return new Promise((resolve) => {
    let ready = false;
    let watchdogFired = false;
    let timer: NodeJS.Timeout;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        watchdogFired = true;
        child.kill('SIGKILL');
      }, watchdogMs);
    };
    arm();
    const onStop = () => child.kill('SIGTERM');
    stop?.addEventListener('abort', onStop, { once: true });
    child.on('message', (raw: unknown) => {
      const m = raw as RuntimeMessage;
      if (typeof m !== 'object' || m === null) return;
      if (m.type === 'ready') ready = true;
      if (m.type === 'ready' || m.type === 'heartbeat') arm();
      onMessage(m);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
      resolve(watchdogFired ? { kind: 'watchdog', ready } : { kind: 'exit', code, signal, ready });
    });
  });
}

function sleep(ms: number, stop: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      stop?.removeEventListener('abort', done);
      resolve();
    }
    stop?.addEventListener('abort', done, { once: true });
  });
}
