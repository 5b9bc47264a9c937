// Device capabilities (issue 5): appDevelopment and fieldServicing, Administrator only, per
// tenant, audited; refusals change nothing. On SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  backends,
  createTestService,
  registerDevice,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

for (const backend of backends()) {
  describe(`device capabilities on ${backend}`, () => {
    let svc: TestService;
    let a: SeededTenant;
    let b: SeededTenant;
    let id: string;
    const url = () => `/v1/devices/${id}/capabilities`;

    before(async () => {
      svc = await createTestService(backend, 'capabilities');
      a = await seedTenant(svc, 'Caps A');
      b = await seedTenant(svc, 'Caps B');
      id = (await registerDevice(svc)).id;
      const r = await svc.call('POST', '/v1/devices/claim', {
        token: a.tokens.Administrator,
        body: { deviceIds: [id] },
      });
      assert.ok(r.status < 300, r.body);
    });
    after(() => svc.close());

    test('add, list, remove; each change is audited', async () => {
      for (const capability of ['appDevelopment', 'fieldServicing']) {
        const r = await svc.call('POST', url(), { token: a.tokens.Administrator, body: { capability } });
        assert.equal(r.status, 201, r.body);
        assert.equal(r.json['capability'], capability);
      }
      const list = await svc.call('GET', url(), { token: a.tokens.Reader });
      assert.deepEqual(
        list.json.items?.map((c) => c['capability']),
        ['appDevelopment', 'fieldServicing'],
      );
      assert.equal(
        (await svc.call('DELETE', `${url()}/appDevelopment`, { token: a.tokens.Administrator })).status,
        204,
      );
      const after = await svc.call('GET', url(), { token: a.tokens.Reader });
      assert.deepEqual(
        after.json.items?.map((c) => c['capability']),
        ['fieldServicing'],
      );
      const audit = await svc.call('GET', '/v1/audit', { token: a.tokens.Administrator });
      const actions = audit.json.items?.map((e) => e['action']) ?? [];
      assert.ok(actions.includes('device.capability-added') && actions.includes('device.capability-removed'));
    });

    test('refused, nothing changed', async () => {
      const cases: Array<[string, string, string, unknown, string, number, string]> = [
        [
          'twice',
          'POST',
          url(),
          { capability: 'fieldServicing' },
          a.tokens.Administrator,
          409,
          'DEVICE_CAPABILITY_EXISTS',
        ],
        [
          'unknown capability',
          'POST',
          url(),
          { capability: 'rootShell' },
          a.tokens.Administrator,
          400,
          'REQUEST_INVALID',
        ],
        [
          'extra field',
          'POST',
          url(),
          { capability: 'appDevelopment', forever: true },
          a.tokens.Administrator,
          400,
          'REQUEST_INVALID',
        ],
        [
          'a Contributor',
          'POST',
          url(),
          { capability: 'appDevelopment' },
          a.tokens.Contributor,
          403,
          'AUTH_ROLE_INSUFFICIENT',
        ],
        [
          'another tenant',
          'POST',
          url(),
          { capability: 'appDevelopment' },
          b.tokens.Administrator,
          404,
          'DEVICE_NOT_FOUND',
        ],
        [
          'remove what it lacks',
          'DELETE',
          `${url()}/appDevelopment`,
          undefined,
          a.tokens.Administrator,
          404,
          'DEVICE_CAPABILITY_NOT_FOUND',
        ],
        [
          'remove an unknown one',
          'DELETE',
          `${url()}/rootShell`,
          undefined,
          a.tokens.Administrator,
          400,
          'REQUEST_INVALID',
        ],
        [
          'unknown device',
          'GET',
          `/v1/devices/${'0'.repeat(64)}/capabilities`,
          undefined,
          a.tokens.Reader,
          404,
          'DEVICE_NOT_FOUND',
        ],
      ];
      for (const [name, method, u, body, token, status, code] of cases) {
        const before = await svc.snapshot();
        const r = await svc.call(method, u, { token, ...(body !== undefined ? { body } : {}) });
        assert.equal(r.status, status, `${name}: ${r.body}`);
        assert.equal(r.json.code, code, name);
        assert.equal(await svc.snapshot(), before, name);
      }
    });
  });
}
