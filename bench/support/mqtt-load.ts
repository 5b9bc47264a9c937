// The MQTT load generator for bench/mqtt.ts, in its own process so that the broker's CPU is
// measured apart from the client's. Prints one JSON line with its result (hold mode: "READY n",
// then waits to be stopped). Every mode is bounded by a count and a time limit.
//
//   node bench/support/mqtt-load.ts --mode rate|pub|hold --port P --ca FILE --creds FILE [...]
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';

const { values: o } = parseArgs({
  options: {
    mode: { type: 'string' },
    port: { type: 'string' },
    ca: { type: 'string' },
    creds: { type: 'string' },
    count: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '50' },
    qos: { type: 'string', default: '0' },
    devices: { type: 'string', default: '64' },
    'time-limit': { type: 'string', default: '60' },
  },
});

interface Cred {
  id: string;
  chainPem: string;
  keyPem: string;
}
const port = Number(o.port);
const ca = readFileSync(String(o.ca), 'utf8');
const creds = JSON.parse(readFileSync(String(o.creds), 'utf8')) as Cred[];
const count = Number(o.count);
const concurrency = Number(o.concurrency);
const deadline = setTimeout(() => {
  console.log(JSON.stringify({ error: 'time limit reached' }));
  process.exit(2);
}, Number(o['time-limit']) * 1000);

function connectFrame(clientId: string, keepalive: number): Buffer {
  const id = Buffer.from(clientId);
  const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepalive >> 8, keepalive & 0xff]);
  const body = Buffer.concat([variable, Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]); // body < 128 bytes
}
const DISCONNECT = Buffer.from([0xe0, 0x00]);

/** One mTLS connection: handshake, CONNECT, CONNACK 0. Resolves the socket (open) or rejects. */
function open(context: tls.SecureContext, clientId: string, keepalive: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, secureContext: context });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('timeout'));
    }, 10_000);
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.once('close', () => reject(new Error('closed before CONNACK')));
    s.once('secureConnect', () => s.write(connectFrame(clientId, keepalive)));
    s.once('data', (d: Buffer) => {
      clearTimeout(timer);
      if (d.length >= 4 && d[0] === 0x20 && d[3] === 0) resolve(s);
      else reject(new Error(`CONNACK ${d.toString('hex')}`));
    });
  });
}

const contexts = creds.map((c) => tls.createSecureContext({ ca, cert: c.chainPem, key: c.keyPem }));

async function rate(): Promise<void> {
  const n = Math.min(Number(o.devices), creds.length);
  let started = 0;
  let ok = 0;
  let failed = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const worker = async () => {
    while (started < count) {
      const k = started++;
      try {
        const s = await open(contexts[k % n] as tls.SecureContext, (creds[k % n] as Cred).id, 60);
        ok++;
        await new Promise<void>((r) => {
          s.once('close', () => r());
          s.end(DISCONNECT);
        });
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log(
    JSON.stringify({
      ok,
      failed,
      seconds,
      perSecond: ok / seconds,
      clientCpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / seconds,
    }),
  );
}

async function pub(): Promise<void> {
  const qos = Number(o.qos) as 0 | 1;
  const c = creds[0] as Cred;
  const client = await mqtt.connectAsync({
    host: '127.0.0.1',
    port,
    protocol: 'mqtts',
    ca,
    cert: c.chainPem,
    key: c.keyPem,
    clientId: c.id,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  const topic = `devices/${c.id}/bench`;
  await client.subscribeAsync(topic, { qos });
  const payload = Buffer.alloc(100, 0x61);
  let received = 0;
  const t0 = performance.now();
  const all = new Promise<void>((r) =>
    client.on('message', () => {
      if (++received === count) r();
    }),
  );
  // A bounded window of messages in flight, so neither side buffers the whole run.
  const window = qos === 0 ? 1000 : 100;
  let sent = 0;
  while (sent < count) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < window && sent < count; i++, sent++)
      batch.push(client.publishAsync(topic, payload, { qos }));
    await Promise.all(batch);
    while (sent - received > window * 4) await new Promise((r) => setImmediate(r));
  }
  await all;
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ qos, count, seconds, perSecond: count / seconds }));
  await client.endAsync();
}

async function hold(): Promise<void> {
  const n = Math.min(count, creds.length);
  const sockets: tls.TLSSocket[] = [];
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < n) {
      const k = next++;
      try {
        sockets.push(await open(contexts[k] as tls.SecureContext, (creds[k] as Cred).id, 0));
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearTimeout(deadline);
  console.log(`READY ${sockets.length} failed ${failed}`);
  setInterval(() => {}, 1 << 30); // held until the benchmark stops this process
}

if (o.mode === 'rate') await rate();
else if (o.mode === 'pub') await pub();
else if (o.mode === 'hold') await hold();
else throw new Error('--mode rate|pub|hold');
if (o.mode !== 'hold') {
  clearTimeout(deadline);
  process.exit(0);
}
