/**
 * How the update agent reaches the service: HTTPS with the device certificate (mTLS), trusting
 * only the platform CA from manufacture. Every request has a hard deadline (TUF's "slow
 * retrieval" attack: a server that trickles bytes cannot hold the device forever) and a byte
 * bound (TUF's "endless data": more bytes than asked for ends the request).
 */
import type http from 'node:http';
import https from 'node:https';
import { HeptadError } from '@heptad/protocol';
import type { ClientCertificate } from '../agent/service-client.ts';
import type { RangeSource } from './download.ts';

/** As in service-client.ts: node:http without loading undici. */
const plainHttp = (): typeof http => process.getBuiltinModule('node:http') as typeof http;

export interface UpdateFetcherOptions {
  readonly serviceUrl: string;
  readonly caPem: string | undefined;
  readonly certificate: ClientCertificate;
  /** the most one request may take, start to last byte (ms) */
  readonly deadlineMs?: number;
}

/** One GET: status, headers and a body bounded by `maxBytes`. */
interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

export class UpdateFetcher {
  readonly #base: URL;
  readonly #agent: http.Agent;
  readonly #deadlineMs: number;
  /** bytes received by this fetcher (benchmarks and the resume test read it) */
  received = 0;

  constructor(o: UpdateFetcherOptions) {
    this.#base = new URL(o.serviceUrl);
    this.#deadlineMs = o.deadlineMs ?? 60_000;
    this.#agent =
      this.#base.protocol === 'https:'
        ? new https.Agent({
            keepAlive: true,
            ...(o.caPem ? { ca: o.caPem } : {}),
            cert: o.certificate.chainPem,
            key: o.certificate.keyPem,
          })
        : new (plainHttp().Agent)({ keepAlive: true });
  }

  url(path: string): string {
    return new URL(path, this.#base).toString();
  }

  close(): void {
    this.#agent.destroy();
  }

  /** GET with a deadline and a bound on the body; the body is collected in memory. */
  get(url: string, maxBytes: number, headers: Record<string, string> = {}): Promise<Answer> {
    const target = new URL(url);
    if (target.origin !== this.#base.origin)
      return Promise.reject(new HeptadError('UPDATE_METADATA_INVALID', 'a URL outside the service'));
    const mod = target.protocol === 'https:' ? https : plainHttp();
    return new Promise<Answer>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        req.destroy();
        reject(e);
      };
      const req = mod.get(target, { agent: this.#agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (settled) return;
          size += c.length;
          this.received += c.length;
          if (size > maxBytes) {
            fail(
              new HeptadError(
                'UPDATE_TARGET_LENGTH',
                `${target.pathname}: longer than the ${maxBytes} bytes expected`,
              ),
            );
          } else chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          if (settled) return;
          settled = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.on('error', (e) => fail(e));
      });
      const timer = setTimeout(
        () =>
          fail(
            new HeptadError(
              'UPDATE_DOWNLOAD_TIMEOUT',
              `${target.pathname} took longer than ${this.#deadlineMs} ms`,
            ),
          ),
        this.#deadlineMs,
      );
      req.on('error', (e: Error & { code?: string }) =>
        fail(
          new HeptadError('DEVICE_SERVICE_UNREACHABLE', `${this.#base.origin}: ${e.code ?? e.message}`, {
            cause: e,
          }),
        ),
      );
    });
  }

  /**
   * tuf-js's Fetcher: metadata comes through here, bounded by tuf-js's per-role maximum and by
   * the deadline. Non-200 answers become tuf-js's DownloadHTTPError, so that a 404 for the next
   * root version means "no newer root". (tuf-js is loaded only when a check runs: the runtime
   * does not pay for it at boot.)
   */
  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    const { DownloadHTTPError, DownloadLengthMismatchError } = await import('tuf-js/dist/error.js');
    let a: Answer;
    try {
      a = await this.get(url, Math.min(maxLength, MAX_METADATA_BYTES));
    } catch (e) {
      if (e instanceof HeptadError && e.code === 'UPDATE_TARGET_LENGTH')
        throw new DownloadLengthMismatchError(e.message);
      throw e;
    }
    if (a.status !== 200) throw new DownloadHTTPError(`${new URL(url).pathname}: HTTP ${a.status}`, a.status);
    return a.body;
  }

  /** Targets are downloaded with ranges (rangeSource), never through tuf-js. */
  async downloadFile<T>(): Promise<T> {
    throw new HeptadError('INTERNAL_ERROR', 'targets are downloaded with byte ranges, not by tuf-js');
  }

  /** Byte ranges of one target file (for downloadTarget). */
  rangeSource(url: string): RangeSource {
    return {
      get: async (start, end) => {
        const want = end - start + 1;
        const a = await this.get(url, want, { range: `bytes=${start}-${end}` });
        // 206 with exactly the range asked; a 200 is accepted only when it is the whole range.
        const ok =
          (a.status === 206 && a.headers['content-range']?.startsWith(`bytes ${start}-${end}/`)) ||
          (a.status === 200 && start === 0 && a.body.length === want);
        if (!ok) {
          throw new HeptadError('UPDATE_DOWNLOAD_FAILED', `range ${start}-${end}: HTTP ${a.status}`, {
            detail: { status: a.status },
          });
        }
        return a.body;
      },
    };
  }
}

/** No Heptad metadata file comes near this (tuf-js applies its own per-role bounds too). */
export const MAX_METADATA_BYTES = 4 * 1024 * 1024;
