// The security service for update benchmarks: `heptad serve` as its own process (pinned to a
// core), API calls as the operator or a tenant admin, and a tenant with attested soft devices and
// a deployed image of a given size. Used by bench/updates.ts and bench/update-resume.ts.
import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import https from 'node:https';
import { join, resolve } from 'node:path';
import { SoftRootOfTrust } from '../../packages/device/src/index.ts';
import {
  attestationBinding,
  buildPackage,
  createCsr,
  DEFAULT_MEASUREMENT_PCR,
  deviceIdOf,
} from '../../packages/protocol/src/index.ts';
import { spawnServe } from './serve.ts';

const _ROOT = resolve(import.meta.dirname, '../..');

export interface Serve {
  child: ChildProcess;
  url: string;
  token: string;
  ca: string;
  db: string;
}

export async function startServe(data: string, children: ChildProcess[], core = '0'): Promise<Serve> {
  const args = ['packages/cli/src/main.ts', 'serve', '--data', data, '--listen', '127.0.0.1:0'];
  args.push('--mqtt-listen', 'off', '--log-level', 'warn', '--output', 'json');
  // BENCH_NODE_ARGS: extra Node flags for the service, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = process.env['BENCH_NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
  const served = await spawnServe('taskset', ['-c', core, process.execPath, ...nodeArgs, ...args], children);
  return {
    ...served,
    db: join(data, 'heptad.sqlite'),
  };
}

export function request(
  s: Serve,
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
  tls?: { cert: string; key: string },
): Promise<{ status: number; body: Buffer }> {
  const payload =
    body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  return new Promise((res, rej) => {
    const req = https.request(
      new URL(path, s.url),
      {
        method,
        ca: s.ca,
        ...(tls ?? {}),
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload
            ? {
                'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json',
                'content-length': payload.length,
              }
            : {}),
        },
      },
      (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => res({ status: r.statusCode ?? 0, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', rej);
    req.end(payload);
  });
}

export async function api(s: Serve, token: string | null, method: string, path: string, body?: unknown) {
  const r = await request(s, token, method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body.toString().slice(0, 300)}`);
  return JSON.parse(r.body.toString() || '{}') as Record<string, unknown>;
}

/** The tenant, its group, `certified` attested devices in it (their state under `dir`), a deployed image of `mb` MB. */
export async function setup(s: Serve, o: { dir: string; certified: number; imageMb: number }) {
  const tenant = await api(s, s.token, 'POST', '/v1/tenants', { name: 'Bench' });
  const admin = String(
    (
      await api(s, s.token, 'POST', '/v1/users', {
        email: 'bench@example.com',
        role: 'Administrator',
        tenantId: tenant['id'],
      })
    )['token'],
  );
  await api(s, admin, 'POST', '/v1/products', { name: 'DW100' });
  const group = 'DW100/Field Test';
  const devices: Array<{ certPem: string; keyPem: string }> = [];
  for (let i = 0; i < o.certified; i++) {
    const rot = SoftRootOfTrust.create(join(o.dir, `dev${i}`));
    const key = await rot.identityPublicKey();
    const id = deviceIdOf(key);
    await api(s, s.token, 'POST', '/v1/devices', {
      id,
      publicKey: key.export({ format: 'pem', type: 'spki' }),
      rotKind: 'soft',
      measurementPcr: DEFAULT_MEASUREMENT_PCR,
    });
    await api(s, admin, 'POST', '/v1/devices/claim', { deviceIds: [id], deviceGroup: group });
    const { nonce } = (await api(s, null, 'POST', '/v1/attestation/challenge', { deviceId: id })) as {
      nonce: string;
    };
    const tls = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const csr = createCsr({ privateKey: tls.privateKey, subjectCommonName: id });
    const quote = await rot.quote(attestationBinding(Buffer.from(nonce, 'hex'), csr), [
      DEFAULT_MEASUREMENT_PCR,
    ]);
    const cert = (await api(s, null, 'POST', '/v1/attestation/evidence', {
      deviceId: id,
      nonce,
      quote: { attest: quote.attest.toString('base64'), signature: quote.signature.toString('base64') },
      log: [],
      csr: csr.toString('base64'),
    })) as { certificate: { chainPem: string } };
    devices.push({
      certPem: cert.certificate.chainPem,
      keyPem: tls.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    });
  }
  const componentId = randomUUID();
  const imageId = randomUUID();
  const pkg = buildPackage({
    manifest: {
      componentId,
      imageId,
      name: 'big',
      version: '1.0.0',
      securityVersion: 1,
      type: 'application',
      entryPoint: 'main.js',
      createdAt: new Date().toISOString(),
      appManifest: {
        SchemaVersion: 1,
        Name: 'big',
        ComponentId: componentId,
        EntryPoint: 'main.js',
        Capabilities: {},
      },
    },
    files: [
      { path: 'main.js', content: Buffer.from('export {};\n') },
      { path: 'payload.bin', content: randomBytes(o.imageMb * 1_000_000) },
    ],
    signers: [{ privateKey: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey }],
  });
  await api(s, admin, 'POST', '/v1/images', pkg);
  await api(s, admin, 'POST', '/v1/deployments', { deviceGroup: group, imageIds: [imageId] });
  const trust = await request(s, admin, 'GET', '/v1/tenants/current/ca-certificates/trust-bundle');
  return {
    devices,
    admin,
    imageId,
    componentId,
    tenantId: String(tenant['id']),
    trustPem: trust.body.toString(),
  };
}
