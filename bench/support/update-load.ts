// Load generator for bench/updates.ts, run as its own process: devices poll or download over
// mTLS on keep-alive connections (each connection its own device certificate).
// Input: a JSON file { caPem, devices: [{ certPem, keyPem }] }; args:
//   FILE URL MODE(poll|download) CONNECTIONS SECONDS
// poll: GET URL with If-None-Match (the ETag of a first GET): every answer must be 304.
// download: GET URL in full, repeatedly: every answer must be 200 with the whole file.
// Output: one JSON line { requests, bad, seconds, rps, p50Ms, p99Ms, bytes, mbPerSecond }.
import { readFileSync } from 'node:fs';
import https from 'node:https';

const [file, urlArg, mode, connectionsArg, secondsArg] = process.argv.slice(2);
const input = JSON.parse(readFileSync(String(file), 'utf8')) as {
  caPem: string;
  devices: Array<{ certPem: string; keyPem: string }>;
};
const url = new URL(String(urlArg));
const connections = Number(connectionsArg);
const seconds = Number(secondsArg);

function get(agent: https.Agent, headers: Record<string, string>) {
  return new Promise<{ status: number; etag: string; bytes: number }>((resolve, reject) => {
    const req = https.get(url, { agent, headers }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, etag: String(res.headers.etag ?? ''), bytes }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const agents = Array.from({ length: connections }, (_, i) => {
  const d = input.devices[i % input.devices.length];
  if (!d) throw new Error('no devices');
  return new https.Agent({ keepAlive: true, maxSockets: 1, ca: input.caPem, cert: d.certPem, key: d.keyPem });
});

const first = await get(agents[0] as https.Agent, {});
if (first.status !== 200) throw new Error(`first GET answered ${first.status}`);
const headers: Record<string, string> = mode === 'poll' ? { 'if-none-match': first.etag } : {};
// Every connection makes its TLS handshake before the clock starts.
await Promise.all(agents.map((a) => get(a, headers)));

const latencies: number[] = [];
let bad = 0;
let bytes = 0;
const start = performance.now();
const deadline = start + seconds * 1000;
await Promise.all(
  agents.map(async (agent) => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const r = await get(agent, headers);
      latencies.push(performance.now() - t0);
      bytes += r.bytes;
      if (mode === 'poll' ? r.status !== 304 : r.status !== 200 || r.bytes !== first.bytes) bad += 1;
    }
  }),
);
const elapsed = (performance.now() - start) / 1000;
for (const a of agents) a.destroy();
latencies.sort((x, y) => x - y);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
process.stdout.write(
  `${JSON.stringify({
    requests: latencies.length,
    bad,
    seconds: elapsed,
    rps: latencies.length / elapsed,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    bytes,
    mbPerSecond: bytes / elapsed / 1e6,
  })}\n`,
);
