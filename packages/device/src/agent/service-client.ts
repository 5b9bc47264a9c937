import type http from 'node:http';
import https from 'node:https';
import { HeptadError } from '@heptad/protocol';

/** An answer the service refused with (problem+json): its stable code travels on. */
export class ServiceRefusal extends Error {
  readonly code: string;
  readonly status: number;
  /** the problem's `errors`: one entry per bad field (e.g. `reports/3/at`) */
  readonly fields: ReadonlyArray<{ field: string; problem: string }>;
  /** from a Retry-After header (429), in ms */
  readonly retryAfterMs: number | undefined;
  constructor(
    status: number,
    code: string,
    message: string,
    extra: { fields?: ReadonlyArray<{ field: string; problem: string }>; retryAfterMs?: number } = {},
  ) {
    super(message);
    this.code = code;
    this.status = status;
    this.fields = extra.fields ?? [];
    this.retryAfterMs = extra.retryAfterMs;
  }
}

/** The device certificate (chain) and its TLS key, for mTLS to device routes. */
export interface ClientCertificate {
  readonly chainPem: string;
  readonly keyPem: string;
}

const MAX_RESPONSE = 1024 * 1024;

/**
 * node:http only for a plain-HTTP service (loopback development). Taken with getBuiltinModule, not
 * an ES import: evaluating node:http's ES namespace loads Node's bundled undici (for its lazy
 * WebSocket export), about 8 MB of memory on every device that never uses it.
 */
const plainHttp = (): typeof http => process.getBuiltinModule('node:http') as typeof http;

/** The device's small JSON-over-HTTPS client: trusts only the platform CA given at manufacture. */
export class DeviceServiceClient {
  readonly #base: URL;
  readonly #agent: http.Agent;
  readonly #timeoutMs: number;

  /** `clientCertificate`: present the device certificate (mTLS), as device routes require. */
  constructor(
    serviceUrl: string,
    caPem: string | undefined,
    timeoutMs = 15_000,
    clientCertificate?: ClientCertificate,
  ) {
    this.#base = new URL(serviceUrl);
    this.#timeoutMs = timeoutMs;
    this.#agent =
      this.#base.protocol === 'https:'
        ? new https.Agent({
            keepAlive: true,
            ...(caPem ? { ca: caPem } : {}),
            ...(clientCertificate ? { cert: clientCertificate.chainPem, key: clientCertificate.keyPem } : {}),
          })
        : new (plainHttp().Agent)({ keepAlive: true });
  }

  close(): void {
    this.#agent.destroy();
  }

  post<T>(path: string, body: unknown): Promise<T> {
    const target = new URL(path, this.#base);
    const payload = Buffer.from(JSON.stringify(body));
    const mod = target.protocol === 'https:' ? https : plainHttp();
    return new Promise<T>((resolve, reject) => {
      const req = mod.request(
        target,
        {
          method: 'POST',
          agent: this.#agent,
          timeout: this.#timeoutMs,
          headers: {
            'content-type': 'application/json',
            'content-length': payload.length,
            accept: 'application/json',
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE)
              req.destroy(new HeptadError('DEVICE_SERVICE_UNREACHABLE', 'response too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            let json: Record<string, unknown>;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
            } catch (cause) {
              return reject(
                new HeptadError('DEVICE_SERVICE_UNREACHABLE', 'the service sent no JSON', { cause }),
              );
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(json as T);
            const retryAfter = Number(res.headers['retry-after']);
            const fields = Array.isArray(json['errors'])
              ? (json['errors'] as Array<Record<string, unknown>>).map((f) => ({
                  field: String(f['field']),
                  problem: String(f['problem']),
                }))
              : [];
            reject(
              new ServiceRefusal(
                status,
                String(json['code'] ?? `HTTP_${status}`),
                String(json['detail'] ?? json['title'] ?? ''),
                {
                  fields,
                  ...(Number.isFinite(retryAfter) && retryAfter >= 0
                    ? { retryAfterMs: retryAfter * 1000 }
                    : {}),
                },
              ),
            );
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(new HeptadError('DEVICE_SERVICE_UNREACHABLE', `no answer within ${this.#timeoutMs} ms`)),
      );
      req.on('error', (e: Error & { code?: string }) =>
        reject(
          e instanceof HeptadError
            ? e
            : new HeptadError('DEVICE_SERVICE_UNREACHABLE', `${this.#base.origin}: ${e.code ?? e.message}`, {
                cause: e,
              }),
        ),
      );
      req.end(payload);
    });
  }
}
