import https from 'node:https';
import type { TestService } from './service.ts';
import { createSoftDevice, type SoftDevice, wire } from './soft-device.ts';

/** A claimed soft device that attested and holds its 24 h certificate and TLS key. */
export interface CertifiedDevice {
  readonly device: SoftDevice;
  readonly id: string;
  readonly serial: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface TlsCallResult {
  status: number;
  json: Record<string, unknown> & { code?: string; errors?: Array<{ field: string; problem: string }> };
  headers: Record<string, unknown>;
  body: string;
}

/** Registers, claims (with `claimToken`) and attests a soft device; returns its credential. */
export async function certifiedDevice(svc: TestService, claimToken: string): Promise<CertifiedDevice> {
  const device = await createSoftDevice(svc, { claimToken });
  const evidence = await device.evidence(await device.challenge());
  const r = await svc.call('POST', '/v1/attestation/evidence', { body: wire(evidence) });
  if (r.status !== 201) throw new Error(`attest: ${r.status} ${r.body}`);
  const cert = r.json['certificate'] as { chainPem: string; serial: string };
  return {
    device,
    id: device.id,
    serial: cert.serial,
    certPem: cert.chainPem,
    keyPem: evidence.tlsKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/**
 * One HTTPS request to the listening test service, optionally with a client certificate, on a
 * fresh connection (no agent: each call is its own TLS handshake).
 */
export function tlsCall(
  svc: TestService,
  method: string,
  path: string,
  opts: { cert?: string; key?: string; body?: unknown; raw?: string; token?: string } = {},
): Promise<TlsCallResult> {
  const payload =
    opts.raw !== undefined
      ? Buffer.from(opts.raw)
      : opts.body === undefined
        ? undefined
        : Buffer.from(JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(path, svc.url),
      {
        method,
        agent: false,
        ca: svc.caPem,
        ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}),
        headers: {
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json: TlsCallResult['json'] = {};
          try {
            json = body ? (JSON.parse(body) as TlsCallResult['json']) : {};
          } catch {
            json = {};
          }
          resolve({ status: res.statusCode ?? 0, json, headers: res.headers, body });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
