import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BaseFetcher, Updater } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import type { CertifiedDevice } from './device-tls.ts';
import type { TestService } from './service.ts';

/**
 * tuf-js's fetcher over mTLS with the device certificate, on keep-alive connections, as the
 * device's update agent talks to the service. Non-200 answers become DownloadHTTPError (tuf-js
 * reads a 404 for N+1.root.json as "no newer root"). Records every URL it fetched.
 */
export class MtlsFetcher extends BaseFetcher {
  readonly agent: https.Agent;
  readonly fetched: string[] = [];

  constructor(svc: TestService, device: Pick<CertifiedDevice, 'certPem' | 'keyPem'>) {
    super();
    this.agent = new https.Agent({
      keepAlive: true,
      ca: svc.caPem,
      cert: device.certPem,
      key: device.keyPem,
    });
  }

  fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    this.fetched.push(new URL(url).pathname);
    return new Promise((resolve, reject) => {
      https
        .get(url, { agent: this.agent }, (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new DownloadHTTPError(`HTTP ${res.statusCode} for ${url}`, res.statusCode ?? 0));
            return;
          }
          resolve(Readable.toWeb(res) as unknown as ReadableStream<Uint8Array<ArrayBuffer>>);
        })
        .on('error', reject);
    });
  }
}

export interface TufClient {
  readonly updater: Updater;
  readonly fetcher: MtlsFetcher;
  readonly dir: string;
  /** a new Updater on the same local state (what a device does on its next check) */
  again(): Updater;
  close(): void;
}

/**
 * A tuf-js client of one repository for one device, trusting `rootJson` (bootstrap), with its
 * metadata and targets in a temp folder. `referenceTime`: the clock tuf-js checks expiry with.
 */
export function tufClient(
  svc: TestService,
  device: Pick<CertifiedDevice, 'certPem' | 'keyPem'>,
  repository: 'image' | 'director',
  rootJson: string | Buffer,
): TufClient {
  const dir = mkdtempSync(join(tmpdir(), `heptad-tuf-${repository}-`));
  mkdirSync(join(dir, 'metadata'));
  mkdirSync(join(dir, 'targets'));
  writeFileSync(join(dir, 'metadata', 'root.json'), rootJson);
  const fetcher = new MtlsFetcher(svc, device);
  const make = () =>
    new Updater({
      metadataDir: join(dir, 'metadata'),
      metadataBaseUrl: `${svc.url}/v1/device/tuf/${repository}/metadata`,
      targetDir: join(dir, 'targets'),
      targetBaseUrl: `${svc.url}/v1/device/tuf/image/targets`,
      fetcher,
      config: { fetchRetries: 0 },
    });
  return {
    updater: make(),
    fetcher,
    dir,
    again: make,
    close() {
      fetcher.agent.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
