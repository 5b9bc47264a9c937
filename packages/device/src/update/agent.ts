/**
 * The update agent (DESIGN.md flow 5): it asks the director what the device's group must run,
 * downloads what differs (resumable), installs the runtime first and then the apps, each into its
 * inactive slot, activates it (a runtime by rebooting into its trial, an app by restarting only
 * that app), health-checks, commits or rolls back, and reports every step to the service.
 *
 * Every step is a transition of transitions.ts, and the job list is one file written through the
 * crash-safe storage layer after each transition: a power cut at any write leaves a job list
 * from which the next boot carries on (download resumed, install redone, activation judged), so
 * nothing is half-installed and nothing is lost.
 */
import { HeptadError, isHeptadError, type UpdateState, type UpdateStatus } from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';
import {
  chunkCount,
  DEFAULT_CHUNK_SIZE,
  downloadTarget,
  forgetDownload,
  type RangeSource,
} from './download.ts';
import type { Plan, PlannedTarget } from './plan.ts';
import { type JobEvent, type JobState, next, TERMINAL } from './transitions.ts';

export const JOBS_PATH = 'update/jobs.json';
/** A failed job is tried again at later checks, this many times in all. */
export const MAX_ATTEMPTS = 3;
/** Free space an install must leave on top of what it needs (bytes). */
export const SPACE_MARGIN = 16 * 1024 * 1024;

export interface Job {
  readonly path: string;
  readonly kind: 'runtime' | 'app';
  readonly componentId: string;
  readonly imageId: string;
  readonly name: string;
  readonly version: string;
  readonly securityVersion: number;
  readonly length: number;
  readonly sha256: string;
  readonly url: string;
  state: JobState;
  attempts: number;
  code?: string;
  /** the installed package's digest (set when installed into its slot) */
  digest?: string;
  /** device clock, ISO-8601, of the last transition */
  at: string;
}

/** What the running runtime is and how to install the next one (boot/install.ts). */
export interface RuntimeHost {
  readonly imageId: string;
  readonly trial: boolean;
  readonly floor: number;
  /** verifies (platform key, type, floor) and writes the inactive slot as a trial; returns its digest */
  install(pkg: Buffer): { digest: string };
  /** asks the bootloader for a reboot into the trial (the process ends soon after) */
  reboot(): void;
}

export interface InstalledApp {
  readonly componentId: string;
  readonly imageId: string;
  /** installed by a developer (appDevelopment devices): never touched by cloud updates */
  readonly devSigned: boolean;
}

/** The app store and supervisor (packages/device/src/apps, supervisor). */
export interface AppHost {
  list(): readonly InstalledApp[];
  /** verifies and writes the app's inactive slot as a trial; returns the package digest */
  install(pkg: Buffer): { componentId: string; digest: string };
  /** restarts the app on its trial slot and says whether it stayed healthy */
  activate(componentId: string): Promise<boolean>;
  commit(componentId: string): void;
  /** back to the committed slot (and restart it) */
  rollback(componentId: string): Promise<void>;
  remove(componentId: string): Promise<void>;
}

export interface UpdateFailure {
  /** absent when the metadata as a whole was refused */
  readonly componentId?: string;
  readonly imageId?: string;
  readonly phase: 'metadata' | 'download' | 'install' | 'activate';
  readonly code: string;
}

export interface AgentOptions {
  readonly storage: Storage;
  readonly runtime: RuntimeHost;
  readonly apps?: AppHost;
  /** what the director names now (plan.ts), or a test double */
  readonly plan: () => Promise<Plan>;
  readonly source: (t: Job) => RangeSource;
  /** true on appDevelopment devices: no app updates from the cloud */
  readonly appDevelopment: () => boolean;
  /** bytes free where the state lives */
  readonly freeBytes: () => number;
  readonly report: (s: UpdateStatus[]) => Promise<void>;
  /** a failure the device keeps as an error report */
  readonly record?: (kind: 'update-failure' | 'rollback', failure: UpdateFailure) => void;
  readonly log?: (line: string) => void;
  readonly clock?: () => Date;
  readonly chunkSize?: number;
}

export interface CheckResult {
  readonly ok: boolean;
  readonly code?: string;
  /** jobs after the check */
  readonly jobs: readonly Job[];
  /** true when the agent asked for a reboot into a new runtime */
  readonly rebooting: boolean;
}

const REPORTED: Record<JobState, UpdateState | undefined> = {
  pending: 'pending',
  downloading: 'downloading',
  downloaded: 'downloading',
  installing: 'downloading',
  activating: 'downloading',
  installed: 'installed',
  failed: 'failed',
  'rolled-back': 'rolled-back',
  cancelled: undefined,
};

/** Errors that mean "the network let us down; the same download goes on next time". */
const TRANSIENT = new Set([
  'DEVICE_SERVICE_UNREACHABLE',
  'UPDATE_DOWNLOAD_TIMEOUT',
  'UPDATE_DOWNLOAD_FAILED',
]);

export class UpdateAgent {
  readonly #o: AgentOptions;
  readonly #clock: () => Date;
  #jobs: Job[];
  #busy = false;
  /** set once a reboot was asked for: this process does nothing more */
  #rebooting = false;

  constructor(options: AgentOptions) {
    this.#o = options;
    this.#clock = options.clock ?? (() => new Date());
    this.#jobs = loadJobs(options.storage);
  }

  get jobs(): readonly Job[] {
    return this.#jobs;
  }

  /** One update check: plan, reconcile, then carry every job as far as it goes. */
  async check(): Promise<CheckResult> {
    if (this.#rebooting) return { ok: true, jobs: this.#jobs, rebooting: true };
    if (this.#busy) return { ok: false, code: 'UPDATE_BUSY', jobs: this.#jobs, rebooting: false };
    this.#busy = true;
    try {
      let plan: Plan;
      try {
        plan = await this.#o.plan();
      } catch (e) {
        const code = isHeptadError(e) ? e.code : 'UPDATE_METADATA_INVALID';
        this.#o.log?.(`update check refused: ${code}`);
        // Unreachable, or in no device group (no director): not a refusal worth a report.
        if (code !== 'DEVICE_SERVICE_UNREACHABLE' && code !== 'TUF_DEVICE_NOT_IN_GROUP')
          this.#o.record?.('update-failure', { phase: 'metadata', code });
        // What is in flight (an activation to judge) still goes on.
        const rebooting = await this.#run();
        return { ok: false, code, jobs: this.#jobs, rebooting };
      }
      this.#reconcile(plan);
      const rebooting = await this.#run();
      if (!rebooting) await this.#removeUnnamed(plan);
      await this.#report();
      return { ok: true, jobs: this.#jobs, rebooting };
    } finally {
      this.#busy = false;
    }
  }

  /** Judges what a reboot or a cut interrupted (runtime activation) without asking the director. */
  async resume(): Promise<CheckResult> {
    if (this.#rebooting) return { ok: true, jobs: this.#jobs, rebooting: true };
    if (this.#busy) return { ok: false, code: 'UPDATE_BUSY', jobs: this.#jobs, rebooting: false };
    this.#busy = true;
    try {
      const rebooting = await this.#run();
      await this.#report();
      return { ok: true, jobs: this.#jobs, rebooting };
    } finally {
      this.#busy = false;
    }
  }

  #reconcile(plan: Plan): void {
    const { runtime } = this.#o;
    const wanted: PlannedTarget[] = [];
    if (plan.runtime && plan.runtime.custom.imageId !== runtime.imageId) wanted.push(plan.runtime);
    const dev = this.#o.appDevelopment();
    if (this.#o.apps && !dev) {
      const installed = new Map(this.#o.apps.list().map((a) => [a.componentId, a]));
      for (const t of plan.apps) {
        if (installed.get(t.custom.componentId)?.imageId !== t.custom.imageId) wanted.push(t);
      }
    }
    const byPath = new Map(wanted.map((t) => [t.path, t]));
    // Jobs the director no longer names stop, unless already installing (runs to its end).
    for (const j of this.#jobs) {
      if (!TERMINAL.has(j.state) && !byPath.has(j.path) && TRANSITIONS_CANCEL.has(j.state)) {
        forgetDownload(this.#o.storage, j.sha256, chunkCount(j.length, this.#chunk));
        this.#move(j, 'superseded');
      }
    }
    for (const t of wanted) {
      const existing = this.#jobs.find((j) => j.path === t.path && j.sha256 === t.sha256);
      if (existing) {
        if (existing.state === 'failed' && existing.attempts < MAX_ATTEMPTS) this.#move(existing, 'retry');
        continue;
      }
      // One job per component: a newer target replaces an ended job of the same component.
      this.#jobs = this.#jobs.filter(
        (j) => !(j.componentId === t.custom.componentId && TERMINAL.has(j.state)),
      );
      this.#jobs.push({
        path: t.path,
        kind: t.custom.type === 'runtime' ? 'runtime' : 'app',
        componentId: t.custom.componentId,
        imageId: t.custom.imageId,
        name: t.custom.name,
        version: t.custom.version,
        securityVersion: t.custom.securityVersion,
        length: t.length,
        sha256: t.sha256,
        url: t.url,
        state: 'pending',
        attempts: 0,
        at: this.#clock().toISOString(),
      });
    }
    // Runtime first, then apps (as Azure Sphere does): a new runtime may be what new apps need.
    this.#jobs.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'runtime' ? -1 : 1));
    this.#save();
  }

  get #chunk(): number {
    return this.#o.chunkSize ?? DEFAULT_CHUNK_SIZE;
  }

  /** Carries each job forward; true when a runtime activation needs the reboot now. */
  async #run(): Promise<boolean> {
    for (const job of this.#jobs) {
      if (TERMINAL.has(job.state)) continue;
      const outcome = await this.#step(job);
      if (outcome === 'reboot') return true;
      if (outcome === 'stop') return false;
    }
    return false;
  }

  async #step(job: Job): Promise<'done' | 'stop' | 'reboot'> {
    const { storage, runtime } = this.#o;
    if (job.state === 'pending') {
      if (job.kind === 'runtime' && job.securityVersion < runtime.floor) {
        this.#fail(job, 'refused', 'BOOT_ROLLBACK_REFUSED', 'download');
        return 'done';
      }
      if (this.#o.freeBytes() < job.length * 2 + SPACE_MARGIN) {
        this.#fail(job, 'refused', 'UPDATE_NO_SPACE', 'download');
        return 'done';
      }
      job.attempts += 1;
      this.#move(job, 'start');
    }
    let bytes: Buffer | undefined;
    if (job.state === 'downloading' || job.state === 'downloaded' || job.state === 'installing') {
      try {
        bytes = (await downloadTarget(storage, job, this.#o.source(job), { chunkSize: this.#chunk })).bytes;
      } catch (e) {
        const code = isHeptadError(e) ? e.code : 'UPDATE_DOWNLOAD_FAILED';
        if (TRANSIENT.has(code)) {
          job.code = code;
          this.#move(job, 'fetch-failed');
          this.#o.log?.(
            `download of ${job.name} ${job.version} interrupted (${code}); it resumes at the next check`,
          );
          return 'stop';
        }
        this.#fail(job, 'corrupt', code, 'download');
        return 'done';
      }
      if (job.state === 'downloading') this.#move(job, 'complete');
    }
    if (job.state === 'downloaded' || job.state === 'installing') {
      this.#move(job, 'install');
      try {
        if (!bytes) throw new HeptadError('INTERNAL_ERROR', 'no bytes to install');
        if (job.kind === 'runtime') {
          job.digest = runtime.install(bytes).digest;
        } else {
          const apps = this.#requireApps();
          const r = apps.install(bytes);
          if (r.componentId !== job.componentId)
            throw new HeptadError(
              'UPDATE_METADATA_MISMATCH',
              'the package is another component than its target',
            );
          job.digest = r.digest;
        }
      } catch (e) {
        forgetDownload(storage, job.sha256, chunkCount(job.length, this.#chunk));
        this.#fail(job, 'refused', isHeptadError(e) ? e.code : 'UPDATE_INSTALL_FAILED', 'install');
        return 'done';
      }
      this.#move(job, 'installed');
      forgetDownload(storage, job.sha256, chunkCount(job.length, this.#chunk));
      this.#o.log?.(`installed ${job.name} ${job.version}; activating`);
      if (job.kind === 'runtime') {
        await this.#report();
        this.#rebooting = true;
        runtime.reboot();
        return 'reboot';
      }
    }
    if (job.state === 'activating') {
      // A cut between the install's commit and this cleanup left the chunks: drop them now.
      forgetDownload(storage, job.sha256, chunkCount(job.length, this.#chunk));
      if (job.kind === 'runtime') {
        if (runtime.imageId !== job.imageId) {
          // Booted something else: the trial was abandoned and the bootloader fell back.
          job.code = 'UPDATE_ROLLED_BACK';
          this.#move(job, 'unhealthy');
          this.#o.record?.('rollback', failureOf(job, 'activate'));
          return 'done';
        }
        if (runtime.trial) return 'stop'; // judged after the trial commits (attestation)
        this.#move(job, 'healthy');
        return 'done';
      }
      const apps = this.#requireApps();
      // Already committed (a cut came after the commit, before this job's own write): done.
      if (apps.list().find((a) => a.componentId === job.componentId)?.imageId === job.imageId) {
        this.#move(job, 'healthy');
        return 'done';
      }
      let committed = false;
      if (await apps.activate(job.componentId)) {
        try {
          apps.commit(job.componentId);
          committed = true;
        } catch (e) {
          // The trial is gone (the store rolled it back by itself): it did not stay healthy.
          this.#o.log?.(
            `${job.name} ${job.version} could not be committed: ${isHeptadError(e) ? e.code : String(e)}`,
          );
        }
      }
      if (committed) {
        this.#move(job, 'healthy');
        this.#o.log?.(`${job.name} ${job.version} committed`);
      } else {
        await apps.rollback(job.componentId);
        job.code = 'UPDATE_ROLLED_BACK';
        this.#move(job, 'unhealthy');
        this.#o.record?.('rollback', failureOf(job, 'activate'));
        this.#o.log?.(`${job.name} ${job.version} failed its health check; rolled back`);
      }
    }
    return 'done';
  }

  /** Apps the director does not name leave the device (not a developer's sideloaded ones). */
  async #removeUnnamed(plan: Plan): Promise<void> {
    const apps = this.#o.apps;
    if (!apps || this.#o.appDevelopment()) return;
    const named = new Set(plan.apps.map((t) => t.custom.componentId));
    for (const a of apps.list()) {
      if (named.has(a.componentId) || a.devSigned) continue;
      await apps.remove(a.componentId);
      this.#o.log?.(`app ${a.componentId} is no longer deployed; removed`);
    }
  }

  #requireApps(): AppHost {
    if (!this.#o.apps) throw new HeptadError('UPDATE_INSTALL_FAILED', 'this device runs no apps');
    return this.#o.apps;
  }

  #fail(job: Job, event: JobEvent, code: string, phase: UpdateFailure['phase']): void {
    job.code = code;
    this.#move(job, event);
    this.#o.record?.('update-failure', failureOf(job, phase));
    this.#o.log?.(`update of ${job.name} ${job.version} failed: ${code}`);
  }

  #move(job: Job, event: JobEvent): void {
    job.state = next(job.state, event);
    job.at = this.#clock().toISOString();
    if (event === 'retry' || event === 'start') delete job.code;
    this.#save();
  }

  #save(): void {
    this.#o.storage.write(JOBS_PATH, Buffer.from(JSON.stringify({ schema: 1, jobs: this.#jobs })));
  }

  /** Every job's state, every check: a lost report is made good by the next one. */
  async #report(): Promise<void> {
    const lines: UpdateStatus[] = [];
    for (const j of this.#jobs) {
      const state = REPORTED[j.state];
      if (state === undefined) continue;
      lines.push({
        componentId: j.componentId,
        imageId: j.imageId,
        state,
        ...(j.code !== undefined && (state === 'failed' || state === 'rolled-back') ? { code: j.code } : {}),
        at: j.at,
      });
    }
    if (lines.length === 0) return;
    try {
      await this.#o.report(lines);
    } catch (e) {
      this.#o.log?.(`update status not delivered: ${isHeptadError(e) ? e.code : String(e)}`);
    }
  }
}

/** States whose job the director may still call off (nothing installed yet). */
const TRANSITIONS_CANCEL: ReadonlySet<JobState> = new Set(['pending', 'downloading', 'downloaded']);

const failureOf = (job: Job, phase: UpdateFailure['phase']): UpdateFailure => ({
  componentId: job.componentId,
  imageId: job.imageId,
  phase,
  code: job.code ?? 'UPDATE_INSTALL_FAILED',
});

function loadJobs(storage: Storage): Job[] {
  const bytes = storage.read(JOBS_PATH);
  if (!bytes) return [];
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { schema?: number; jobs?: Job[] };
    return doc.schema === 1 && Array.isArray(doc.jobs) ? doc.jobs : [];
  } catch {
    // Written atomically, so unreadable means damaged by something else: start over (the next
    // check plans again from the director; an installed runtime or app is judged by its slots).
    return [];
  }
}
