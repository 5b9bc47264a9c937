/**
 * The supervisor (docs/apps.md): runs every installed app in its own compartment, started by the
 * runtime once it has attested (or failed to), stopped with it. For each app: verify its package
 * (every start), measure it (once per package per boot, into the runtime's measurement log and
 * register), unpack it into a read-only image folder, spawn it (isolation.ts), and answer its
 * requests through the capability broker. An app that exits or crashes is restarted alone, with
 * backoff; each exit is an error report. Nothing an app sends can stop the supervisor.
 *
 * The update agent uses: startApp, stopApp, restartApp, health, requestDeferral (and the app store
 * API in ../apps). The supervisor notices store changes by itself (poll), so installApp → the app
 * restarts from its trial slot; rollbackApp → back to the committed slot.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  APP_ENV_COMPONENT,
  APP_IPC_LIMITS,
  APP_OPS,
  type AppEvent,
  type AppManifest,
  type AppOp,
  type BoardDefinition,
  type BoardPeripheral,
  type ErrorReportDetails,
  type ErrorReportKind,
  HeptadError,
  isHeptadError,
  type MeasurementEntry,
  PERIPHERAL_TYPES,
  parseDeviceCertificate,
  writeFileAtomic,
} from '@heptad/protocol';
import {
  activeSlot,
  loadAppStore,
  loadBoard,
  noteTrialStart,
  readAppSlot,
  type VerifiedApp,
} from '../apps/store.ts';
import { AppMqtt, type MqttSessionPort } from '../broker/app-mqtt.ts';
import type { ReportEvent } from '../reports/report.ts';
import { FsStorage, type Storage } from '../state/storage.ts';
import { type Answer, type BrokeredApp, CapabilityBroker } from './broker.ts';
import {
  compartmentArgv,
  FIRST_APP_UID,
  type IsolationLayers,
  type IsolationOptions,
  type IsolationPlan,
  makeAppCgroup,
  planIsolation,
  removeAppCgroup,
} from './isolation.ts';
import { Peripherals } from './peripherals.ts';
import { sdkSource } from './sdk-source.ts';

export const APPS_STATUS_PATH = 'run/apps.json';
export const APP_DATA_DIR = 'app-data';
export const DEFAULT_GRACE_MS = 2000;
export const RUNTIME_DEFERRAL_CAP_MS = 24 * 3_600_000;
export const APP_DEFERRAL_CAP_MS = 168 * 3_600_000;
const LOG_LINE_MAX = 1000;
/**
 * Node's IPC channel buffers a message until its newline before the supervisor sees it, and an
 * app can write raw bytes to the channel's descriptor (the permission model does not check
 * descriptors): a message that never ends would grow the runtime's memory until it crashes. The
 * guard reads each app's written-bytes counter (/proc/PID/io wchar) and kills an app that writes
 * more than APP_IPC_LIMITS.maxBytesPerSecond.
 */
const BYTE_GUARD_MS = 250;
const LOG_BYTES_PER_SECOND = 16 * 1024;
// biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
const CONTROL = /[\x00-\x1f\x7f]/g;

export interface SupervisorOptions {
  readonly stateDir: string;
  readonly storage?: Storage;
  readonly deviceId: string;
  readonly log: (line: string) => void;
  /** records an error report (app-crash, app-exit, capability-violation) */
  readonly report?: (e: ReportEvent) => void;
  /** extends the measurement register and log (the runtime's measure()) */
  readonly measure?: (entry: MeasurementEntry) => Promise<void>;
  readonly certificate?: () => { keyPem: string; chainPem: string; notAfter: string } | undefined;
  readonly isolation?: IsolationOptions;
  /** the runtime's broker session, for the SDK's mqtt (docs/apps.md §mqtt); absent: no broker */
  readonly mqtt?: MqttSessionPort;
  readonly clock?: () => Date;
  /** how often the app store is checked for changes (default 1000 ms) */
  readonly pollMs?: number;
  readonly graceMs?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** an app that ran this long without exiting is healthy: its backoff starts again from the beginning */
  readonly healthyAfterMs?: number;
}

export type AppRunState = 'starting' | 'running' | 'backoff' | 'stopped' | 'failed';

export interface AppHealth {
  readonly componentId: string;
  readonly name: string;
  readonly version: string;
  readonly digest: string;
  readonly state: AppRunState;
  readonly pid: number | null;
  /** ms since this process started (0 when not running) */
  readonly runningMs: number;
  readonly restarts: number;
  readonly lastExit: null | {
    readonly code: number | null;
    readonly signal: string | null;
    readonly at: string;
  };
  readonly problem?: string;
}

export type DeferralAnswer =
  | { readonly decision: 'proceed'; readonly reason: string }
  | { readonly decision: 'defer'; readonly until: string; readonly by: readonly string[] };

interface Instance extends BrokeredApp {
  readonly digest: string;
  /** the image id, for reports */
  readonly imageId: string;
  /** identity of the slot file it was started from (inode, mtime, size): a changed file restarts it */
  readonly fileKey: string;
  readonly slot: string;
  child: ChildProcess | undefined;
  state: AppRunState;
  startedAt: number;
  restarts: number;
  failures: number;
  held: boolean;
  stopping: boolean;
  timer: NodeJS.Timeout | undefined;
  crash: { message?: string; stack?: string; code?: string } | undefined;
  /** peak resident memory seen for this process (bytes), for crash reports */
  memoryHighWaterBytes?: number;
  lastExit: AppHealth['lastExit'];
  inFlight: number;
  windowStart: number;
  windowCount: number;
  /** malformed or rate-limited messages in this window */
  windowRefused: number;
  logWindowStart: number;
  logBytes: number;
  lastInvalidReport: number;
  cgroup: string | undefined;
  problem?: string;
  exited: Promise<void>;
}

interface Deferral {
  readonly kind: 'runtime' | 'app';
  readonly firstAt: number;
  readonly capAt: number;
  noticed: Set<string>;
  until: number;
  by: Set<string>;
}

/**
 * Whether an uncaught exception is Node's IPC channel failing to parse what an app wrote to it.
 * Node parses each line an app writes to the channel before the supervisor sees it, and throws
 * out of the channel's read callback when a line is not JSON (an app can write raw bytes to the
 * descriptor). The runtime's uncaught-exception handler asks this and carries on: the line is
 * dropped, nothing else is affected. Which app wrote it cannot be told from the exception.
 */
export function isAppChannelFault(e: unknown): boolean {
  return e instanceof SyntaxError && /parseChannelMessages|internal\/child_process/.test(e.stack ?? '');
}

export class AppSupervisor {
  readonly #o: SupervisorOptions;
  readonly #storage: Storage;
  readonly #clock: () => Date;
  readonly #apps = new Map<string, Instance>();
  readonly #held = new Set<string>();
  readonly #measured = new Set<string>();
  readonly #deferrals = new Map<string, Deferral>();
  #plan: IsolationPlan | undefined;
  #root = '';
  #sdkDir = '';
  #sdkEntry = '';
  #board: BoardDefinition | undefined;
  #peripherals: Peripherals | undefined;
  #broker: CapabilityBroker | undefined;
  #mqtt: AppMqtt | undefined;
  #tenant: { chainPem: string; tenantId: string | undefined } | undefined;
  #poll: NodeJS.Timeout | undefined;
  #byteGuard: NodeJS.Timeout | undefined;
  #reconciling = false;
  /** the tail of the queue of changes to the running apps (see #serial) */
  #lock: Promise<void> = Promise.resolve();
  #stopped = false;
  #storeProblem: string | undefined;

  constructor(options: SupervisorOptions) {
    this.#o = options;
    this.#storage = options.storage ?? new FsStorage(options.stateDir);
    this.#clock = options.clock ?? (() => new Date());
  }

  get layers(): IsolationLayers | undefined {
    return this.#plan?.layers;
  }

  async start(): Promise<void> {
    this.#plan = planIsolation(this.#o.isolation);
    const l = this.#plan.layers;
    this.#o.log(
      `supervisor: isolation layers: permission model, ${l.ownUser ? 'own uid' : 'NO own uid'}, ${l.networkNamespace ? 'network namespace' : 'NO network namespace'}, ${l.memoryLimit ? 'memory limit' : 'NO memory limit'}, brokered capabilities${l.notes.length ? ` (${l.notes.join('; ')})` : ''}`,
    );
    // The compartments' files live outside the 0700 state folder, in a fresh root-owned folder
    // others may traverse but not list: an app with its own uid must reach its image and the SDK.
    this.#root = mkdtempSync(join(tmpdir(), 'heptad-apps-'));
    chmodSync(this.#root, 0o711);
    for (const d of ['img', 'sdk']) mkdirSync(join(this.#root, d), { mode: 0o711 });
    mkdirSync(join(this.#root, 'priv'), { mode: 0o700 });
    const sdk = sdkSource();
    this.#sdkDir = join(this.#root, 'sdk');
    this.#sdkEntry = sdk.entry;
    for (const f of sdk.files) writeFileSync(join(this.#sdkDir, f.name), f.text, { mode: 0o444 });
    chmodSync(this.#sdkDir, 0o755);
    try {
      this.#board = loadBoard(this.#storage);
    } catch (e) {
      this.#o.log(
        `supervisor: board.json refused (${isHeptadError(e) ? e.code : String(e)}); no peripherals`,
      );
      this.#board = { schemaVersion: 1, name: 'none', peripherals: new Map() };
    }
    this.#peripherals = new Peripherals(this.#o.stateDir, this.#board.name);
    const session = this.#o.mqtt;
    this.#mqtt =
      session &&
      new AppMqtt({
        deviceId: this.#o.deviceId,
        session,
        log: this.#o.log,
        deliver: (id, event, done) => {
          const target = this.#apps.get(id);
          if (target?.child === undefined || target.state !== 'running') return false;
          return this.#send(target, event, undefined, done);
        },
      });
    this.#broker = new CapabilityBroker({
      mqtt: this.#mqtt,
      tenantId: () => this.#tenantId(),
      peripherals: this.#peripherals,
      dataDir: join(this.#o.stateDir, APP_DATA_DIR),
      privateDir: join(this.#root, 'priv'),
      certificate: this.#o.certificate ?? (() => undefined),
      deviceId: this.#o.deviceId,
      violation: (app, capability, target) => this.#violation(app as Instance, capability, target),
      deliver: (_from, to, event) => {
        const target = this.#apps.get(to);
        if (target?.child === undefined || target.state !== 'running')
          throw new HeptadError('APP_NOT_RUNNING', `${to} is not running`);
        this.#send(target, event);
      },
      manifestOf: (id) => this.#apps.get(id)?.manifest,
      defer: (app, updateId, until) => this.#defer(app as Instance, updateId, until),
    });
    await this.reconcile();
    this.#poll = setInterval(() => void this.reconcile(), this.#o.pollMs ?? 1000);
    this.#poll.unref();
    this.#byteGuard = setInterval(() => this.#guardBytes(), BYTE_GUARD_MS);
    this.#byteGuard.unref();
  }

  /** Makes the running apps match the app store: starts new ones, restarts changed ones, stops removed ones. */
  async reconcile(): Promise<void> {
    if (this.#reconciling || this.#stopped) return;
    this.#reconciling = true;
    await this.#serial(() => this.#reconcileNow());
  }

  /**
   * One change to the running apps at a time. The 1 s reconcile poll and the update agent's
   * restartApp once ran together on an updated app: each stopped the old process and launched the
   * new version, two copies ran, one killed the other, and the health check rolled a good update
   * back (seen in heptad demo, about 1 run in 8).
   */
  #serial(fn: () => Promise<void>): Promise<void> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  async #reconcileNow(): Promise<void> {
    try {
      let records: Record<string, { digestSlot: string }> = {};
      try {
        const store = loadAppStore(this.#storage);
        records = Object.fromEntries(
          Object.entries(store.apps).map(([id, r]) => [id, { digestSlot: activeSlot(r) }]),
        );
        this.#storeProblem = undefined;
      } catch (e) {
        const code = isHeptadError(e) ? e.code : String(e);
        if (this.#storeProblem !== code)
          this.#o.log(`supervisor: app store unreadable (${code}); no apps run`);
        this.#storeProblem = code;
      }
      for (const [id, inst] of this.#apps) {
        if (!(id in records)) {
          await this.#stopInstance(inst);
          this.#apps.delete(id);
          this.#o.log(`supervisor: ${inst.name} removed`);
        }
      }
      for (const id of Object.keys(records)) {
        if (this.#held.has(id)) continue;
        const inst = this.#apps.get(id);
        const keyNow = this.#fileKey(id, records[id]?.digestSlot ?? '');
        if (inst !== undefined && inst.slot === records[id]?.digestSlot && inst.fileKey === keyNow) continue;
        if (inst !== undefined) {
          if (inst.state === 'failed' && inst.fileKey === keyNow) continue;
          await this.#stopInstance(inst);
        }
        await this.#launch(id, inst?.restarts ?? 0);
      }
      this.#writeStatus();
    } catch (e) {
      this.#o.log(`supervisor: reconcile failed: ${isHeptadError(e) ? e.code : String(e)}`);
    } finally {
      this.#reconciling = false;
    }
  }

  #fileKey(componentId: string, slot: string): string {
    try {
      const st = statSync(join(this.#o.stateDir, 'apps', componentId, slot, 'app.hpkg'));
      return `${slot}:${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch {
      return `${slot}:none`;
    }
  }

  async #launch(componentId: string, restarts: number): Promise<void> {
    if (this.#stopped) return;
    let app: VerifiedApp;
    let slot: string | null;
    let fileKey = '';
    try {
      slot = noteTrialStart(this.#storage, componentId);
      if (slot === null) return;
      fileKey = this.#fileKey(componentId, slot);
      // Verified at every start, not only at install: a slot changed since (bit rot, tampering,
      // a developer key no longer trusted) never runs.
      app = readAppSlot(this.#storage, componentId, slot as 'A' | 'B');
    } catch (e) {
      const code = isHeptadError(e) ? String(e.detail['code'] ?? e.code) : String(e);
      this.#o.log(`supervisor: ${componentId} not started: ${code}`);
      this.#apps.set(componentId, this.#failedInstance(componentId, fileKey, code, restarts));
      return;
    }
    const { pkg, manifest } = app;
    if (!this.#measured.has(pkg.digest)) {
      try {
        await this.#o.measure?.({
          kind: 'app',
          digest: pkg.digest,
          name: pkg.manifest.name,
          version: pkg.manifest.version,
          componentId,
          imageId: pkg.manifest.imageId,
        });
        this.#measured.add(pkg.digest);
      } catch (e) {
        // An app that cannot be measured is not run: attestation must be able to see everything that runs.
        this.#o.log(`supervisor: ${manifest.name} not started: measurement failed (${String(e)})`);
        this.#apps.set(
          componentId,
          this.#failedInstance(componentId, fileKey, 'MEASUREMENT_FAILED', restarts),
        );
        return;
      }
    }
    const peripherals = new Map<string, BoardPeripheral>();
    for (const type of PERIPHERAL_TYPES)
      for (const n of manifest.capabilities.peripherals[type]) {
        const p = this.#board?.peripherals.get(n);
        if (p !== undefined && p.type === type) peripherals.set(n, p);
      }
    const inst: Instance = {
      componentId,
      name: manifest.name,
      version: pkg.manifest.version,
      manifest,
      peripherals,
      tlsRelays: 0,
      digest: pkg.digest,
      imageId: pkg.manifest.imageId,
      fileKey,
      slot: slot as string,
      child: undefined,
      state: 'starting',
      startedAt: Date.now(),
      restarts,
      failures: this.#apps.get(componentId)?.failures ?? 0,
      held: false,
      stopping: false,
      timer: undefined,
      crash: undefined,
      lastExit: this.#apps.get(componentId)?.lastExit ?? null,
      inFlight: 0,
      windowStart: Date.now(),
      windowCount: 0,
      windowRefused: 0,
      logWindowStart: Date.now(),
      logBytes: 0,
      lastInvalidReport: 0,
      cgroup: undefined,
      exited: Promise.resolve(),
    };
    this.#apps.set(componentId, inst);
    try {
      this.#spawn(inst, app);
    } catch (e) {
      inst.state = 'failed';
      inst.problem = isHeptadError(e) ? e.code : String(e);
      this.#o.log(`supervisor: ${inst.name} could not be spawned: ${inst.problem}`);
    }
  }

  #failedInstance(componentId: string, fileKey: string, problem: string, restarts: number): Instance {
    return {
      componentId,
      name: componentId,
      version: '',
      manifest: undefined as unknown as AppManifest,
      peripherals: new Map(),
      tlsRelays: 0,
      digest: '',
      imageId: '',
      fileKey,
      slot: '',
      child: undefined,
      state: 'failed',
      startedAt: 0,
      restarts,
      failures: 0,
      held: false,
      stopping: false,
      timer: undefined,
      crash: undefined,
      lastExit: null,
      inFlight: 0,
      windowStart: 0,
      windowCount: 0,
      windowRefused: 0,
      logWindowStart: 0,
      logBytes: 0,
      lastInvalidReport: 0,
      cgroup: undefined,
      problem,
      exited: Promise.resolve(),
    };
  }

  /** The image folder: files from the verified package, read-only, readable by the app's group only. */
  #unpack(inst: Instance, app: VerifiedApp, uid: number | undefined): string {
    const dir = join(this.#root, 'img', `${inst.componentId.slice(0, 8)}-${inst.digest.slice(0, 16)}`);
    removeTree(dir);
    mkdirSync(dir, { mode: 0o750 });
    const dirs = new Set<string>([dir]);
    for (const f of app.pkg.files) {
      const target = join(dir, ...f.path.split('/'));
      let d = dirname(target);
      const made: string[] = [];
      while (!dirs.has(d)) {
        made.unshift(d);
        d = dirname(d);
      }
      for (const m of made) {
        mkdirSync(m, { mode: 0o750 });
        dirs.add(m);
      }
      writeFileSync(target, f.content, { mode: f.mode & 0o111 ? 0o550 : 0o440 });
    }
    for (const d of dirs) {
      if (uid !== undefined) chownSync(d, 0, uid);
      chmodSync(d, 0o550);
    }
    if (uid !== undefined) for (const f of app.pkg.files) chownSync(join(dir, ...f.path.split('/')), 0, uid);
    return dir;
  }

  #uidFor(componentId: string): number {
    const used = new Set(
      [...this.#apps.values()]
        .filter((a) => a.componentId !== componentId)
        .map((a) => (a as { uid?: number }).uid),
    );
    let uid = FIRST_APP_UID + (Number.parseInt(componentId.replaceAll('-', '').slice(0, 8), 16) % 100_000);
    while (used.has(uid)) uid++;
    return uid;
  }

  #spawn(inst: Instance, app: VerifiedApp): void {
    const plan = this.#plan as IsolationPlan;
    const uid = plan.layers.ownUser ? this.#uidFor(inst.componentId) : undefined;
    (inst as { uid?: number | undefined }).uid = uid;
    const imageDir = this.#unpack(inst, app, uid);
    inst.cgroup = makeAppCgroup(plan, inst.componentId.slice(0, 8));
    const argv = compartmentArgv(
      plan,
      {
        name: inst.name,
        imageDir,
        entry: inst.manifest.entryPoint,
        sdkDir: this.#sdkDir,
        sdkEntry: this.#sdkEntry,
        cmdArgs: inst.manifest.cmdArgs,
        uid: uid ?? 0,
      },
      inst.cgroup,
    );
    const child = spawn(argv[0] as string, argv.slice(1), {
      cwd: imageDir,
      // Only what the app needs: nothing of the runtime's environment (service URL, boot info).
      env: { [APP_ENV_COMPONENT]: inst.componentId, HEPTAD_APP_NAME: inst.name, PATH: '/usr/bin:/bin' },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
    });
    inst.child = child;
    inst.startedAt = Date.now();
    delete inst.memoryHighWaterBytes;
    inst.state = 'running';
    this.#o.log(
      `supervisor: started ${inst.name} ${inst.version} (pid ${child.pid}${uid !== undefined ? `, uid ${uid}` : ''})`,
    );
    const lines = (stream: NodeJS.ReadableStream | null) => {
      let buf = '';
      stream?.on('data', (b: Buffer) => {
        buf += b.toString('utf8');
        if (buf.length > LOG_LINE_MAX * 4) buf = `${buf.slice(0, LOG_LINE_MAX)}\n`;
        let i = buf.indexOf('\n');
        while (i !== -1) {
          this.#appLog(inst, buf.slice(0, i));
          buf = buf.slice(i + 1);
          i = buf.indexOf('\n');
        }
      });
    };
    lines(child.stdout);
    lines(child.stderr);
    child.on('message', (m: unknown) => void this.#onMessage(inst, m));
    child.on('error', (e) => this.#o.log(`supervisor: ${inst.name}: ${e.message}`));
    inst.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.#onExit(inst, code, signal);
        resolve();
      }),
    );
    this.#writeStatus();
  }

  /** App output goes to the runtime log, line by line, bounded (an app cannot flood the log). */
  #appLog(inst: Instance, line: string): void {
    const now = Date.now();
    if (now - inst.logWindowStart > 1000) {
      inst.logWindowStart = now;
      inst.logBytes = 0;
    }
    inst.logBytes += line.length;
    if (inst.logBytes > LOG_BYTES_PER_SECOND) return;
    // Control characters could forge log lines of other components.
    this.#o.log(`[app ${inst.name}] ${line.slice(0, LOG_LINE_MAX).replace(CONTROL, '?')}`);
  }

  #send(inst: Instance, msg: unknown, handle?: Answer['handle'], done?: () => void): boolean {
    const child = inst.child;
    if (child === undefined || !child.connected) {
      if (handle !== undefined && 'remoteAddress' in handle) handle.destroy();
      else handle?.close();
      return false;
    }
    try {
      child.send(msg as object, handle as never, {}, (err) => {
        done?.();
        if (err) this.#o.log(`supervisor: ${inst.name}: send failed: ${err.message}`);
        // Our copy of a handed-over server would keep accepting connections: close it.
        if (handle !== undefined && !('remoteAddress' in handle)) (handle as { close(): void }).close();
      });
      return true;
    } catch {
      // the app is gone
      return false;
    }
  }

  /** The tenant of the device's current certificate (read again when the certificate changes). */
  #tenantId(): string | undefined {
    const c = this.#o.certificate?.();
    if (c === undefined) return undefined;
    if (this.#tenant?.chainPem !== c.chainPem) {
      let tenantId: string | undefined;
      try {
        tenantId = parseDeviceCertificate(new X509Certificate(c.chainPem).raw).tenantId;
      } catch {
        tenantId = undefined;
      }
      this.#tenant = { chainPem: c.chainPem, tenantId };
    }
    return this.#tenant.tenantId;
  }

  /** A message of the runtime's broker session: to the apps that subscribed to it. */
  mqttMessage(topic: string, payload: Buffer): void {
    this.#mqtt?.route(topic, payload);
  }

  async #onMessage(inst: Instance, m: unknown): Promise<void> {
    if (inst.child === undefined || inst.stopping) return;
    const now = Date.now();
    if (now - inst.windowStart >= 1000) {
      inst.windowStart = now;
      inst.windowCount = 0;
      inst.windowRefused = 0;
    }
    if (
      ++inst.windowCount > APP_IPC_LIMITS.maxRequestsPerSecond ||
      inst.windowRefused > APP_IPC_LIMITS.maxRefusedPerSecond
    ) {
      // A flood: recorded once, and the app is restarted (its backoff grows).
      if (!inst.stopping) {
        inst.stopping = true; // answers nothing more; #onExit still restarts it (not held)
        (inst as { flooded?: boolean }).flooded = true;
        this.#violation(inst, 'ipc', 'flood-messages');
        this.#o.log(`supervisor: ${inst.name} floods the supervisor; restarting it`);
        inst.child.kill('SIGKILL');
      }
      return;
    }
    const msg = m as { t?: unknown; id?: unknown; op?: unknown; args?: unknown };
    const idOk = typeof msg?.id === 'number' && Number.isSafeInteger(msg.id) && msg.id >= 0;
    if (
      typeof m !== 'object' ||
      m === null ||
      msg.t !== 'req' ||
      !idOk ||
      typeof msg.op !== 'string' ||
      !(APP_OPS as readonly string[]).includes(msg.op) ||
      typeof msg.args !== 'object' ||
      msg.args === null ||
      Array.isArray(msg.args)
    ) {
      inst.windowRefused++;
      if (now - inst.lastInvalidReport > 1000) {
        inst.lastInvalidReport = now;
        this.#violation(inst, 'ipc', 'malformed-request');
      }
      if (idOk)
        this.#send(inst, {
          t: 'res',
          id: msg.id,
          ok: false,
          code: 'APP_REQUEST_INVALID',
          message: 'malformed request',
        });
      return;
    }
    const id = msg.id as number;
    const op = msg.op as AppOp;
    const args = msg.args as Record<string, unknown>;
    if (op === 'crash') {
      const s = (v: unknown, max: number) => (typeof v === 'string' ? v.slice(0, max) : undefined);
      inst.crash = {
        ...(s(args['message'], 4000) !== undefined ? { message: s(args['message'], 4000) as string } : {}),
        ...(s(args['stack'], 16_000) !== undefined ? { stack: s(args['stack'], 16_000) as string } : {}),
        ...(s(args['code'], 100) !== undefined ? { code: s(args['code'], 100) as string } : {}),
      };
      // The process is still there: its peak memory is read now (the report carries it).
      this.#noteMemory(inst);
      return;
    }
    if (inst.inFlight >= APP_IPC_LIMITS.maxInFlight) {
      inst.windowRefused++;
      this.#send(inst, {
        t: 'res',
        id,
        ok: false,
        code: 'APP_RATE_LIMITED',
        message: 'too many requests in flight',
      });
      return;
    }
    inst.inFlight++;
    try {
      const a = await (this.#broker as CapabilityBroker).handle(inst, op, args);
      this.#send(inst, { t: 'res', id, ok: true, value: a.value }, a.handle);
    } catch (e) {
      const code = isHeptadError(e) ? e.code : 'INTERNAL_ERROR';
      const message = isHeptadError(e) ? e.message : 'internal error';
      if (!isHeptadError(e)) this.#o.log(`supervisor: ${inst.name} ${op}: ${String(e)}`);
      this.#send(inst, { t: 'res', id, ok: false, code, message });
    } finally {
      inst.inFlight--;
    }
  }

  #record(inst: Instance, kind: ErrorReportKind, details: ErrorReportDetails): void {
    try {
      const imageId = inst.imageId;
      this.#o.report?.({ kind, componentId: inst.componentId, ...(imageId ? { imageId } : {}), details });
    } catch {
      // the report queue never stops the supervisor
    }
  }

  #violation(inst: Instance, capability: string, target: string): void {
    this.#o.log(`supervisor: refused ${inst.name}: ${capability} ${target}`);
    this.#record(inst, 'capability-violation', { capability, target: target.slice(0, 500) });
  }

  #onExit(inst: Instance, code: number | null, signal: NodeJS.Signals | null): void {
    inst.child = undefined;
    // Its subscriptions end with it (a restarted app subscribes again).
    this.#mqtt?.forget(inst.componentId);
    removeAppCgroup(inst.cgroup);
    inst.lastExit = { code, signal, at: this.#clock().toISOString() };
    const ranMs = Date.now() - inst.startedAt;
    if ((inst.stopping && !(inst as { flooded?: boolean }).flooded) || this.#stopped) {
      inst.state = 'stopped';
      this.#writeStatus();
      return;
    }
    const crash = inst.crash;
    inst.crash = undefined;
    const uptimeSeconds = Math.round(ranMs / 1000);
    if (signal !== null || crash !== undefined) {
      this.#record(inst, 'app-crash', {
        ...(code !== null ? { exitCode: code } : {}),
        ...(signal !== null ? { signal } : {}),
        ...(crash?.stack ? { stack: crash.stack } : {}),
        ...(crash?.message ? { message: crash.message } : {}),
        ...(inst.memoryHighWaterBytes !== undefined
          ? { memoryHighWaterBytes: inst.memoryHighWaterBytes }
          : {}),
        uptimeSeconds,
      });
    } else this.#record(inst, 'app-exit', { exitCode: code ?? 0, uptimeSeconds });
    // A refusal by the permission model happens inside the app; the supervisor hears of it only
    // when the error escapes (the SDK's hook sends it). It is a violation all the same.
    if (crash?.code === 'ERR_ACCESS_DENIED')
      this.#violation(inst, 'permission-model', crash.message ?? 'access denied');
    const healthy = ranMs >= (this.#o.healthyAfterMs ?? 10_000);
    inst.failures = healthy ? 1 : inst.failures + 1;
    const b = this.#o.backoff ?? { initialMs: 250, maxMs: 30_000 };
    const delay = Math.min(b.maxMs, b.initialMs * 2 ** (inst.failures - 1));
    inst.state = 'backoff';
    this.#o.log(
      `supervisor: ${inst.name} ${signal !== null ? `killed by ${signal}` : `exited with code ${code}`}${crash?.code ? ` (${crash.code})` : ''}; restarting in ${delay} ms`,
    );
    inst.timer = setTimeout(() => {
      inst.timer = undefined;
      if (this.#stopped || inst.held || this.#apps.get(inst.componentId) !== inst) return;
      inst.restarts++;
      void this.#launch(inst.componentId, inst.restarts).then(() => this.#writeStatus());
    }, delay);
    inst.timer.unref();
    this.#writeStatus();
  }

  /** The app process's peak resident memory (Linux /proc VmHWM), kept for its crash report. */
  #noteMemory(inst: Instance): void {
    const pid = inst.child?.pid;
    if (pid === undefined) return;
    try {
      const kb = Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      if (Number.isFinite(kb))
        inst.memoryHighWaterBytes = Math.max(inst.memoryHighWaterBytes ?? 0, kb * 1024);
    } catch {
      // not Linux, or the process is gone
    }
  }

  #guardBytes(): void {
    for (const inst of this.#apps.values()) {
      const pid = inst.child?.pid;
      if (pid === undefined || inst.stopping) continue;
      this.#noteMemory(inst);
      let wchar: number;
      try {
        wchar = Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? Number.NaN);
      } catch {
        continue; // not Linux, or the process is gone
      }
      if (!Number.isFinite(wchar)) continue;
      const last = (inst as { wchar?: number }).wchar;
      (inst as { wchar?: number }).wchar = wchar;
      if (last === undefined) continue;
      if (wchar - last > (APP_IPC_LIMITS.maxBytesPerSecond * BYTE_GUARD_MS) / 1000) {
        inst.stopping = true;
        (inst as { flooded?: boolean }).flooded = true;
        this.#violation(inst, 'ipc', 'flood-bytes');
        this.#o.log(`supervisor: ${inst.name} writes more than the supervisor reads; restarting it`);
        inst.child?.kill('SIGKILL');
      }
    }
  }

  /** An app wrote a line that is not JSON to its channel (see isAppChannelFault): recorded. */
  noteChannelFault(): void {
    this.#o.log('supervisor: an app wrote a malformed line to its IPC channel; dropped');
    try {
      this.#o.report?.({
        kind: 'capability-violation',
        componentId: '00000000-0000-0000-0000-000000000000',
        details: { capability: 'ipc', target: 'malformed-line' },
      });
    } catch {
      // the queue never stops the supervisor
    }
  }

  /** SIGTERM (and a shutdown event), then SIGKILL after the grace period. */
  async #stopInstance(inst: Instance): Promise<void> {
    inst.stopping = true;
    if (inst.timer !== undefined) clearTimeout(inst.timer);
    inst.timer = undefined;
    const child = inst.child;
    if (child === undefined) {
      inst.state = 'stopped';
      return;
    }
    const grace = this.#o.graceMs ?? DEFAULT_GRACE_MS;
    this.#send(inst, { t: 'event', event: 'shutdown', graceMs: grace } satisfies AppEvent);
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), grace);
    await inst.exited;
    clearTimeout(kill);
    inst.state = 'stopped';
  }

  /** Stops one app (it stays stopped until startApp). */
  async stopApp(componentId: string): Promise<void> {
    await this.#serial(() => this.#stopAppNow(componentId));
  }

  async #stopAppNow(componentId: string): Promise<void> {
    const inst = this.#apps.get(componentId);
    if (inst === undefined) throw new HeptadError('APP_NOT_INSTALLED', `${componentId} is not running here`);
    this.#held.add(componentId);
    inst.held = true;
    await this.#stopInstance(inst);
    this.#writeStatus();
  }

  /** Starts an app stopped by stopApp (or failed), from its current slot. */
  async startApp(componentId: string): Promise<void> {
    await this.#serial(() => this.#startAppNow(componentId));
  }

  async #startAppNow(componentId: string): Promise<void> {
    this.#held.delete(componentId);
    const inst = this.#apps.get(componentId);
    if (inst?.child !== undefined) return;
    if (inst?.timer !== undefined) clearTimeout(inst.timer);
    await this.#launch(componentId, inst?.restarts ?? 0);
    this.#writeStatus();
  }

  /** Restarts one app alone (e.g. after the update agent installed or rolled it back). */
  async restartApp(componentId: string): Promise<void> {
    await this.#serial(() => this.#restartAppNow(componentId));
  }

  async #restartAppNow(componentId: string): Promise<void> {
    const inst = this.#apps.get(componentId);
    if (inst !== undefined) await this.#stopInstance(inst);
    this.#held.delete(componentId);
    await this.#launch(componentId, (inst?.restarts ?? 0) + 1);
    this.#writeStatus();
  }

  health(componentId: string): AppHealth | undefined {
    const i = this.#apps.get(componentId);
    if (i === undefined) return undefined;
    return {
      componentId: i.componentId,
      name: i.name,
      version: i.version,
      digest: i.digest,
      state: i.state,
      pid: i.child?.pid ?? null,
      runningMs: i.child !== undefined ? Date.now() - i.startedAt : 0,
      restarts: i.restarts,
      lastExit: i.lastExit,
      ...(i.problem !== undefined ? { problem: i.problem } : {}),
    };
  }

  list(): AppHealth[] {
    return [...this.#apps.keys()].map((id) => this.health(id) as AppHealth);
  }

  /**
   * An update is pending: tells the apps that listen (SystemEventNotifications) and waits up to
   * `waitMs` for deferrals (SoftwareUpdateDeferral). A deferral is capped at 24 h (runtime) or
   * 168 h (app) from the FIRST notice of this update, so asking again never extends the cap.
   */
  async requestDeferral(
    kind: 'runtime' | 'app',
    opts: { readonly componentId?: string; readonly updateId?: string; readonly waitMs?: number } = {},
  ): Promise<DeferralAnswer> {
    const now = this.#clock().getTime();
    const updateId = opts.updateId ?? `${kind}:${opts.componentId ?? 'runtime'}`;
    let d = this.#deferrals.get(updateId);
    if (d === undefined) {
      d = {
        kind,
        firstAt: now,
        capAt: now + (kind === 'runtime' ? RUNTIME_DEFERRAL_CAP_MS : APP_DEFERRAL_CAP_MS),
        noticed: new Set(),
        until: 0,
        by: new Set(),
      };
      this.#deferrals.set(updateId, d);
    }
    if (now >= d.capAt) {
      this.#deferrals.delete(updateId);
      return { decision: 'proceed', reason: 'deferral cap reached' };
    }
    if (d.until > now) return { decision: 'defer', until: new Date(d.until).toISOString(), by: [...d.by] };
    d.by.clear();
    const targets = [...this.#apps.values()].filter(
      (a) =>
        a.child !== undefined &&
        a.manifest?.capabilities.systemEventNotifications &&
        (kind === 'runtime' || a.componentId === opts.componentId),
    );
    for (const t of targets) {
      d.noticed.add(t.componentId);
      this.#send(t, {
        t: 'event',
        event: 'update-pending',
        updateId,
        target: kind,
        maxDeferUntil: new Date(d.capAt).toISOString(),
      } satisfies AppEvent);
    }
    if (targets.some((t) => t.manifest.capabilities.softwareUpdateDeferral))
      await new Promise((r) => setTimeout(r, opts.waitMs ?? 2000));
    if (d.until > this.#clock().getTime())
      return { decision: 'defer', until: new Date(d.until).toISOString(), by: [...d.by] };
    this.#deferrals.delete(updateId);
    return { decision: 'proceed', reason: 'no app deferred' };
  }

  #defer(app: Instance, updateId: string, until: Date): { until: string } {
    const d = this.#deferrals.get(updateId);
    if (d === undefined || !d.noticed.has(app.componentId))
      throw new HeptadError('APP_REQUEST_INVALID', 'no such pending update was announced to this app');
    const granted = Math.min(until.getTime(), d.capAt);
    if (granted > d.until) d.until = granted;
    d.by.add(app.componentId);
    this.#o.log(`supervisor: ${app.name} deferred ${updateId} until ${new Date(granted).toISOString()}`);
    return { until: new Date(granted).toISOString() };
  }

  #writeStatus(): void {
    try {
      writeFileAtomic(
        join(this.#o.stateDir, APPS_STATUS_PATH),
        `${JSON.stringify({ schema: 1, at: this.#clock().toISOString(), layers: this.#plan?.layers, board: this.#board?.name, apps: this.list() })}\n`,
        0o644,
      );
    } catch {
      // informative only
    }
  }

  /** Stops every app (SIGTERM, 2 s grace, SIGKILL) and removes the compartments' files. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#poll !== undefined) clearInterval(this.#poll);
    if (this.#byteGuard !== undefined) clearInterval(this.#byteGuard);
    await Promise.all([...this.#apps.values()].map((i) => this.#stopInstance(i)));
    this.#peripherals?.close();
    this.#writeStatus();
    if (this.#root !== '') removeTree(this.#root);
  }
}

/**
 * Removes a compartment's files. Image folders are read-only (0550) even for their owner: as root
 * that does not matter, but a runtime that is not root must give itself write access first.
 */
function removeTree(path: string): void {
  const open = (p: string): void => {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      return; // gone already
    }
    if (!st.isDirectory()) return;
    chmodSync(p, 0o700);
    for (const e of readdirSync(p)) open(join(p, e));
  };
  open(path);
  rmSync(path, { recursive: true, force: true });
}
