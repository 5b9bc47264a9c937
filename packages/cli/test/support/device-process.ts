// Real `heptad device run` processes for tests: spawned in their own process group (so a test
// can cut the power of the whole device — bootloader and runtime — with one kill -9), with their
// output collected and awaitable.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CliRun, runCaptured } from './run-cli.ts';

export const HEPTAD_BIN = fileURLToPath(new URL('../../bin/heptad.js', import.meta.url));

export class DeviceProcess {
  /** Every device started and not yet ended: after() cuts their power, so a failed test leaks none. */
  static readonly live = new Set<DeviceProcess>();

  static async powerCutAll(): Promise<void> {
    await Promise.all([...DeviceProcess.live].map((d) => d.powerCut()));
  }

  readonly child: ChildProcess;
  out = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: Array<() => void> = [];

  constructor(state: string, extra: readonly string[] = [], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(process.execPath, [HEPTAD_BIN, 'device', 'run', '--state', state, ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env,
    });
    const collect = (b: Buffer) => {
      this.out += b.toString();
      for (const w of this.#waiters.splice(0)) w();
    };
    this.child.stdout?.on('data', collect);
    this.child.stderr?.on('data', collect);
    DeviceProcess.live.add(this);
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        DeviceProcess.live.delete(this);
        for (const w of this.#waiters.splice(0)) w();
        resolve({ code, signal });
      }),
    );
  }

  /** Resolves when the output matches `re` `count` times; rejects after `timeoutMs` with the output. */
  async waitFor(re: RegExp, timeoutMs = 15_000, count = 1): Promise<void> {
    const g = new RegExp(re.source, `${re.flags.replace('g', '')}g`);
    const deadline = Date.now() + timeoutMs;
    while ((this.out.match(g)?.length ?? 0) < count) {
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null || this.child.signalCode !== null) {
        if ((this.out.match(g)?.length ?? 0) >= count) return;
        throw new Error(`timed out waiting for ${re} ×${count}; output:\n${this.out}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Power cut: SIGKILL to the whole process group (bootloader and runtime at once). */
  async powerCut(): Promise<void> {
    // The group, even when the bootloader already exited: its runtime may still be there.
    if (this.child.pid !== undefined) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await this.exited;
  }

  /** Orderly power-off (SIGTERM), falling back to a power cut after 10 s. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const t = setTimeout(() => void this.powerCut(), 10_000);
    const r = await this.exited;
    clearTimeout(t);
    return r;
  }
}

/** Keys and runtime packages built once per test file through the CLI itself. */
export interface RuntimeKit {
  readonly dir: string;
  readonly buildKey: string;
  readonly platformKey: string;
  readonly platformPub: string;
  readonly otherKey: string;
  /** packs `from` (default: the Heptad runtime) and signs it with the platform key; returns file and digest */
  pack(
    name: string,
    version: string,
    sv: number,
    opts?: { from?: string; sign?: boolean },
  ): Promise<{ file: string; digest: string }>;
}

export async function makeRuntimeKit(dir: string): Promise<RuntimeKit> {
  const cli = (argv: string[]) => runCaptured(argv, {}, dir);
  for (const k of ['build.key', 'platform.key', 'other.key']) {
    const r = await cli(['key', 'create', '--out', join(dir, k)]);
    if (r.code !== 0) throw new Error(r.err);
  }
  return {
    dir,
    buildKey: join(dir, 'build.key'),
    platformKey: join(dir, 'platform.key'),
    platformPub: join(dir, 'platform.key.pub'),
    otherKey: join(dir, 'other.key'),
    async pack(name, version, sv, opts = {}) {
      const file = join(dir, `${name}.hpkg`);
      const r = await cli([
        'runtime',
        'pack',
        '--out',
        file,
        '--version',
        version,
        '--security-version',
        String(sv),
        '--key',
        join(dir, 'build.key'),
        ...(opts.from ? ['--from', opts.from] : []),
        '--output',
        'json',
      ]);
      if (r.code !== 0) throw new Error(r.err);
      if (opts.sign !== false) {
        const s = await cli(['runtime', 'sign', file, '--key', join(dir, 'platform.key')]);
        if (s.code !== 0) throw new Error(s.err);
      }
      return { file, digest: String(r.json()['digest']) };
    },
  };
}

/** A test runtime module written to `dir` (bundled by --from). */
export function writeModule(dir: string, name: string, source: string): string {
  const file = join(dir, name);
  writeFileSync(file, source);
  return file;
}

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** The CLI as a test runs it: arguments and extra environment (e.g. another user's token). */
export type TestCli = (argv: string[], extra?: NodeJS.ProcessEnv) => Promise<CliRun>;

/**
 * Manufactures a soft device with `runtime` as its factory runtime, registers it (operator) and
 * claims it with `adminToken` (into `group` when given; `capabilities` added after). Returns its id.
 */
export async function enrollDevice(
  cli: TestCli,
  o: {
    state: string;
    serviceUrl: string;
    caPath: string;
    runtime: string;
    runtimeSigner: string;
    adminToken: string;
    group?: string;
    capabilities?: readonly string[];
  },
): Promise<string> {
  const must = async (argv: string[], extra: NodeJS.ProcessEnv = {}) => {
    const r = await cli(argv, extra);
    if (r.code !== 0) throw new Error(`heptad ${argv.join(' ')}: ${r.err}`);
    return r;
  };
  const made = await must([
    'device',
    'manufacture',
    '--state',
    o.state,
    '--rot',
    'soft',
    '--service',
    o.serviceUrl,
    '--platform-ca',
    o.caPath,
    '--runtime',
    o.runtime,
    '--runtime-signer',
    o.runtimeSigner,
    '--output',
    'json',
  ]);
  const id = String(made.json()['deviceId']);
  await must(['device', 'register', '--from', join(o.state, 'registration.json')]);
  const admin = { HEPTAD_TOKEN: o.adminToken };
  await must(['device', 'claim', id, ...(o.group ? ['--device-group', o.group] : [])], admin);
  for (const c of o.capabilities ?? []) await must(['device', 'capability', 'add', id, c], admin);
  return id;
}
