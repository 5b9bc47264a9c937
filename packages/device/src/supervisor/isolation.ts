/**
 * The compartment an app process runs in (docs/apps.md §Isolation layers), and which layers this
 * device can give:
 *
 *   1. permission model — always: `node --permission`, read only its image folder and the SDK,
 *      write nothing (storage is brokered), no child processes, workers, addons or WASI;
 *   2. own uid/gid, an empty network namespace, a memory limit — when the runtime is root on
 *      Linux with util-linux (`unshare`, `setpriv`) and a writable memory cgroup;
 *   3. brokered capabilities — always (the supervisor checks every request against the manifest).
 *
 * Order matters (compartments-notes.md): `unshare --net` needs root, so the uid is dropped after
 * it by `setpriv`, and the process enters its memory cgroup before either (a `sh` that writes its
 * own pid into cgroup.procs, then execs): every exec keeps the pid the supervisor signals.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface IsolationLayers {
  readonly permissionModel: true;
  readonly ownUser: boolean;
  readonly networkNamespace: boolean;
  readonly memoryLimit: boolean;
  readonly brokered: true;
  /** why a layer is off (e.g. "not root") */
  readonly notes: readonly string[];
}

export interface IsolationOptions {
  /** turn layer 2 parts off on purpose (tests: "the permission model must hold alone") */
  readonly disable?: {
    readonly ownUser?: boolean;
    readonly networkNamespace?: boolean;
    readonly memoryLimit?: boolean;
  };
  /** memory limit per app (default 256 MiB) */
  readonly memoryLimitBytes?: number;
}

export const DEFAULT_APP_MEMORY_LIMIT = 256 * 1024 * 1024;
/** App uids are FIRST_APP_UID + n: far from system and login users. */
export const FIRST_APP_UID = 200_000;

function which(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin')
    .split(':')
    .concat(['/usr/bin', '/bin', '/usr/sbin'])) {
    const p = join(dir, name);
    if (dir !== '' && existsSync(p)) return p;
  }
  return undefined;
}

/** The memory cgroup folder this process may create children in (v2 unified, or v1 memory), if any. */
function memoryCgroupBase(): { dir: string; v: 1 | 2 } | undefined {
  try {
    const lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
    const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
    if (v1 !== undefined && existsSync('/sys/fs/cgroup/memory')) {
      return { dir: join('/sys/fs/cgroup/memory', v1.split(':')[2] ?? '/'), v: 1 };
    }
    const v2 = lines.find((l) => l.startsWith('0::'));
    if (v2 !== undefined && existsSync('/sys/fs/cgroup/cgroup.controllers')) {
      const controllers = readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8');
      if (controllers.includes('memory')) return { dir: join('/sys/fs/cgroup', v2.slice(3)), v: 2 };
    }
  } catch {
    // no cgroups here
  }
  return undefined;
}

export interface IsolationPlan {
  readonly layers: IsolationLayers;
  readonly unshare?: string;
  readonly setpriv?: string;
  readonly cgroup?: { readonly dir: string; readonly v: 1 | 2 };
  readonly memoryLimitBytes: number;
}

/** Finds out which layers this device can give now. Never throws. */
export function planIsolation(opts: IsolationOptions = {}): IsolationPlan {
  const notes: string[] = [];
  const root = process.platform === 'linux' && process.getuid?.() === 0;
  if (!root) notes.push('not root on Linux: no own uid, network namespace or memory limit');
  const unshare = root ? which('unshare') : undefined;
  const setpriv = root ? which('setpriv') : undefined;
  if (root && (unshare === undefined || setpriv === undefined))
    notes.push('util-linux unshare/setpriv missing');
  let cgroup: IsolationPlan['cgroup'];
  if (root && opts.disable?.memoryLimit !== true) {
    const base = memoryCgroupBase();
    if (base !== undefined) {
      const probe = join(base.dir, `heptad-probe-${process.pid}`);
      try {
        mkdirSync(probe);
        rmdirSync(probe);
        cgroup = base;
      } catch {
        notes.push(`memory cgroup ${base.dir} is not writable`);
      }
    } else notes.push('no memory cgroup');
  }
  const ownUser = setpriv !== undefined && opts.disable?.ownUser !== true;
  const networkNamespace = unshare !== undefined && opts.disable?.networkNamespace !== true;
  for (const [k, v] of Object.entries(opts.disable ?? {}))
    if (v) notes.push(`${k} disabled by configuration`);
  return {
    layers: {
      permissionModel: true,
      ownUser,
      networkNamespace,
      memoryLimit: cgroup !== undefined,
      brokered: true,
      notes,
    },
    ...(networkNamespace ? { unshare } : {}),
    ...(ownUser ? { setpriv } : {}),
    ...(cgroup !== undefined ? { cgroup } : {}),
    memoryLimitBytes: opts.memoryLimitBytes ?? DEFAULT_APP_MEMORY_LIMIT,
  };
}

export interface CompartmentSpec {
  readonly name: string;
  readonly imageDir: string;
  readonly entry: string;
  readonly sdkDir: string;
  readonly sdkEntry: string;
  readonly cmdArgs: readonly string[];
  readonly uid: number;
}

/** A memory cgroup for one app; returns its cgroup.procs path, or undefined when it cannot be made. */
export function makeAppCgroup(plan: IsolationPlan, label: string): string | undefined {
  if (plan.cgroup === undefined) return undefined;
  const dir = join(plan.cgroup.dir, `heptad-app-${label}`);
  try {
    mkdirSync(dir, { recursive: true });
    if (plan.cgroup.v === 1) {
      writeFileSync(join(dir, 'memory.limit_in_bytes'), String(plan.memoryLimitBytes));
      try {
        writeFileSync(join(dir, 'memory.memsw.limit_in_bytes'), String(plan.memoryLimitBytes));
      } catch {
        // no swap accounting: the memory limit alone
      }
    } else {
      writeFileSync(join(dir, 'memory.max'), String(plan.memoryLimitBytes));
      writeFileSync(join(dir, 'memory.swap.max'), '0');
    }
    return join(dir, 'cgroup.procs');
  } catch {
    return undefined;
  }
}

export function removeAppCgroup(procsPath: string | undefined): void {
  if (procsPath === undefined) return;
  try {
    rmdirSync(join(procsPath, '..'));
  } catch {
    // still has a process (it is being killed) or already gone
  }
}

/** The argv of an app process: [command, ...args]. */
export function compartmentArgv(
  plan: IsolationPlan,
  spec: CompartmentSpec,
  cgroupProcs: string | undefined,
): string[] {
  const node = [
    process.execPath,
    '--permission',
    `--allow-fs-read=${spec.imageDir}/`,
    `--allow-fs-read=${spec.sdkDir}/`,
    // node:sqlite writes outside the allowed folders (compartments-notes.md): not in a compartment.
    '--no-experimental-sqlite',
    '--import',
    join(spec.sdkDir, spec.sdkEntry),
    join(spec.imageDir, spec.entry),
    ...spec.cmdArgs,
  ];
  let argv = node;
  if (plan.setpriv !== undefined)
    argv = [
      plan.setpriv,
      `--reuid=${spec.uid}`,
      `--regid=${spec.uid}`,
      '--clear-groups',
      '--no-new-privs',
      // an app never outlives the runtime (killed by the watchdog or a power cut)
      '--pdeathsig=KILL',
      '--',
      ...argv,
    ];
  if (plan.unshare !== undefined) argv = [plan.unshare, '--net', '--', ...argv];
  if (cgroupProcs !== undefined)
    argv = ['/bin/sh', '-c', 'echo $$ > "$0" && exec "$@"', cgroupProcs, ...argv];
  return argv;
}
