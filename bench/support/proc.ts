// Child processes of the benchmark: started here, remembered, and stopped by PID at the end.
// Also reads CPU time from /proc, so a run can say how busy the server and the client were.

import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface Started {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** everything the process wrote so far (stdout and stderr interleaved, last 64 KiB) */
  output(): string;
  /** resolves with the exit code (or signal name) once the process has exited */
  readonly exited: Promise<number | string>;
  /** started in its own process group, which is signalled as a whole */
  readonly detached: boolean;
}

const running = new Map<number, Started>();

/** Starts a process and remembers it; `detached` puts it in its own process group (killed as a group). */
export function start(
  name: string,
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): Started {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
  const pid = child.pid;
  let out = '';
  const keep = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(pid);
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', (e) => {
      running.delete(pid);
      resolve(`error: ${e.message}`);
    });
  });
  const started: Started = {
    name,
    child,
    pid,
    output: () => out,
    exited,
    detached: options.detached === true,
  };
  running.set(pid, started);
  return started;
}

function signal(p: Started, sig: NodeJS.Signals): void {
  try {
    // A detached child leads its own process group: signal that group (by its id), else the PID.
    process.kill(p.detached ? -p.pid : p.pid, sig);
  } catch {
    // already gone
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export async function stop(p: Started, graceMs = 10_000): Promise<void> {
  if (!running.has(p.pid)) return;
  signal(p, 'SIGTERM');
  const timer = setTimeout(() => signal(p, 'SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
}

/** Stops every process this benchmark started and that still runs. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running.values()].map((p) => stop(p, 5_000)));
}

/** Last resort from a process 'exit' hook: SIGKILL what is left, by PID. */
export function killAllSync(): void {
  for (const p of running.values()) signal(p, 'SIGKILL');
}

export function runningNames(): string[] {
  return [...running.values()].map((p) => `${p.name} (pid ${p.pid})`);
}

/** Waits until the process prints a line matching `re`; fails if it exits or the time runs out. */
export function waitForOutput(p: Started, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = re.exec(p.output());
      if (m) {
        done();
        resolve(m);
      }
    };
    const onExit = () => {
      done();
      reject(new Error(`${p.name} exited before it was ready:\n${p.output().slice(-3000)}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${p.name} not ready after ${timeoutMs / 1000} s:\n${p.output().slice(-3000)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      p.child.stdout?.off('data', check);
      p.child.stderr?.off('data', check);
      p.child.off('exit', onExit);
    };
    p.child.stdout?.on('data', check);
    p.child.stderr?.on('data', check);
    p.child.once('exit', onExit);
    check();
  });
}

// --- CPU accounting from /proc ------------------------------------------------------------------

export const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": index 0 is field 3 (state).
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** utime + stime of one process, in clock ticks (0 when it is gone). */
export function cpuTicks(pid: number): number {
  const f = statFields(pid);
  return f ? Number(f[11]) + Number(f[12]) : 0;
}

/** PIDs whose parent is `ppid`. */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const f = statFields(Number(e));
    if (f && Number(f[1]) === ppid) out.push(Number(e));
  }
  return out;
}

/** The postmaster of a PostgreSQL server listening on `port` (found by its command line). */
export function postmasterPid(port: number): number | null {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (!/(^|\/)postgres$/.test(cmd[0] ?? '')) continue;
      if (
        cmd.some(
          (a, i) =>
            a === `-p ${port}` || (a === '-p' && cmd[i + 1] === String(port)) || a.includes(`-p ${port} `),
        )
      ) {
        return Number(e);
      }
    } catch {
      // gone or not readable
    }
  }
  return null;
}

/** A CPU meter over a set of processes: call once to start, the returned function to read percent of one core. */
export function cpuMeter(pids: () => readonly number[]): () => number {
  const t0 = performance.now();
  const before = new Map(pids().map((p) => [p, cpuTicks(p)]));
  return () => {
    const seconds = (performance.now() - t0) / 1000;
    let ticks = 0;
    for (const p of new Set([...before.keys(), ...pids()])) {
      const now = cpuTicks(p);
      if (now > 0) ticks += now - (before.get(p) ?? 0); // a process gone since is not counted
    }
    return (100 * ticks) / CLOCK_TICKS / seconds;
  };
}

/** Busy ticks of the whole machine so far (all cores: user+nice+system+irq+softirq+steal). */
export function machineBusyTicks(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
}

/** A meter of the whole machine's CPU use, in percent of one core. */
export function machineMeter(): () => number {
  const t0 = performance.now();
  const b0 = machineBusyTicks();
  return () => (100 * (machineBusyTicks() - b0)) / CLOCK_TICKS / ((performance.now() - t0) / 1000);
}

/**
 * Waits (up to `maxWaitMs`) until the machine is quiet: less than `threshold` percent of one core
 * busy over a 1 s window while nothing of ours is under load. Other work on a 2-core box moves the
 * figures more than anything else. Returns the last busy figure seen.
 */
export async function waitForQuiet(
  threshold: number,
  maxWaitMs: number,
  log: (s: string) => void,
): Promise<{ busy: number; waitedMs: number }> {
  const t0 = performance.now();
  let said = false;
  for (;;) {
    const m = machineMeter();
    await new Promise((r) => setTimeout(r, 1000));
    const busy = m();
    const waitedMs = performance.now() - t0;
    if (busy < threshold || waitedMs >= maxWaitMs) {
      if (said || busy >= threshold) {
        log(
          `  machine ${busy < threshold ? 'quiet again' : 'still busy'} (${busy.toFixed(0)} % of a core) after ${(waitedMs / 1000).toFixed(0)} s`,
        );
      }
      return { busy, waitedMs };
    }
    if (!said)
      log(
        `  other processes use ${busy.toFixed(0)} % of a core; waiting for quiet (up to ${maxWaitMs / 1000} s)`,
      );
    said = true;
  }
}
