import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, deviceIdOf, issueServerCertificate } from '@heptad/protocol';
import { type Kysely, sql } from 'kysely';
import { createDatabase } from '../../../../test/support/postgres.ts';
import { buildApp } from '../../src/app.ts';
import type { ErrorReportOptions } from '../../src/error-reports/ingest.ts';
import type { App } from '../../src/http/deps.ts';
import { KeyStore } from '../../src/keys/key-store.ts';
import { connect } from '../../src/store/connect.ts';
import type { Database } from '../../src/store/schema.ts';
import { Store } from '../../src/store/store.ts';

export type BackendName = 'sqlite' | 'postgres';

/** The store backends every service suite runs on: SQLite always, PostgreSQL when the harness started one. */
export function backends(): BackendName[] {
  return process.env['HEPTAD_TEST_PG_URL'] ? ['sqlite', 'postgres'] : ['sqlite'];
}

let dbCounter = 0;

async function storeUrl(backend: BackendName, tag: string): Promise<{ url: string; cleanup: () => void }> {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'heptad-test-'));
    return { url: join(dir, 'heptad.sqlite'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const base = process.env['HEPTAD_TEST_PG_URL'];
  if (!base) throw new Error('HEPTAD_TEST_PG_URL is not set');
  dbCounter += 1;
  const name = `${tag.replace(/[^a-z0-9_]/g, '_')}_${process.pid}_${dbCounter}`;
  return { url: await createDatabase(base, name), cleanup: () => {} };
}

export interface CallOptions {
  token?: string | undefined;
  body?: unknown;
  /** sent as-is (for malformed bodies) */
  raw?: string | Buffer;
  headers?: Record<string, string>;
}

export interface CallResult {
  status: number;
  json: Record<string, unknown> & { code?: string; items?: Array<Record<string, unknown>> };
  headers: Record<string, unknown>;
  body: string;
}

export interface TestService {
  readonly backend: BackendName;
  readonly app: App;
  readonly store: Store;
  readonly db: Kysely<Database>;
  readonly operatorToken: string;
  /** with `https: true`: the listening service's URL and the CA its server certificate chains to */
  readonly url: string;
  readonly caPem: string;
  /** the service's key store: tests open a tenant CA's sealed key with it (`tenant-ca:<tenant>:<ca id>`) */
  readonly keys: KeyStore;
  /** the injected clock; tests move it */
  now: Date;
  call(method: string, url: string, options?: CallOptions): Promise<CallResult>;
  /** with `mqtt: true`: the embedded broker's port and the CA its TLS server certificate chains to */
  readonly mqtt: { readonly port: number; readonly caPem: string } | null;
  /** every row of every table, in a stable order: to assert that a refused request changed nothing */
  snapshot(): Promise<string>;
  close(): Promise<void>;
}

/** Every table, with a column that orders it stably, for snapshot(). */
const TABLES = {
  tenants: 'id',
  users: 'id',
  api_tokens: 'id',
  products: 'id',
  device_groups: 'id',
  devices: 'id',
  audit_events: 'seq',
  tenant_cas: 'id',
  used_nonces: 'nonce',
  device_certificates: 'serial',
  security_events: 'id',
  runtime_images: 'digest',
  tenant_image_keys: 'tenant_id',
  images: 'id',
  deployments: 'id',
  runtime_signers: 'key_id',
  runtime_releases: 'digest',
  device_capabilities: 'device_id',
  error_reports: 'id',
  error_buckets: 'id',
  device_update_status: 'device_id',
  tuf_repositories: 'tenant_id',
  tuf_keys: 'id',
  tuf_metadata: 'body',
} as const;

export async function createTestService(
  backend: BackendName,
  tag: string,
  options: {
    bodyLimit?: number;
    mqtt?: boolean;
    maxPacketSize?: number;
    https?: boolean;
    errorReports?: Partial<ErrorReportOptions>;
  } = {},
): Promise<TestService> {
  const { url, cleanup } = await storeUrl(backend, tag);
  const conn = await connect({ url });
  const store = new Store(conn.db, conn.dialect, conn.sync);
  const svc: TestService = {
    backend,
    now: new Date('2026-11-22T10:00:00.000Z'),
    app: undefined as unknown as App,
    store,
    db: conn.db,
    operatorToken: '',
    keys: new KeyStore(randomBytes(32)),
    mqtt: null,
    url: '',
    caPem: '',
    async call(method, path, o = {}) {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`;
      let payload: string | Buffer | undefined;
      if (o.raw !== undefined) payload = o.raw;
      else if (o.body !== undefined) {
        payload = JSON.stringify(o.body);
        headers['content-type'] ??= 'application/json';
      }
      if (o.raw !== undefined) headers['content-type'] ??= 'application/json';
      const r = await svc.app.inject({
        method: method as 'GET',
        url: path,
        headers,
        ...(payload !== undefined ? { payload } : {}),
      });
      let json: CallResult['json'] = {};
      try {
        json = r.body ? (JSON.parse(r.body) as CallResult['json']) : {};
      } catch {
        json = {};
      }
      return { status: r.statusCode, json, headers: r.headers, body: r.body };
    },
    async snapshot() {
      const parts: unknown[] = [];
      for (const [t, key] of Object.entries(TABLES)) {
        const rows = await conn.db
          .selectFrom(t as keyof typeof TABLES)
          .selectAll()
          .orderBy(sql.ref(key))
          .execute();
        parts.push([t, rows]);
      }
      return JSON.stringify(parts);
    },
    async close() {
      await svc.app.close();
      await conn.close();
      cleanup();
    },
  };
  const op = await store.platform().users.createOperatorIfMissing(svc.now);
  if (!op) throw new Error('operator already exists in a fresh store');
  (svc as { operatorToken: string }).operatorToken = op.token;
  let mqtt = null;
  let brokerCa = '';
  if (options.mqtt) {
    // The broker's TLS is checked against the real clock: its certificates are made now.
    const ca = await createCertificateAuthority({
      commonName: 'Test Platform CA',
      now: new Date(),
      validityDays: 2,
    });
    const server = await issueServerCertificate({
      ca,
      hosts: ['127.0.0.1', 'localhost'],
      now: new Date(),
      validityDays: 2,
    });
    brokerCa = ca.certPem;
    mqtt = {
      host: '127.0.0.1',
      port: 0,
      tls: { key: server.keyPem, cert: server.certPem },
      ...(options.maxPacketSize !== undefined ? { maxPacketSize: options.maxPacketSize } : {}),
    };
  }
  let https: { key: string; cert: string } | null = null;
  if (options.https) {
    // The server certificate follows the real clock (the client checks it); the service clock is the test's.
    const now = new Date(Date.now() - 86_400_000);
    const ca = await createCertificateAuthority({ commonName: 'Test Platform CA', now, validityDays: 30 });
    const server = await issueServerCertificate({
      ca,
      hosts: ['127.0.0.1', 'localhost'],
      now,
      validityDays: 30,
    });
    https = { key: server.keyPem, cert: `${server.certPem.trim()}\n${ca.certPem.trim()}\n` };
    (svc as { caPem: string }).caPem = ca.certPem;
  }
  (svc as { app: App }).app = await buildApp({
    store,
    clock: () => svc.now,
    https,
    keys: svc.keys,
    ...(options.bodyLimit !== undefined ? { bodyLimit: options.bodyLimit } : {}),
    mqtt,
    ...(options.errorReports ? { errorReports: options.errorReports } : {}),
  });
  await svc.app.ready();
  if (svc.app.broker)
    (svc as { mqtt: TestService['mqtt'] }).mqtt = { port: svc.app.broker.port, caPem: brokerCa };
  if (options.https) {
    await svc.app.listen({ host: '127.0.0.1', port: 0 });
    const address = svc.app.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    (svc as { url: string }).url = `https://127.0.0.1:${port}`;
  }
  return svc;
}

export interface SeededTenant {
  id: string;
  name: string;
  tokens: { Administrator: string; Contributor: string; Reader: string };
}

let seq = 0;
/** A tenant with one user per role. */
export async function seedTenant(svc: TestService, name = `Tenant ${++seq}`): Promise<SeededTenant> {
  const t = await svc.call('POST', '/v1/tenants', { token: svc.operatorToken, body: { name } });
  if (t.status !== 201) throw new Error(`seed tenant: ${t.status} ${t.body}`);
  const id = String(t.json['id']);
  const tokens = {} as SeededTenant['tokens'];
  for (const role of ['Administrator', 'Contributor', 'Reader'] as const) {
    const u = await svc.call('POST', '/v1/users', {
      token: svc.operatorToken,
      body: { email: `${role.toLowerCase()}.${seq}.${id.slice(0, 8)}@example.com`, role, tenantId: id },
    });
    if (u.status !== 201) throw new Error(`seed user: ${u.status} ${u.body}`);
    tokens[role] = String(u.json['token']);
  }
  return { id, name, tokens };
}

export interface TestDevice {
  id: string;
  publicKeyPem: string;
}

export function makeDevice(): TestDevice {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    id: deviceIdOf(publicKey),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

export async function registerDevice(svc: TestService, device = makeDevice()): Promise<TestDevice> {
  const r = await svc.call('POST', '/v1/devices', {
    token: svc.operatorToken,
    body: { id: device.id, publicKey: device.publicKeyPem, rotKind: 'soft' },
  });
  if (r.status !== 201) throw new Error(`register: ${r.status} ${r.body}`);
  return device;
}
