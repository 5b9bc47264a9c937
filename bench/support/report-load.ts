// Load generator for bench/error-reports.ts, run as its own process: attested devices upload
// error-report batches over mTLS (each device its own keep-alive connection and certificate).
// Every batch holds fresh report UUIDs, so every report is new to the service.
// Input: a JSON file { url, caPem, devices: [{ id, certPem, keyPem }] };
// args: FILE CONCURRENCY BATCHES SECONDS BATCH_SIZE; output: one JSON line of results.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';

const [file, concurrencyArg, batchesArg, secondsArg, sizeArg] = process.argv.slice(2);
const input = JSON.parse(readFileSync(String(file), 'utf8')) as {
  url: string;
  caPem: string;
  devices: Array<{ id: string; certPem: string; keyPem: string }>;
};
const concurrency = Number(concurrencyArg);
const totalBatches = Number(batchesArg);
const size = Number(sizeArg);
const deadline = performance.now() + Number(secondsArg) * 1000;
const url = new URL(input.url);

const agents = input.devices.map(
  (d) => new https.Agent({ keepAlive: true, maxSockets: 4, ca: input.caPem, cert: d.certPem, key: d.keyPem }),
);

// Reports of 20 apps with 25 kinds of failure each: 500 buckets, as a fleet would produce.
const COMPONENTS = Array.from({ length: 20 }, () => randomUUID());
const IMAGES = Array.from({ length: 4 }, () => randomUUID());
const STACKS = Array.from(
  { length: 25 },
  (_, i) =>
    `TypeError: failure ${i}\n    at handler${i} (/opt/heptad/apps/app/main.js:${10 + i}:5)\n    at process.processTicksAndRejections (node:internal/process/task_queues:105:5)`,
);
const BOOT = randomUUID();

/** Report ids as the device library makes them: UUIDv7, time-ordered (packages/device reports/report.ts). */
let last = 0;
let seq = 0;
function uuidv7(): string {
  const now = Date.now();
  seq = now === last ? seq + 1 : 0;
  last = now;
  const r = randomUUID();
  const ms = now.toString(16).padStart(12, '0');
  const s = (seq & 0xfff).toString(16).padStart(3, '0');
  return `${ms.slice(0, 8)}-${ms.slice(8)}-7${s}-${r.slice(19)}`;
}

/** One batch as JSON text, built from parts: fresh ids, the device's time, varied buckets. */
function batch(n: number): Buffer {
  const at = new Date(Date.now() - 60_000).toISOString();
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = Math.floor(Math.random() * 500);
    const crash = k % 2 === 0;
    const details = crash
      ? { stack: STACKS[k % 25], signal: 'SIGABRT', uptimeSeconds: 3600 }
      : { exitCode: k % 25, uptimeSeconds: 12 };
    parts.push(
      `{"id":"${uuidv7()}","componentId":"${COMPONENTS[k % 20]}","imageId":"${IMAGES[k % 4]}","bootId":"${BOOT}","at":"${at}","kind":"${crash ? 'app-crash' : 'app-exit'}","count":1,"details":${JSON.stringify(details)}}`,
    );
  }
  return Buffer.from(`{"reports":[${parts.join(',')}]}`);
}

function post(agent: https.Agent, payload: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        path: '/v1/device/error-reports',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', () => resolve(0));
    req.end(payload);
  });
}

let started = 0;
let ok = 0;
let failed = 0;
const latencies: number[] = [];
const cpu0 = process.cpuUsage();
const t0 = performance.now();
async function worker(w: number) {
  const agent = agents[w % agents.length] as https.Agent;
  while (started < totalBatches && performance.now() < deadline) {
    started++;
    const payload = batch(size);
    const s = performance.now();
    const status = await post(agent, payload);
    latencies.push(performance.now() - s);
    if (status === 200) ok++;
    else failed++;
  }
}
await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
latencies.sort((a, b) => a - b);
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
for (const a of agents) a.destroy();
process.stdout.write(
  `${JSON.stringify({
    batches: ok,
    failed,
    reports: ok * size,
    seconds,
    reportsPerSecond: (ok * size) / seconds,
    p50: q(0.5),
    p99: q(0.99),
    cpuMs: (cpu.user + cpu.system) / 1000,
  })}\n`,
);
