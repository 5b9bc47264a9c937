import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  backends,
  type CallOptions,
  createTestService,
  makeDevice,
  registerDevice,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

const BODY_LIMIT = 4096;
const SQL = "x'; DROP TABLE devices; --";
const TRAVERSAL = '../../etc/passwd';

interface Case {
  name: string;
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  url: string;
  as: 'operator' | 'admin';
  call?: Omit<CallOptions, 'token'>;
  code: string;
  status: number;
}

function cases(f: { productId: string; deviceId: string; tenantId: string }): Case[] {
  const unknownDevice = makeDevice();
  const big = 'a'.repeat(BODY_LIMIT + 10);
  const writes: Array<{
    method: Case['method'];
    url: string;
    as: Case['as'];
    valid: Record<string, unknown>;
  }> = [
    { method: 'POST', url: '/v1/tenants', as: 'operator', valid: { name: 'Valid' } },
    { method: 'POST', url: '/v1/users', as: 'admin', valid: { email: 'v@example.com', role: 'Reader' } },
    { method: 'POST', url: '/v1/products', as: 'admin', valid: { name: 'Valid' } },
    { method: 'PATCH', url: `/v1/products/${f.productId}`, as: 'admin', valid: { name: 'Valid' } },
    { method: 'POST', url: '/v1/device-groups', as: 'admin', valid: { product: f.productId, name: 'Valid' } },
    { method: 'PATCH', url: '/v1/device-groups/Bad%2FProduction', as: 'admin', valid: { name: 'Valid' } },
    {
      method: 'POST',
      url: '/v1/devices',
      as: 'operator',
      valid: { id: unknownDevice.id, publicKey: unknownDevice.publicKeyPem },
    },
    { method: 'POST', url: '/v1/devices/claim', as: 'admin', valid: { deviceIds: [f.deviceId] } },
    {
      method: 'PATCH',
      url: `/v1/devices/${f.deviceId}`,
      as: 'admin',
      valid: { deviceGroup: 'Bad/Field Test' },
    },
  ];
  const out: Case[] = [];
  for (const w of writes) {
    const where = `${w.method} ${w.url.replace(/[0-9a-f-]{36}|[0-9a-f]{64}/g, ':id')}`;
    out.push(
      {
        name: `malformed JSON to ${where}`,
        ...w,
        call: { raw: '{"name": "x",' },
        code: 'REQUEST_MALFORMED_JSON',
        status: 400,
      },
      {
        name: `empty JSON body to ${where}`,
        ...w,
        call: { raw: '' },
        code: 'REQUEST_MALFORMED_JSON',
        status: 400,
      },
      {
        name: `JSON array instead of object to ${where}`,
        ...w,
        call: { body: [w.valid] },
        code: 'REQUEST_INVALID',
        status: 400,
      },
      {
        name: `unknown field to ${where}`,
        ...w,
        call: { body: { ...w.valid, isAdmin: true } },
        code: 'REQUEST_INVALID',
        status: 400,
      },
      {
        name: `oversized body to ${where}`,
        ...w,
        call: { body: { ...w.valid, padding: big } },
        code: 'REQUEST_BODY_TOO_LARGE',
        status: 413,
      },
      {
        name: `wrong content type to ${where}`,
        ...w,
        call: { raw: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
        code: 'REQUEST_UNSUPPORTED_MEDIA_TYPE',
        status: 415,
      },
      {
        name: `prototype pollution to ${where}`,
        ...w,
        call: { raw: `{"__proto__": {"admin": true}, ${JSON.stringify(w.valid).slice(1)}` },
        code: 'REQUEST_MALFORMED_JSON',
        status: 400,
      },
    );
  }
  const named: Array<[string, Case['method'], string, Case['as'], (n: unknown) => Record<string, unknown>]> =
    [
      ['tenant', 'POST', '/v1/tenants', 'operator', (n) => ({ name: n })],
      ['product', 'POST', '/v1/products', 'admin', (n) => ({ name: n })],
      ['product rename', 'PATCH', `/v1/products/${f.productId}`, 'admin', (n) => ({ name: n })],
      ['device group', 'POST', '/v1/device-groups', 'admin', (n) => ({ product: f.productId, name: n })],
    ];
  const badNames: Array<[string, unknown]> = [
    ['a number', 42],
    ['null', null],
    ['an object', { $ne: '' }],
    ['an empty string', ''],
    ['a path-traversal string', TRAVERSAL],
    ['".."', '..'],
    ['a SQL-looking string', SQL],
    ['a slash', 'a/b'],
    ['a control character', 'bad\u0000name'],
    ['a leading space', ' lead'],
    ['101 characters', 'n'.repeat(101)],
  ];
  for (const [what, method, url, as, body] of named) {
    for (const [label, value] of badNames) {
      out.push({
        name: `${what} name that is ${label}`,
        method,
        url,
        as,
        call: { body: body(value) },
        code: 'REQUEST_INVALID',
        status: 400,
      });
    }
  }
  out.push(
    {
      name: 'missing required field',
      method: 'POST',
      url: '/v1/products',
      as: 'admin',
      call: { body: {} },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'role that does not exist',
      method: 'POST',
      url: '/v1/users',
      as: 'admin',
      call: { body: { email: 'r@example.com', role: 'Owner' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'email that is SQL',
      method: 'POST',
      url: '/v1/users',
      as: 'admin',
      call: { body: { email: SQL, role: 'Reader' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'token lifetime as a string',
      method: 'POST',
      url: '/v1/users',
      as: 'admin',
      call: { body: { email: 'e@example.com', role: 'Reader', expiresInDays: '5' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'token lifetime of zero',
      method: 'POST',
      url: '/v1/users',
      as: 'admin',
      call: { body: { email: 'e@example.com', role: 'Reader', expiresInDays: 0 } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'operator creating a user without a tenant',
      method: 'POST',
      url: '/v1/users',
      as: 'operator',
      call: { body: { email: 'e@example.com', role: 'Reader' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'user in an unknown tenant',
      method: 'POST',
      url: '/v1/users',
      as: 'operator',
      call: {
        body: { email: 'e@example.com', role: 'Reader', tenantId: '00000000-0000-4000-8000-000000000000' },
      },
      code: 'TENANT_NOT_FOUND',
      status: 404,
    },
    {
      name: 'duplicate email',
      method: 'POST',
      url: '/v1/users',
      as: 'operator',
      call: { body: { email: 'dup@example.com', role: 'Reader', tenantId: f.tenantId } },
      code: 'USER_EMAIL_TAKEN',
      status: 409,
    },
    {
      name: 'device group in an unknown product',
      method: 'POST',
      url: '/v1/device-groups',
      as: 'admin',
      call: { body: { product: 'Nope', name: 'G' } },
      code: 'PRODUCT_NOT_FOUND',
      status: 404,
    },
    {
      name: 'os feed that does not exist',
      method: 'POST',
      url: '/v1/device-groups',
      as: 'admin',
      call: { body: { product: f.productId, name: 'G', osFeed: 'beta' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'peer-message policy that is not a boolean',
      method: 'PATCH',
      url: '/v1/device-groups/Bad%2FProduction',
      as: 'admin',
      call: { body: { allowPeerMessages: 'yes' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'peer-message policy given as a number',
      method: 'PATCH',
      url: '/v1/device-groups/Bad%2FProduction',
      as: 'admin',
      call: { body: { allowPeerMessages: 1 } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'empty product patch',
      method: 'PATCH',
      url: `/v1/products/${f.productId}`,
      as: 'admin',
      call: { body: {} },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'unknown product id',
      method: 'GET',
      url: '/v1/products/00000000-0000-4000-8000-000000000000',
      as: 'admin',
      code: 'PRODUCT_NOT_FOUND',
      status: 404,
    },
    {
      name: 'SQL-looking product reference',
      method: 'GET',
      url: `/v1/products/${encodeURIComponent("' OR '1'='1")}`,
      as: 'admin',
      code: 'PRODUCT_NOT_FOUND',
      status: 404,
    },
    {
      name: 'path-traversal product reference',
      method: 'DELETE',
      url: `/v1/products/${encodeURIComponent(TRAVERSAL)}`,
      as: 'admin',
      code: 'PRODUCT_NOT_FOUND',
      status: 404,
    },
    {
      name: 'device group reference without a slash',
      method: 'GET',
      url: '/v1/device-groups/NoSlash',
      as: 'admin',
      code: 'DEVICE_GROUP_NOT_FOUND',
      status: 404,
    },
    {
      name: 'SQL-looking device group reference',
      method: 'DELETE',
      url: `/v1/device-groups/${encodeURIComponent(`Bad/${SQL}`)}`,
      as: 'admin',
      code: 'DEVICE_GROUP_NOT_FOUND',
      status: 404,
    },
    {
      name: 'unknown tenant id',
      method: 'GET',
      url: '/v1/tenants/00000000-0000-4000-8000-000000000000',
      as: 'operator',
      code: 'TENANT_NOT_FOUND',
      status: 404,
    },
    {
      name: 'tenant id that is not a UUID',
      method: 'GET',
      url: `/v1/tenants/${encodeURIComponent(SQL)}`,
      as: 'operator',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'device id that is not 64 hex',
      method: 'GET',
      url: '/v1/devices/ABC',
      as: 'admin',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'uppercase device id',
      method: 'GET',
      url: `/v1/devices/${f.deviceId.toUpperCase()}`,
      as: 'admin',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'unknown device',
      method: 'GET',
      url: `/v1/devices/${unknownDevice.id}`,
      as: 'admin',
      code: 'DEVICE_NOT_FOUND',
      status: 404,
    },
    {
      name: 'claim of an unknown device',
      method: 'POST',
      url: '/v1/devices/claim',
      as: 'admin',
      call: { body: { deviceIds: [unknownDevice.id] } },
      code: 'DEVICE_NOT_FOUND',
      status: 404,
    },
    {
      name: 'claim with an empty list',
      method: 'POST',
      url: '/v1/devices/claim',
      as: 'admin',
      call: { body: { deviceIds: [] } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'claim listing a device twice',
      method: 'POST',
      url: '/v1/devices/claim',
      as: 'admin',
      call: { body: { deviceIds: [f.deviceId, f.deviceId] } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'claim into an unknown group',
      method: 'POST',
      url: '/v1/devices/claim',
      as: 'admin',
      call: { body: { deviceIds: [f.deviceId], deviceGroup: 'Bad/Nope' } },
      code: 'DEVICE_GROUP_NOT_FOUND',
      status: 404,
    },
    {
      name: 'register with an RSA key',
      method: 'POST',
      url: '/v1/devices',
      as: 'operator',
      call: { body: { id: unknownDevice.id, publicKey: RSA_PEM } },
      code: 'DEVICE_PUBLIC_KEY_INVALID',
      status: 400,
    },
    {
      name: 'register with garbage for a key',
      method: 'POST',
      url: '/v1/devices',
      as: 'operator',
      call: {
        body: {
          id: unknownDevice.id,
          publicKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
        },
      },
      code: 'DEVICE_PUBLIC_KEY_INVALID',
      status: 400,
    },
    {
      name: 'register with an id that is not the key',
      method: 'POST',
      url: '/v1/devices',
      as: 'operator',
      call: { body: { id: 'a'.repeat(64), publicKey: unknownDevice.publicKeyPem } },
      code: 'DEVICE_ID_MISMATCH',
      status: 400,
    },
    {
      name: 'register with an unknown root-of-trust kind',
      method: 'POST',
      url: '/v1/devices',
      as: 'operator',
      call: { body: { id: unknownDevice.id, publicKey: unknownDevice.publicKeyPem, rotKind: 'magic' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'register with a key that is not PEM',
      method: 'POST',
      url: '/v1/devices',
      as: 'operator',
      call: { body: { id: f.deviceId, publicKey: 'x' } },
      code: 'DEVICE_PUBLIC_KEY_INVALID',
      status: 400,
    },
    {
      name: 'page size of zero',
      method: 'GET',
      url: '/v1/devices?limit=0',
      as: 'admin',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'page size over 1000',
      method: 'GET',
      url: '/v1/devices?limit=1001',
      as: 'admin',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'unknown query parameter',
      method: 'GET',
      url: '/v1/devices?tenant=other',
      as: 'admin',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'audit cursor that is SQL',
      method: 'GET',
      url: `/v1/audit?before=${encodeURIComponent(SQL)}`,
      as: 'admin',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'quarantine reason with a control character',
      method: 'POST',
      url: `/v1/devices/${f.deviceId}/quarantine`,
      as: 'admin',
      call: { body: { reason: 'a\u0007b' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'quarantine of an unknown device',
      method: 'POST',
      url: `/v1/devices/${unknownDevice.id}/quarantine`,
      as: 'admin',
      call: { body: {} },
      code: 'DEVICE_NOT_FOUND',
      status: 404,
    },
    {
      name: 'release of a device the tenant does not hold',
      method: 'DELETE',
      url: `/v1/devices/${f.deviceId}/quarantine`,
      as: 'admin',
      code: 'DEVICE_NOT_FOUND',
      status: 404,
    },
    {
      name: 'CA rotation with a negative overlap',
      method: 'POST',
      url: '/v1/tenants/current/ca-certificates/rotate',
      as: 'admin',
      call: { body: { overlapDays: -1 } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'CA rotation with an overlap as a string',
      method: 'POST',
      url: '/v1/tenants/current/ca-certificates/rotate',
      as: 'admin',
      call: { body: { overlapDays: '45' } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'runtime image digest that is not 64 hex',
      method: 'POST',
      url: '/v1/runtime-images',
      as: 'operator',
      call: { body: { digest: SQL, version: '1.0.0', securityVersion: 1 } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'runtime image version with a path',
      method: 'POST',
      url: '/v1/runtime-images',
      as: 'operator',
      call: { body: { digest: 'a'.repeat(64), version: TRAVERSAL, securityVersion: 1 } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'register with a measurement register out of range',
      method: 'POST',
      url: '/v1/devices',
      as: 'operator',
      call: { body: { id: unknownDevice.id, publicKey: unknownDevice.publicKeyPem, measurementPcr: 24 } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'register with a TPM public area that is garbage',
      method: 'POST',
      url: '/v1/devices',
      as: 'operator',
      call: {
        body: {
          id: unknownDevice.id,
          publicKey: unknownDevice.publicKeyPem,
          rotKind: 'tpm',
          tpmPublic: 'AAAAAAAA',
        },
      },
      code: 'DEVICE_PUBLIC_KEY_INVALID',
      status: 400,
    },
    {
      name: 'challenge for an unknown device',
      method: 'POST',
      url: '/v1/attestation/challenge',
      as: 'admin',
      call: { body: { deviceId: unknownDevice.id } },
      code: 'ATTEST_DEVICE_UNKNOWN',
      status: 404,
    },
    {
      name: 'challenge with a device id that is SQL',
      method: 'POST',
      url: '/v1/attestation/challenge',
      as: 'admin',
      call: { body: { deviceId: SQL } },
      code: 'REQUEST_INVALID',
      status: 400,
    },
    ...reportCases(f.deviceId),
    {
      name: 'security events with a device id that is SQL',
      method: 'GET',
      url: `/v1/security-events?deviceId=${encodeURIComponent(SQL)}`,
      as: 'admin',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'public CRL of a tenant id that is not a UUID',
      method: 'GET',
      url: `/pki/tenants/${encodeURIComponent(TRAVERSAL)}/crl.pem`,
      as: 'admin',
      code: 'REQUEST_INVALID',
      status: 400,
    },
    {
      name: 'public CRL of an unknown tenant',
      method: 'GET',
      url: '/pki/tenants/00000000-0000-4000-8000-000000000000/crl.pem',
      as: 'admin',
      code: 'TENANT_NOT_FOUND',
      status: 404,
    },
    ...errorReportCases(),
    {
      name: 'unknown route',
      method: 'GET',
      url: '/v1/secrets',
      as: 'admin',
      code: 'ROUTE_NOT_FOUND',
      status: 404,
    },
  );
  return out;
}

/** The tenant's error-report API: queries are refused before anything is read. */
function errorReportCases(): Case[] {
  const q = (name: string, url: string, code = 'REQUEST_INVALID', status = 400): Case => ({
    name,
    method: 'GET',
    url,
    as: 'admin',
    code,
    status,
  });
  return [
    q(
      'error-report buckets since a path',
      `/v1/error-reports/buckets?since=${encodeURIComponent(TRAVERSAL)}`,
    ),
    q('error-report buckets since 0d', '/v1/error-reports/buckets?since=0d'),
    q('error-report buckets with limit 0', '/v1/error-reports/buckets?limit=0'),
    q('error-report buckets with a negative cursor', '/v1/error-reports/buckets?cursor=-1'),
    q(
      'error-report buckets of an image id that is not a UUID',
      `/v1/error-reports/buckets?imageId=${encodeURIComponent(SQL)}`,
    ),
    q('error-report buckets with an unknown parameter', '/v1/error-reports/buckets?tenantId=x'),
    q(
      'error-report buckets of an unknown device group',
      '/v1/error-reports/buckets?deviceGroup=Nope%2FProduction',
      'DEVICE_GROUP_NOT_FOUND',
      404,
    ),
    q(
      'error-report bucket id that is not 32 hex',
      `/v1/error-reports/buckets/${encodeURIComponent(TRAVERSAL)}`,
    ),
    q(
      'error-report bucket that does not exist',
      `/v1/error-reports/buckets/${'0'.repeat(32)}`,
      'REPORT_BUCKET_NOT_FOUND',
      404,
    ),
    q('error-report export as xml', '/v1/error-reports/export?format=xml'),
    q(
      'error-report export from after to',
      '/v1/error-reports/export?from=2026-11-22T09:00:00Z&to=2026-11-21T09:00:00Z',
      'REPORT_RANGE_INVALID',
    ),
    q('error-report export to a date that is not a date', '/v1/error-reports/export?to=2026-13-45'),
    {
      name: 'error-report upload without a client certificate (refused before the body is read)',
      method: 'POST',
      url: '/v1/device/error-reports',
      as: 'admin',
      call: { raw: SQL },
      code: 'AUTH_DEVICE_CERT_MISSING',
      status: 401,
    },
  ];
}

/**
 * Evidence whose device report is malformed: refused by the schema before anything is read or
 * stored (device-report.test.ts has every field; these keep the report in the table).
 */
function reportCases(deviceId: string): Case[] {
  const report = {
    runtime: {
      slot: 'A',
      version: '1.0.0',
      digest: 'a'.repeat(64),
      securityVersion: 1,
      trial: false,
      floor: 1,
    },
    events: [{ at: '2026-11-22T10:00:00.000Z', kind: 'runtime-exited', code: 'SIGSEGV' }],
  };
  const evidence = (r: unknown) => ({
    deviceId,
    nonce: 'a'.repeat(152),
    quote: { attest: 'AAAA', signature: 'AAAA' },
    log: [],
    csr: 'AAAA',
    report: r,
  });
  const event = report.events[0];
  const bad: Array<[string, unknown]> = [
    ['with an unknown field', { ...report, admin: true }],
    ['with a SQL-looking version', { ...report, runtime: { ...report.runtime, version: SQL } }],
    [
      'with a security version as a string',
      { ...report, runtime: { ...report.runtime, securityVersion: '1' } },
    ],
    ['with 33 events', { ...report, events: Array.from({ length: 33 }, () => event) }],
    ['with an unknown event kind', { ...report, events: [{ ...event, kind: 'reboot' }] }],
    ['with an event date that is not a date', { ...report, events: [{ ...event, at: TRAVERSAL }] }],
    ['with an event code of 65 characters', { ...report, events: [{ ...event, code: 'C'.repeat(65) }] }],
  ];
  return bad.map(([what, r]) => ({
    name: `evidence with a device report ${what}`,
    method: 'POST',
    url: '/v1/attestation/evidence',
    as: 'admin',
    call: { body: evidence(r) },
    code: 'REQUEST_INVALID',
    status: 400,
  }));
}

const RSA_PEM = `-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMvHhgRXFvE+p1Q6x0B3G5f0u7ejI3gH
yqyHf5v6O3i3D5m2E0h8bCpH1wH8a0m3yq3L9pY7tG2k8v7G5fQ3d8kCAwEAAQ==
-----END PUBLIC KEY-----
`;

for (const backend of backends()) {
  describe(`bad input on ${backend}: a coded 4xx and no change`, () => {
    let svc: TestService;
    let t: SeededTenant;
    let all: Case[] = [];
    before(async () => {
      svc = await createTestService(backend, 'badinput', { bodyLimit: BODY_LIMIT });
      t = await seedTenant(svc, 'Bad');
      await svc.call('POST', '/v1/tenants', { token: svc.operatorToken, body: { name: 'Valid' } });
      const p = await svc.call('POST', '/v1/products', {
        token: t.tokens.Administrator,
        body: { name: 'Bad' },
      });
      await svc.call('POST', '/v1/users', {
        token: svc.operatorToken,
        body: { email: 'dup@example.com', role: 'Reader', tenantId: t.id },
      });
      const d = await registerDevice(svc);
      all = cases({ productId: String(p.json['id']), deviceId: d.id, tenantId: t.id });
    });
    after(() => svc.close());

    test('every case is refused with its code and leaves the store unchanged', async () => {
      assert.ok(all.length > 100, `expected the full table, got ${all.length}`);
      const failures: string[] = [];
      for (const c of all) {
        const before = await svc.snapshot();
        const token = c.as === 'operator' ? svc.operatorToken : t.tokens.Administrator;
        const r = await svc.call(c.method, c.url, { token, ...(c.call ?? {}) });
        const after = await svc.snapshot();
        if (r.status !== c.status || r.json.code !== c.code) {
          failures.push(
            `${c.name}: expected ${c.status} ${c.code}, got ${r.status} ${r.json.code ?? r.body.slice(0, 120)}`,
          );
        }
        if (after !== before) failures.push(`${c.name}: the store changed`);
        if (!String(r.headers['content-type']).startsWith('application/problem+json')) {
          failures.push(`${c.name}: not problem+json`);
        }
      }
      assert.deepEqual(failures, []);
    });
  });
}
