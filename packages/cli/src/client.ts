import type http from 'node:http';
import https from 'node:https';
import { ERROR_REGISTRY, HeptadError, isErrorCode } from '@heptad/protocol';

/** node:http without its ES namespace, which would load Node's bundled undici (see device service-client). */
const plainHttp = (): typeof http => process.getBuiltinModule('node:http') as typeof http;

/** An error the service answered with (problem+json), carried to the CLI's one-line report. */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly hint: string;
  readonly requestId: string | undefined;
  readonly problem: Record<string, unknown>;

  constructor(status: number, problem: Record<string, unknown>) {
    const code = typeof problem['code'] === 'string' ? problem['code'] : `HTTP_${status}`;
    const detail = typeof problem['detail'] === 'string' ? problem['detail'] : undefined;
    const title = typeof problem['title'] === 'string' ? problem['title'] : `HTTP ${status}`;
    const fields = Array.isArray(problem['errors'])
      ? (problem['errors'] as Array<{ field?: unknown; problem?: unknown }>)
          .map((f) => `${String(f.field)} ${String(f.problem)}`)
          .join('; ')
      : '';
    const ids = Array.isArray(problem['deviceIds'])
      ? ` (${(problem['deviceIds'] as unknown[]).join(', ')})`
      : '';
    super(`${detail ?? title}${fields ? `: ${fields}` : ''}${ids}`);
    this.code = code;
    this.status = status;
    this.hint =
      typeof problem['hint'] === 'string'
        ? problem['hint']
        : isErrorCode(code)
          ? ERROR_REGISTRY[code].hint
          : '';
    this.requestId = typeof problem['requestId'] === 'string' ? problem['requestId'] : undefined;
    this.problem = problem;
  }
}

export interface ClientOptions {
  readonly url: string;
  readonly token: string;
  readonly caPem?: string;
  readonly timeoutMs?: number;
}

const MAX_RESPONSE = 32 * 1024 * 1024;
const TLS_TRUST_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
]);

/** A small HTTPS client for the service API: bearer token, trusted CA, problem+json errors. */
export class ServiceClient {
  readonly #url: URL;
  readonly #token: string;
  readonly #agent: http.Agent;
  readonly #timeoutMs: number;
  readonly #caPem: string | undefined;

  constructor(options: ClientOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch (cause) {
      throw new HeptadError('CLI_USAGE', `--url "${options.url}" is not a URL`, { cause });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new HeptadError(
        'CLI_USAGE',
        '--url must start with https:// (or http:// for a loopback development service)',
      );
    }
    this.#url = url;
    this.#token = options.token;
    this.#caPem = options.caPem;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#agent =
      url.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, ...(options.caPem ? { ca: options.caPem } : {}) })
        : new (plainHttp().Agent)({ keepAlive: true });
  }

  close(): void {
    this.#agent.destroy();
  }

  /** Where and as whom this client talks: for the MQTT commands, which reuse the service's URL host, token and CA. */
  get connection(): { readonly url: URL; readonly token: string; readonly caPem: string | undefined } {
    return { url: this.#url, token: this.#token, caPem: this.#caPem };
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const { status, text } = await this.#send(method, path, { body });
    if (status === 204) return undefined as T;
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch (cause) {
      throw new HeptadError('CLI_BAD_RESPONSE', `HTTP ${status} with a body that is not JSON`, { cause });
    }
    if (status >= 200 && status < 300) return json as T;
    throw new ApiError(
      status,
      typeof json === 'object' && json !== null ? (json as Record<string, unknown>) : {},
    );
  }

  /** For documents that are not JSON (PEM): the body as text on success, a coded ApiError otherwise. */
  async requestText(method: string, path: string): Promise<string> {
    const { status, text } = await this.#send(method, path, {});
    if (status >= 200 && status < 300) return text;
    let problem: Record<string, unknown> = {};
    try {
      problem = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not a problem document; the status alone is reported
    }
    throw new ApiError(status, problem);
  }

  /**
   * A GET whose body is streamed to `sink` chunk by chunk (exports of any size, in bounded
   * memory). Resolves with the bytes written; a non-2xx answer is read (bounded) and thrown as
   * an ApiError, and nothing reaches the sink.
   */
  stream(path: string, sink: (chunk: Buffer) => Promise<void> | void): Promise<number> {
    const target = new URL(path, this.#url);
    const mod = target.protocol === 'https:' ? https : plainHttp();
    return new Promise((resolve, reject) => {
      const req = mod.request(
        target,
        {
          method: 'GET',
          agent: this.#agent,
          headers: { authorization: `Bearer ${this.#token}`, accept: '*/*' },
          timeout: this.#timeoutMs,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (c: Buffer) => {
              size += c.length;
              if (size <= 64 * 1024) chunks.push(c);
            });
            res.on('end', () => {
              let problem: Record<string, unknown> = {};
              try {
                problem = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
              } catch {
                // not a problem document; the status alone is reported
              }
              reject(new ApiError(status, problem));
            });
            res.on('error', reject);
            return;
          }
          let bytes = 0;
          (async () => {
            for await (const chunk of res) {
              bytes += (chunk as Buffer).length;
              await sink(chunk as Buffer);
            }
          })().then(() => resolve(bytes), reject);
        },
      );
      this.#guard(req, reject);
      req.end();
    });
  }

  /** Sends raw bytes (application/octet-stream); `onProgress` hears of every chunk written. */
  async upload<T>(
    path: string,
    bytes: Buffer,
    onProgress?: (sent: number, total: number) => void,
  ): Promise<T> {
    const { status, text } = await this.#send('POST', path, { raw: bytes, onProgress });
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (cause) {
      throw new HeptadError('CLI_BAD_RESPONSE', `HTTP ${status} with a body that is not JSON`, { cause });
    }
    if (status >= 200 && status < 300) return json as T;
    throw new ApiError(
      status,
      typeof json === 'object' && json !== null ? (json as Record<string, unknown>) : {},
    );
  }

  /** Downloads bytes (up to `max`), or a coded ApiError. */
  async download(path: string, max = 128 * 1024 * 1024): Promise<Buffer> {
    const { status, bytes, text } = await this.#send('GET', path, { maxResponse: max });
    if (status >= 200 && status < 300) return bytes;
    let problem: Record<string, unknown> = {};
    try {
      problem = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not a problem document
    }
    throw new ApiError(status, problem);
  }

  /** A request's timeout and transport errors, as the CLI's codes (TLS trust apart). */
  #guard(req: http.ClientRequest, reject: (e: unknown) => void): void {
    req.on('timeout', () =>
      req.destroy(
        new HeptadError(
          'CLI_CONNECTION_FAILED',
          `no answer from ${this.#url.origin} within ${this.#timeoutMs} ms`,
        ),
      ),
    );
    req.on('error', (e: Error & { code?: string }) => {
      if (e instanceof HeptadError) return reject(e);
      if (e.code && TLS_TRUST_CODES.has(e.code))
        return reject(
          new HeptadError('CLI_TLS_UNTRUSTED', `${this.#url.origin}: ${e.message}`, { cause: e }),
        );
      reject(
        new HeptadError('CLI_CONNECTION_FAILED', `${this.#url.origin}: ${e.code ?? e.message}`, { cause: e }),
      );
    });
  }

  #send(
    method: string,
    path: string,
    o: {
      body?: unknown;
      raw?: Buffer;
      onProgress?: ((sent: number, total: number) => void) | undefined;
      maxResponse?: number;
    },
  ): Promise<{ status: number; text: string; bytes: Buffer }> {
    const target = new URL(path, this.#url);
    const payload = o.raw ?? (o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body)));
    const contentType = o.raw ? 'application/octet-stream' : 'application/json';
    const maxResponse = o.maxResponse ?? MAX_RESPONSE;
    const mod = target.protocol === 'https:' ? https : plainHttp();
    return new Promise((resolve, reject) => {
      const req = mod.request(
        target,
        {
          method,
          agent: this.#agent,
          headers: {
            authorization: `Bearer ${this.#token}`,
            accept: 'application/json, application/x-pem-file, application/octet-stream',
            ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}),
          },
          timeout: this.#timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > maxResponse) {
              req.destroy(new HeptadError('CLI_BAD_RESPONSE', 'response too large'));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => {
            const bytes = Buffer.concat(chunks);
            resolve({ status: res.statusCode ?? 0, text: bytes.toString('utf8'), bytes });
          });
          res.on('error', reject);
        },
      );
      this.#guard(req, reject);
      if (!payload) return req.end();
      // In chunks, with backpressure, so a progress bar can follow a large upload.
      const CHUNK = 256 * 1024;
      let sent = 0;
      const pump = () => {
        while (sent < payload.length) {
          const chunk = payload.subarray(sent, sent + CHUNK);
          sent += chunk.length;
          o.onProgress?.(sent, payload.length);
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
  }
}
