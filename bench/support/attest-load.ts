// Load generator for bench/attest.ts, run as its own process: simulated soft-RoT devices attest
// against the service over HTTPS keep-alive. Each attestation is what a real device does:
// challenge → fresh CSR → quote over (nonce ‖ CSR) → evidence → certificate.
// Input: a JSON file { url, caPem, devices: [{ id, keyPkcs8 }] }; output: one JSON line of results.
import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import {
  attestationBinding,
  createCsr,
  DEFAULT_MEASUREMENT_PCR,
  encodeEcdsaSignature,
  encodeQuoteAttest,
  pcrDigest,
} from '../../packages/protocol/src/index.ts';

const [file, concurrencyArg, countArg, secondsArg] = process.argv.slice(2);
const input = JSON.parse(readFileSync(String(file), 'utf8')) as {
  url: string;
  caPem: string;
  devices: Array<{ id: string; keyPkcs8: string }>;
};
const concurrency = Number(concurrencyArg);
const total = Number(countArg);
const deadline = performance.now() + Number(secondsArg) * 1000;

const agent = new https.Agent({ keepAlive: true, maxSockets: concurrency, ca: input.caPem });
const url = new URL(input.url);

function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

interface Dev {
  id: string;
  key: KeyObject;
  signer: Buffer;
  tls: KeyObject;
  /** A device may reuse its TLS key and so its CSR: the quote binds the CSR to each fresh nonce. */
  csr: Buffer;
}
const devices: Dev[] = input.devices.map((d) => {
  const key = createPrivateKey({ key: Buffer.from(d.keyPkcs8, 'base64'), format: 'der', type: 'pkcs8' });
  const tls = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  return {
    id: d.id,
    key,
    signer: Buffer.concat([Buffer.from([0, 0x0b]), createHash('sha256').update(d.id).digest()]),
    tls,
    csr: createCsr({ privateKey: tls, subjectCommonName: d.id }),
  };
});
const emptyRegister = pcrDigest([Buffer.alloc(32)]);

async function attestOnce(d: Dev): Promise<boolean> {
  const c = await post('/v1/attestation/challenge', { deviceId: d.id });
  if (c.status !== 201) return false;
  const nonce = String(c.json['nonce']);
  const csr = d.csr;
  const attest = encodeQuoteAttest({
    qualifiedSigner: d.signer,
    extraData: attestationBinding(Buffer.from(nonce, 'hex'), csr),
    clock: BigInt(Date.now()),
    resetCount: 0,
    restartCount: 0,
    safe: true,
    firmwareVersion: 1n,
    pcrSelection: { hash: 'sha256', pcrs: [DEFAULT_MEASUREMENT_PCR] },
    pcrDigest: emptyRegister,
  });
  const signature = encodeEcdsaSignature(sign('sha256', attest, d.key));
  const e = await post('/v1/attestation/evidence', {
    deviceId: d.id,
    nonce,
    quote: { attest: attest.toString('base64'), signature: signature.toString('base64') },
    log: [],
    csr: csr.toString('base64'),
  });
  return e.status === 201;
}

const latencies: number[] = [];
let started = 0;
let ok = 0;
let failed = 0;
const t0 = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async (_, w) => {
    // Each worker owns its devices, so no device has two attestations in flight.
    const mine = devices.filter((_, i) => i % concurrency === w);
    let k = 0;
    while (started < total && performance.now() < deadline) {
      started++;
      const d = mine[k++ % mine.length];
      if (!d) break;
      const a = performance.now();
      try {
        if (await attestOnce(d)) ok++;
        else failed++;
      } catch {
        failed++;
      }
      latencies.push(performance.now() - a);
    }
  }),
);
const seconds = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
process.stdout.write(
  `${JSON.stringify({ ok, failed, seconds, perSecond: ok / seconds, p50: pct(50), p99: pct(99), cpuMs: process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000 })}\n`,
);
agent.destroy();
