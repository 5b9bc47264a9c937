import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_ERROR_REPORT_OPTIONS, prepareBatch } from '../src/error-reports/ingest.ts';
import { appPackage, octet } from './support/images.ts';
import {
  backends,
  createTestService,
  makeDevice,
  registerDevice,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';
import { createSoftDevice, type SoftDevice, wire } from './support/soft-device.ts';

/**
 * The route × role table. Each row states who may call the route (written out here, not read
 * from the code, so a wrong access rule in a route fails this test) and how a tenant user of
 * ANOTHER tenant fares: 'notFound' (the resource is invisible) or 'own' (the call acts on, or
 * lists, the caller's own tenant only).
 */
type Min = 'public' | 'device' | 'operator' | 'Reader' | 'Contributor' | 'Administrator';
interface Row {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  route: string;
  min: Min;
  operatorToo?: boolean;
  wrongTenant?: 'notFound' | 'own';
  prepare(
    f: Fixture,
  ): Promise<{ url: string; body?: unknown; raw?: Buffer; headers?: Record<string, string> }>;
}
interface Fixture {
  svc: TestService;
  a: SeededTenant;
  productId: string;
  deviceId: string;
  /** a bucket of tenant A holding one report */
  bucketId: string;
  /** a fresh soft-RoT device, registered and claimed by tenant A */
  softDevice(): Promise<SoftDevice>;
}

const uniq = () => randomUUID().slice(0, 8);

const platformKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
let releaseCount = 0;
const platformRuntime = () =>
  appPackage({
    type: 'runtime',
    name: 'heptad-runtime',
    version: `1.0.${++releaseCount}`,
    securityVersion: 1,
    key: platformKey.privateKey,
  });

async function ensurePlatformSigner(f: Fixture): Promise<void> {
  const r = await f.svc.call('POST', '/v1/runtime-signers', {
    token: f.svc.operatorToken,
    body: { publicKeyPem: platformKey.publicKey.export({ format: 'pem', type: 'spki' }).toString() },
  });
  assert.ok(r.status === 201 || r.json.code === 'RUNTIME_SIGNER_EXISTS', r.body);
}

/** Publishes a fresh platform-signed runtime (retail-eval); returns its digest. */
async function publishRelease(f: Fixture): Promise<string> {
  await ensurePlatformSigner(f);
  const r = await f.svc.call('POST', '/v1/runtime-releases', {
    token: f.svc.operatorToken,
    raw: platformRuntime(),
    headers: octet,
  });
  assert.equal(r.status, 201, r.body);
  return String(r.json['digest']);
}

/** A fresh device, registered and claimed by tenant A. */
async function claimedDevice(f: Fixture): Promise<string> {
  const d = await registerDevice(f.svc);
  const r = await f.svc.call('POST', '/v1/devices/claim', {
    token: f.a.tokens.Administrator,
    body: { deviceIds: [d.id] },
  });
  assert.ok(r.status < 300, r.body);
  return d.id;
}

/** The id of a device group of tenant A's product. */
async function groupOf(f: Fixture): Promise<string> {
  const r = await f.svc.call('GET', `/v1/device-groups?product=${f.productId}`, { token: f.a.tokens.Reader });
  assert.equal(r.status, 200, r.body);
  return String(r.json.items?.[0]?.['id']);
}

/** Uploads a fresh application image as tenant A's Contributor; returns its id. */
async function uploadImage(f: Fixture): Promise<string> {
  const r = await f.svc.call('POST', '/v1/images', {
    token: f.a.tokens.Contributor,
    raw: appPackage(),
    headers: octet,
  });
  assert.equal(r.status, 201, r.body);
  return String(r.json['id']);
}

const ROWS: Row[] = [
  { method: 'GET', route: '/healthz', min: 'public', prepare: async () => ({ url: '/healthz' }) },
  { method: 'GET', route: '/readyz', min: 'public', prepare: async () => ({ url: '/readyz' }) },
  { method: 'GET', route: '/metrics', min: 'operator', prepare: async () => ({ url: '/metrics' }) },
  {
    method: 'POST',
    route: '/v1/tenants',
    min: 'operator',
    prepare: async () => ({ url: '/v1/tenants', body: { name: `T ${uniq()}` } }),
  },
  {
    method: 'GET',
    route: '/v1/tenants',
    min: 'Reader',
    operatorToo: true,
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tenants' }),
  },
  {
    method: 'GET',
    route: '/v1/tenants/current',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tenants/current' }),
  },
  {
    method: 'GET',
    route: '/v1/tenants/{tenantId}',
    min: 'Reader',
    operatorToo: true,
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/tenants/${f.a.id}` }),
  },
  {
    method: 'POST',
    route: '/v1/users',
    min: 'Administrator',
    operatorToo: true,
    wrongTenant: 'notFound',
    prepare: async (f) => ({
      url: '/v1/users',
      body: { email: `${uniq()}@example.com`, role: 'Reader', tenantId: f.a.id },
    }),
  },
  {
    method: 'GET',
    route: '/v1/users',
    min: 'Administrator',
    operatorToo: true,
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/users' }),
  },
  {
    method: 'POST',
    route: '/v1/products',
    min: 'Contributor',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/products', body: { name: `P ${uniq()}` } }),
  },
  {
    method: 'GET',
    route: '/v1/products',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/products' }),
  },
  {
    method: 'GET',
    route: '/v1/products/{product}',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/products/${f.productId}` }),
  },
  {
    method: 'PATCH',
    route: '/v1/products/{product}',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/products/${f.productId}`, body: { description: uniq() } }),
  },
  {
    method: 'DELETE',
    route: '/v1/products/{product}',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async (f) => {
      const p = await f.svc.call('POST', '/v1/products', {
        token: f.a.tokens.Administrator,
        body: { name: `D ${uniq()}` },
      });
      return { url: `/v1/products/${p.json['id']}` };
    },
  },
  {
    method: 'POST',
    route: '/v1/device-groups',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: '/v1/device-groups', body: { product: f.productId, name: `G ${uniq()}` } }),
  },
  {
    method: 'GET',
    route: '/v1/device-groups',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/device-groups' }),
  },
  {
    method: 'GET',
    route: '/v1/device-groups/{deviceGroup}',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async () => ({ url: '/v1/device-groups/Matrix%2FField%20Test' }),
  },
  {
    method: 'PATCH',
    route: '/v1/device-groups/{deviceGroup}',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async () => ({ url: '/v1/device-groups/Matrix%2FProduction', body: { description: uniq() } }),
  },
  {
    method: 'DELETE',
    route: '/v1/device-groups/{deviceGroup}',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async (f) => {
      const g = await f.svc.call('POST', '/v1/device-groups', {
        token: f.a.tokens.Administrator,
        body: { product: f.productId, name: `X ${uniq()}` },
      });
      return { url: `/v1/device-groups/${g.json['id']}` };
    },
  },
  {
    method: 'POST',
    route: '/v1/devices',
    min: 'operator',
    prepare: async () => {
      const d = makeDevice();
      return { url: '/v1/devices', body: { id: d.id, publicKey: d.publicKeyPem } };
    },
  },
  {
    method: 'POST',
    route: '/v1/devices/claim',
    min: 'Contributor',
    wrongTenant: 'own',
    prepare: async (f) => ({
      url: '/v1/devices/claim',
      body: { deviceIds: [(await registerDevice(f.svc)).id] },
    }),
  },
  {
    method: 'GET',
    route: '/v1/devices',
    min: 'Reader',
    operatorToo: true,
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/devices' }),
  },
  {
    method: 'GET',
    route: '/v1/devices/{deviceId}',
    min: 'Reader',
    operatorToo: true,
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/devices/${f.deviceId}` }),
  },
  {
    method: 'PATCH',
    route: '/v1/devices/{deviceId}',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/devices/${f.deviceId}`, body: { deviceGroup: 'Matrix/Field Test' } }),
  },
  {
    method: 'POST',
    route: '/v1/devices/{deviceId}/unclaim',
    min: 'operator',
    prepare: async (f) => {
      const d = await registerDevice(f.svc);
      await f.svc.call('POST', '/v1/devices/claim', {
        token: f.a.tokens.Administrator,
        body: { deviceIds: [d.id] },
      });
      return { url: `/v1/devices/${d.id}/unclaim` };
    },
  },
  {
    method: 'GET',
    route: '/v1/audit',
    min: 'Administrator',
    operatorToo: true,
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/audit' }),
  },
  {
    method: 'POST',
    route: '/v1/attestation/challenge',
    min: 'public',
    prepare: async (f) => ({
      url: '/v1/attestation/challenge',
      body: { deviceId: (await f.softDevice()).id },
    }),
  },
  {
    method: 'POST',
    route: '/v1/attestation/evidence',
    min: 'public',
    prepare: async (f) => {
      const d = await f.softDevice();
      return { url: '/v1/attestation/evidence', body: wire(await d.evidence(await d.challenge())) };
    },
  },
  {
    method: 'GET',
    route: '/v1/tenants/current/ca-certificates',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tenants/current/ca-certificates' }),
  },
  {
    method: 'GET',
    route: '/v1/tenants/current/ca-certificates/trust-bundle',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tenants/current/ca-certificates/trust-bundle?chain=true' }),
  },
  {
    method: 'POST',
    route: '/v1/tenants/current/ca-certificates/rotate',
    min: 'Administrator',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tenants/current/ca-certificates/rotate', body: { overlapDays: 0 } }),
  },
  {
    method: 'GET',
    route: '/v1/tenants/current/crl',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tenants/current/crl' }),
  },
  {
    method: 'GET',
    route: '/pki/tenants/{tenantId}/crl.pem',
    min: 'public',
    prepare: async (f) => ({ url: `/pki/tenants/${f.a.id}/crl.pem` }),
  },
  {
    method: 'GET',
    route: '/v1/security-events',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/security-events' }),
  },
  {
    method: 'POST',
    route: '/v1/images',
    min: 'Contributor',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/images', raw: appPackage(), headers: octet }),
  },
  {
    method: 'GET',
    route: '/v1/images',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/images' }),
  },
  {
    method: 'GET',
    route: '/v1/images/{id}',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/images/${await uploadImage(f)}` }),
  },
  {
    method: 'GET',
    route: '/v1/images/{id}/content',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/images/${await uploadImage(f)}/content` }),
  },
  {
    method: 'GET',
    route: '/v1/tenants/current/image-signing-key',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tenants/current/image-signing-key' }),
  },
  {
    method: 'POST',
    route: '/v1/deployments',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async (f) => ({
      url: '/v1/deployments',
      body: { deviceGroup: await groupOf(f), imageIds: [await uploadImage(f)] },
    }),
  },
  {
    method: 'GET',
    route: '/v1/deployments',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/deployments?deviceGroup=${await groupOf(f)}` }),
  },
  {
    method: 'GET',
    route: '/v1/deployments/{id}',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => {
      const r = await f.svc.call('POST', '/v1/deployments', {
        token: f.a.tokens.Contributor,
        body: { deviceGroup: await groupOf(f), imageIds: [await uploadImage(f)] },
      });
      assert.equal(r.status, 201, r.body);
      return { url: `/v1/deployments/${r.json['id']}` };
    },
  },
  {
    method: 'GET',
    route: '/v1/deployments/{id}/progress',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => {
      const r = await f.svc.call('POST', '/v1/deployments', {
        token: f.a.tokens.Contributor,
        body: { deviceGroup: await groupOf(f), imageIds: [await uploadImage(f)] },
      });
      assert.equal(r.status, 201, r.body);
      return { url: `/v1/deployments/${r.json['id']}/progress` };
    },
  },
  {
    method: 'POST',
    route: '/v1/runtime-signers',
    min: 'operator',
    prepare: async () => ({
      url: '/v1/runtime-signers',
      body: {
        publicKeyPem: generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
          .publicKey.export({ format: 'pem', type: 'spki' })
          .toString(),
      },
    }),
  },
  {
    method: 'GET',
    route: '/v1/runtime-signers',
    min: 'Reader',
    operatorToo: true,
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/runtime-signers' }),
  },
  {
    method: 'POST',
    route: '/v1/runtime-releases',
    min: 'operator',
    prepare: async (f) => {
      await ensurePlatformSigner(f);
      return { url: '/v1/runtime-releases', raw: platformRuntime(), headers: octet };
    },
  },
  {
    method: 'GET',
    route: '/v1/runtime-releases',
    min: 'Reader',
    operatorToo: true,
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/runtime-releases' }),
  },
  {
    method: 'POST',
    route: '/v1/runtime-releases/{ref}/promote',
    min: 'operator',
    prepare: async (f) => ({
      url: `/v1/runtime-releases/${await publishRelease(f)}/promote`,
      body: { feed: 'retail' },
    }),
  },
  {
    method: 'POST',
    route: '/v1/runtime-releases/{ref}/withdraw',
    min: 'operator',
    prepare: async (f) => ({ url: `/v1/runtime-releases/${await publishRelease(f)}/withdraw` }),
  },
  {
    method: 'GET',
    route: '/v1/runtime-releases/{ref}/content',
    min: 'Reader',
    operatorToo: true,
    wrongTenant: 'own',
    prepare: async (f) => ({ url: `/v1/runtime-releases/${await publishRelease(f)}/content` }),
  },
  {
    method: 'GET',
    route: '/v1/device-groups/{deviceGroup}/runtime',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => {
      const digest = await publishRelease(f);
      await f.svc.call('POST', `/v1/runtime-releases/${digest}/promote`, {
        token: f.svc.operatorToken,
        body: { feed: 'retail' },
      });
      return { url: `/v1/device-groups/${await groupOf(f)}/runtime` };
    },
  },
  {
    method: 'GET',
    route: '/v1/devices/{deviceId}/capabilities',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/devices/${f.deviceId}/capabilities` }),
  },
  {
    method: 'POST',
    route: '/v1/devices/{deviceId}/capabilities',
    min: 'Administrator',
    wrongTenant: 'notFound',
    prepare: async (f) => ({
      url: `/v1/devices/${await claimedDevice(f)}/capabilities`,
      body: { capability: 'appDevelopment' },
    }),
  },
  {
    method: 'DELETE',
    route: '/v1/devices/{deviceId}/capabilities/{capability}',
    min: 'Administrator',
    wrongTenant: 'notFound',
    prepare: async (f) => {
      const id = await claimedDevice(f);
      const r = await f.svc.call('POST', `/v1/devices/${id}/capabilities`, {
        token: f.a.tokens.Administrator,
        body: { capability: 'fieldServicing' },
      });
      assert.equal(r.status, 201, r.body);
      return { url: `/v1/devices/${id}/capabilities/fieldServicing` };
    },
  },
  {
    method: 'POST',
    route: '/v1/runtime-images',
    min: 'operator',
    prepare: async () => ({
      url: '/v1/runtime-images',
      body: { digest: randomBytes(32).toString('hex'), version: '1.0.0', securityVersion: 1 },
    }),
  },
  {
    method: 'GET',
    route: '/v1/runtime-images',
    min: 'Reader',
    operatorToo: true,
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/runtime-images' }),
  },
  {
    method: 'POST',
    route: '/v1/devices/{deviceId}/quarantine',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/devices/${f.deviceId}/quarantine`, body: { reason: 'matrix' } }),
  },
  {
    method: 'DELETE',
    route: '/v1/devices/{deviceId}/quarantine',
    min: 'Contributor',
    wrongTenant: 'notFound',
    prepare: async (f) => {
      const d = await registerDevice(f.svc);
      await f.svc.call('POST', '/v1/devices/claim', {
        token: f.a.tokens.Administrator,
        body: { deviceIds: [d.id] },
      });
      await f.svc.call('POST', `/v1/devices/${d.id}/quarantine`, {
        token: f.a.tokens.Administrator,
        body: {},
      });
      return { url: `/v1/devices/${d.id}/quarantine` };
    },
  },
  // Device routes take no token, whoever's: only a tenant-CA client certificate over mTLS
  // (device-auth.test.ts covers the certificate cases on a real TLS listener).
  {
    method: 'POST',
    route: '/v1/device/error-reports',
    min: 'device',
    prepare: async () => ({ url: '/v1/device/error-reports', body: { reports: [] } }),
  },
  {
    method: 'GET',
    route: '/v1/devices/{deviceId}/update-status',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/devices/${f.deviceId}/update-status` }),
  },
  {
    method: 'GET',
    route: '/v1/device/image-keys',
    min: 'device',
    prepare: async () => ({ url: '/v1/device/image-keys' }),
  },
  {
    method: 'POST',
    route: '/v1/device/update-status',
    min: 'device',
    prepare: async () => ({ url: '/v1/device/update-status', body: { statuses: [] } }),
  },
  {
    method: 'GET',
    route: '/v1/device/tuf/image/metadata/{file}',
    min: 'device',
    prepare: async () => ({ url: '/v1/device/tuf/image/metadata/timestamp.json' }),
  },
  {
    method: 'GET',
    route: '/v1/device/tuf/director/metadata/{file}',
    min: 'device',
    prepare: async () => ({ url: '/v1/device/tuf/director/metadata/1.root.json' }),
  },
  {
    method: 'GET',
    route: '/v1/device/tuf/image/targets/{*}',
    min: 'device',
    prepare: async () => ({
      url: `/v1/device/tuf/image/targets/runtime/${'a'.repeat(64)}.${randomUUID()}.hpkg`,
    }),
  },
  // Update metadata as devices get it, for operators of the tenant (debugging).
  {
    method: 'GET',
    route: '/v1/tuf/image/metadata/{file}',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tuf/image/metadata/timestamp.json' }),
  },
  {
    method: 'GET',
    route: '/v1/tuf/director/{deviceGroup}/metadata/{file}',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/tuf/director/${await groupOf(f)}/metadata/root.json` }),
  },
  {
    method: 'POST',
    route: '/v1/tenants/current/tuf-keys/rotate',
    min: 'Administrator',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/tenants/current/tuf-keys/rotate', body: { role: 'timestamp' } }),
  },
  {
    method: 'GET',
    route: '/v1/error-reports/buckets',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/error-reports/buckets' }),
  },
  {
    method: 'GET',
    route: '/v1/error-reports/buckets/{bucketId}',
    min: 'Reader',
    wrongTenant: 'notFound',
    prepare: async (f) => ({ url: `/v1/error-reports/buckets/${f.bucketId}` }),
  },
  {
    method: 'GET',
    route: '/v1/error-reports/export',
    min: 'Reader',
    wrongTenant: 'own',
    prepare: async () => ({ url: '/v1/error-reports/export?format=json' }),
  },
];

const RANK: Record<string, number> = { Reader: 1, Contributor: 2, Administrator: 3 };
type Caller =
  | 'anonymous'
  | 'invalid'
  | 'expired'
  | 'operator'
  | 'Administrator'
  | 'Contributor'
  | 'Reader'
  | 'otherTenant';
const CALLERS: Caller[] = [
  'anonymous',
  'invalid',
  'expired',
  'operator',
  'Administrator',
  'Contributor',
  'Reader',
  'otherTenant',
];

/** Expected outcome: 'ok' (2xx), or the error code. */
function expected(row: Row, caller: Caller): string {
  if (row.min === 'public') return 'ok';
  if (row.min === 'device') return 'AUTH_DEVICE_CERT_MISSING';
  if (caller === 'anonymous') return 'AUTH_TOKEN_MISSING';
  if (caller === 'invalid') return 'AUTH_TOKEN_INVALID';
  if (caller === 'expired') return 'AUTH_TOKEN_EXPIRED';
  if (caller === 'operator') {
    if (row.min === 'operator' || row.operatorToo) return 'ok';
    return 'AUTH_TENANT_REQUIRED';
  }
  if (row.min === 'operator') return 'AUTH_OPERATOR_REQUIRED';
  const role = caller === 'otherTenant' ? 'Administrator' : caller;
  if ((RANK[role] ?? 0) < (RANK[row.min] ?? 99)) return 'AUTH_ROLE_INSUFFICIENT';
  if (caller === 'otherTenant' && row.wrongTenant === 'notFound') return 'not-found';
  return 'ok';
}

for (const backend of backends()) {
  describe(`authorization matrix on ${backend}`, () => {
    let svc: TestService;
    let f: Fixture;
    let b: SeededTenant;
    let expiredToken: string;
    before(async () => {
      svc = await createTestService(backend, 'authz');
      const a = await seedTenant(svc, 'Matrix A');
      b = await seedTenant(svc, 'Matrix B');
      const p = await svc.call('POST', '/v1/products', {
        token: a.tokens.Administrator,
        body: { name: 'Matrix' },
      });
      const d = await registerDevice(svc);
      await svc.call('POST', '/v1/devices/claim', {
        token: a.tokens.Administrator,
        body: { deviceIds: [d.id] },
      });
      const soft: SoftDevice[] = [];
      cleanups.push(() => {
        for (const x of soft) x.cleanup();
      });
      // A report stored for tenant A's device, straight through the store (no TLS in this suite).
      const { prepared } = prepareBatch(
        { deviceId: d.id, tenantId: a.id, serial: '01', notAfter: '', deviceGroupId: null },
        [
          {
            id: randomUUID(),
            componentId: randomUUID(),
            bootId: randomUUID(),
            at: svc.now.toISOString(),
            kind: 'app-exit',
            count: 1,
            details: { exitCode: 1 },
          },
        ],
        svc.now,
        DEFAULT_ERROR_REPORT_OPTIONS,
      );
      await svc.store
        .forTenant(a.id)
        .errorReports.ingest({ deviceId: d.id, deviceGroupId: null }, prepared, svc.now);
      f = {
        svc,
        a,
        productId: String(p.json['id']),
        deviceId: d.id,
        bucketId: prepared[0]?.bucketId ?? '',
        softDevice: async () => {
          const x = await createSoftDevice(svc, { claimToken: a.tokens.Administrator });
          soft.push(x);
          return x;
        },
      };
      // An Administrator token that lives one day; the 'expired' caller uses it two days later.
      const u = await svc.call('POST', '/v1/users', {
        token: a.tokens.Administrator,
        body: { email: 'expiring@example.com', role: 'Administrator', expiresInDays: 1 },
      });
      expiredToken = String(u.json['token']);
    });
    const cleanups: Array<() => void> = [];
    after(async () => {
      for (const c of cleanups) c();
      await svc.close();
    });

    test('the table covers every route the service serves', async () => {
      const spec = (await svc.call('GET', '/openapi.json')).json as {
        paths: Record<string, Record<string, unknown>>;
      };
      const served = Object.entries(spec.paths)
        .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
        .sort();
      const covered = ROWS.map((r) => `${r.method} ${r.route}`).sort();
      assert.deepEqual(covered, served);
    });

    for (const row of ROWS) {
      for (const caller of CALLERS) {
        const want = expected(row, caller);
        test(`${want}/${caller} ${row.method} ${row.route}`, async () => {
          const { url, body, raw, headers } = await row.prepare(f);
          const token =
            caller === 'anonymous'
              ? undefined
              : caller === 'invalid'
                ? `hpt_${'A'.repeat(43)}`
                : caller === 'expired'
                  ? expiredToken
                  : caller === 'operator'
                    ? svc.operatorToken
                    : caller === 'otherTenant'
                      ? b.tokens.Administrator
                      : f.a.tokens[caller];
          const before = await svc.snapshot();
          const saved = svc.now;
          // (Public routes ignore tokens; moving the clock there would only expire their nonces.)
          if (caller === 'expired' && row.min !== 'public')
            svc.now = new Date(saved.getTime() + 2 * 86_400_000);
          const r = await svc
            .call(row.method, url, {
              token,
              ...(body !== undefined ? { body } : {}),
              ...(raw !== undefined ? { raw } : {}),
              ...(headers !== undefined ? { headers } : {}),
            })
            .finally(() => {
              svc.now = saved;
            });
          if (want === 'ok') {
            assert.ok(
              r.status >= 200 && r.status < 300,
              `expected 2xx, got ${r.status} ${r.body.slice(0, 200)}`,
            );
            if (caller === 'otherTenant' && row.wrongTenant === 'own') {
              assert.ok(!r.body.includes(f.a.id), 'a call by another tenant must not show this tenant');
            }
            return;
          }
          if (want === 'not-found') {
            assert.equal(r.status, 404, r.body);
            assert.match(String(r.json.code), /_NOT_FOUND$/);
          } else {
            assert.equal(r.json.code, want, r.body);
            assert.equal(
              r.status,
              want.startsWith('AUTH_TOKEN') || want === 'AUTH_DEVICE_CERT_MISSING' ? 401 : 403,
            );
          }
          assert.equal(await svc.snapshot(), before, 'a refused call changes nothing');
        });
      }
    }

    test('malformed Authorization headers are refused as invalid', async () => {
      for (const header of [
        'Basic abc',
        'Bearer',
        'Bearer hpt_short',
        `Bearer ${'x'.repeat(400)}`,
        'bearer x',
      ]) {
        const r = await svc.call('GET', '/v1/products', { headers: { authorization: header } });
        assert.equal(r.status, 401, header);
        assert.equal(r.json.code, 'AUTH_TOKEN_INVALID', header);
      }
    });
  });
}
