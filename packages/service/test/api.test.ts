import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  backends,
  createTestService,
  makeDevice,
  registerDevice,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

for (const backend of backends()) {
  describe(`service API on ${backend}`, () => {
    let svc: TestService;
    let a: SeededTenant;
    let b: SeededTenant;
    before(async () => {
      svc = await createTestService(backend, 'api');
      a = await seedTenant(svc, 'Contoso');
      b = await seedTenant(svc, 'Fabrikam');
    });
    after(() => svc.close());

    test('a new tenant gets a UUID and shows up for the operator, and only itself for its users', async () => {
      assert.match(a.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const all = await svc.call('GET', '/v1/tenants', { token: svc.operatorToken });
      assert.deepEqual(
        all.json.items?.map((t) => t['name']),
        ['Contoso', 'Fabrikam'],
      );
      const own = await svc.call('GET', '/v1/tenants', { token: a.tokens.Reader });
      assert.deepEqual(
        own.json.items?.map((t) => t['id']),
        [a.id],
      );
      const current = await svc.call('GET', '/v1/tenants/current', { token: b.tokens.Reader });
      assert.equal(current.json['id'], b.id);
      const other = await svc.call('GET', `/v1/tenants/${b.id}`, { token: a.tokens.Administrator });
      assert.equal(other.status, 404);
      assert.equal(other.json.code, 'TENANT_NOT_FOUND');
    });

    test('a user token is returned once and only its hash is stored', async () => {
      const r = await svc.call('POST', '/v1/users', {
        token: a.tokens.Administrator,
        body: { email: 'Once@Contoso.com', role: 'Reader' },
      });
      assert.equal(r.status, 201);
      const token = String(r.json['token']);
      assert.match(token, /^hpt_[A-Za-z0-9_-]{43}$/);
      assert.equal(r.headers['cache-control'], 'no-store');
      assert.equal((r.json['user'] as Record<string, unknown>)['email'], 'once@contoso.com');
      const snap = await svc.snapshot();
      assert.ok(!snap.includes(token), 'the token itself must not be stored');
      const listed = await svc.call('GET', '/v1/users', { token: a.tokens.Administrator });
      assert.ok(!listed.body.includes('hpt_'), 'user listings never carry tokens');
      const works = await svc.call('GET', '/v1/products', { token });
      assert.equal(works.status, 200);
    });

    test('an Administrator cannot create users in another tenant', async () => {
      const before = await svc.snapshot();
      const r = await svc.call('POST', '/v1/users', {
        token: a.tokens.Administrator,
        body: { email: 'x@fabrikam.com', role: 'Administrator', tenantId: b.id },
      });
      assert.equal(r.status, 404);
      assert.equal(r.json.code, 'TENANT_NOT_FOUND');
      assert.equal(await svc.snapshot(), before);
    });

    test('creating a product creates its five default device groups', async () => {
      const p = await svc.call('POST', '/v1/products', {
        token: a.tokens.Contributor,
        body: { name: 'DW100', description: 'Dishwasher' },
      });
      assert.equal(p.status, 201);
      const groups = await svc.call('GET', '/v1/device-groups?product=DW100', { token: a.tokens.Reader });
      const byName = new Map(groups.json.items?.map((g) => [g['name'], g]));
      assert.deepEqual([...byName.keys()].sort(), [
        'Development',
        'Field Test',
        'Field Test OS Evaluation',
        'Production',
        'Production OS Evaluation',
      ]);
      assert.equal(byName.get('Development')?.['updatePolicy'], 'no-app-updates');
      assert.equal(byName.get('Development')?.['osFeed'], 'retail');
      for (const n of ['Field Test', 'Production']) {
        assert.equal(byName.get(n)?.['osFeed'], 'retail');
        assert.equal(byName.get(n)?.['updatePolicy'], 'update-all');
      }
      for (const n of ['Production OS Evaluation', 'Field Test OS Evaluation']) {
        assert.equal(byName.get(n)?.['osFeed'], 'retail-eval');
      }
    });

    test('names are unique within their parent and free across parents', async () => {
      const dup = await svc.call('POST', '/v1/products', {
        token: a.tokens.Contributor,
        body: { name: 'DW100' },
      });
      assert.equal(dup.status, 409);
      assert.equal(dup.json.code, 'PRODUCT_NAME_TAKEN');
      const otherTenant = await svc.call('POST', '/v1/products', {
        token: b.tokens.Contributor,
        body: { name: 'DW100' },
      });
      assert.equal(otherTenant.status, 201, 'another tenant may use the same product name');
      const dupGroup = await svc.call('POST', '/v1/device-groups', {
        token: a.tokens.Contributor,
        body: { product: 'DW100', name: 'Field Test' },
      });
      assert.equal(dupGroup.json.code, 'DEVICE_GROUP_NAME_TAKEN');
      const dupTenant = await svc.call('POST', '/v1/tenants', {
        token: svc.operatorToken,
        body: { name: 'Contoso' },
      });
      assert.equal(dupTenant.json.code, 'TENANT_NAME_TAKEN');
    });

    test('a device group is found by id and by "Product/Group", and updates keep other fields', async () => {
      const g = await svc.call('POST', '/v1/device-groups', {
        token: a.tokens.Contributor,
        body: { product: 'DW100', name: 'Marketing', osFeed: 'retail-eval' },
      });
      assert.equal(g.status, 201);
      assert.equal(g.json['updatePolicy'], 'update-all');
      const byEncoded = await svc.call('GET', '/v1/device-groups/DW100%2FMarketing', {
        token: a.tokens.Reader,
      });
      assert.equal(byEncoded.json['id'], g.json['id']);
      const upd = await svc.call('PATCH', `/v1/device-groups/${g.json['id']}`, {
        token: a.tokens.Contributor,
        body: { updatePolicy: 'no-app-updates' },
      });
      assert.equal(upd.status, 200);
      assert.equal(upd.json['updatePolicy'], 'no-app-updates');
      assert.equal(upd.json['osFeed'], 'retail-eval');
      assert.equal(upd.json['name'], 'Marketing');
      const otherTenant = await svc.call('GET', `/v1/device-groups/${g.json['id']}`, {
        token: b.tokens.Administrator,
      });
      assert.equal(otherTenant.json.code, 'DEVICE_GROUP_NOT_FOUND');
    });

    test('register checks the id is the SHA-256 of the key; claim is one-time across tenants', async () => {
      const d = makeDevice();
      const other = makeDevice();
      const wrong = await svc.call('POST', '/v1/devices', {
        token: svc.operatorToken,
        body: { id: other.id, publicKey: d.publicKeyPem },
      });
      assert.equal(wrong.json.code, 'DEVICE_ID_MISMATCH');
      await registerDevice(svc, d);
      const again = await svc.call('POST', '/v1/devices', {
        token: svc.operatorToken,
        body: { id: d.id, publicKey: d.publicKeyPem },
      });
      assert.equal(again.json.code, 'DEVICE_ALREADY_REGISTERED');

      const claim = await svc.call('POST', '/v1/devices/claim', {
        token: a.tokens.Contributor,
        body: { deviceIds: [d.id], deviceGroup: 'DW100/Field Test' },
      });
      assert.equal(claim.status, 200);
      assert.deepEqual(claim.json['claimed'], [d.id]);
      const shown = await svc.call('GET', `/v1/devices/${d.id}`, { token: a.tokens.Reader });
      assert.equal(shown.json['deviceGroupName'], 'Field Test');
      assert.equal(shown.json['productName'], 'DW100');
      assert.equal(shown.json['tenantId'], a.id);

      const twice = await svc.call('POST', '/v1/devices/claim', {
        token: a.tokens.Contributor,
        body: { deviceIds: [d.id] },
      });
      assert.deepEqual(
        twice.json['alreadyClaimed'],
        [d.id],
        'claiming again in the same tenant is reported, not an error',
      );

      const before = await svc.snapshot();
      const stolen = await svc.call('POST', '/v1/devices/claim', {
        token: b.tokens.Administrator,
        body: { deviceIds: [d.id] },
      });
      assert.equal(stolen.status, 409);
      assert.equal(stolen.json.code, 'DEVICE_CLAIMED_BY_OTHER_TENANT');
      assert.ok(!stolen.body.includes(a.id), 'the refusal does not name the owning tenant');
      assert.equal(await svc.snapshot(), before);
      const hidden = await svc.call('GET', `/v1/devices/${d.id}`, { token: b.tokens.Administrator });
      assert.equal(hidden.json.code, 'DEVICE_NOT_FOUND');

      // Only the operator can unclaim; then another tenant can claim.
      const unclaim = await svc.call('POST', `/v1/devices/${d.id}/unclaim`, { token: svc.operatorToken });
      assert.equal(unclaim.status, 200);
      assert.equal(unclaim.json['tenantId'], null);
      const unclaimedTwice = await svc.call('POST', `/v1/devices/${d.id}/unclaim`, {
        token: svc.operatorToken,
      });
      assert.equal(unclaimedTwice.json.code, 'DEVICE_NOT_CLAIMED');
      const reclaim = await svc.call('POST', '/v1/devices/claim', {
        token: b.tokens.Contributor,
        body: { deviceIds: [d.id] },
      });
      assert.deepEqual(reclaim.json['claimed'], [d.id]);
    });

    test('a bulk claim is all or nothing and names every unknown id', async () => {
      const known = [await registerDevice(svc), await registerDevice(svc)];
      const unknown = [makeDevice().id, makeDevice().id];
      const before = await svc.snapshot();
      const r = await svc.call('POST', '/v1/devices/claim', {
        token: a.tokens.Contributor,
        body: { deviceIds: [...known.map((d) => d.id), ...unknown] },
      });
      assert.equal(r.status, 404);
      assert.equal(r.json.code, 'DEVICE_NOT_FOUND');
      assert.deepEqual([...(r.json['deviceIds'] as string[])].sort(), [...unknown].sort());
      assert.equal(await svc.snapshot(), before, 'no device of the batch was claimed');
    });

    test('claims up to 1000 devices in one request and refuses 1001', async () => {
      const devices = Array.from({ length: 1000 }, () => makeDevice());
      const now = svc.now.toISOString();
      // Register through the store in one transaction: 1000 HTTP registrations would only slow the test.
      await svc.db
        .insertInto('devices')
        .values(
          devices.map((d) => ({
            id: d.id,
            public_key_pem: d.publicKeyPem,
            rot_kind: 'soft',
            registered_at: now,
            tenant_id: null,
            device_group_id: null,
            claimed_at: null,
            measurement_pcr: 15,
            tpm_public: null,
            quarantined_at: null,
            quarantine_reason: null,
            last_attested_at: null,
          })),
        )
        .execute();
      const ids = devices.map((d) => d.id);
      const tooMany = await svc.call('POST', '/v1/devices/claim', {
        token: b.tokens.Contributor,
        body: { deviceIds: [...ids, makeDevice().id] },
      });
      assert.equal(tooMany.status, 400);
      assert.equal(tooMany.json.code, 'REQUEST_INVALID');
      const r = await svc.call('POST', '/v1/devices/claim', {
        token: b.tokens.Contributor,
        body: { deviceIds: ids, deviceGroup: 'DW100/Production' },
      });
      assert.equal(r.status, 200);
      assert.equal((r.json['claimed'] as string[]).length, 1000);
      // paging through the tenant's devices returns each exactly once
      const seen = new Set<string>();
      let after: string | null = null;
      do {
        const qs: string = `?deviceGroup=${encodeURIComponent('DW100/Production')}&limit=300${after ? `&after=${after}` : ''}`;
        const page = await svc.call('GET', `/v1/devices${qs}`, { token: b.tokens.Reader });
        for (const d of page.json.items ?? []) seen.add(String(d['id']));
        after = page.json['nextCursor'] as string | null;
      } while (after);
      assert.equal(seen.size, 1000);
    });

    test('a group or product that still has devices cannot be deleted', async () => {
      const d = await registerDevice(svc);
      await svc.call('POST', '/v1/devices/claim', {
        token: a.tokens.Contributor,
        body: { deviceIds: [d.id], deviceGroup: 'DW100/Marketing' },
      });
      const before = await svc.snapshot();
      const g = await svc.call('DELETE', '/v1/device-groups/DW100%2FMarketing', {
        token: a.tokens.Contributor,
      });
      assert.equal(g.status, 409);
      assert.equal(g.json.code, 'DEVICE_GROUP_HAS_DEVICES');
      const p = await svc.call('DELETE', '/v1/products/DW100', { token: a.tokens.Contributor });
      assert.equal(p.json.code, 'PRODUCT_HAS_DEVICES');
      assert.equal(await svc.snapshot(), before);

      const moved = await svc.call('PATCH', `/v1/devices/${d.id}`, {
        token: a.tokens.Contributor,
        body: { deviceGroup: null },
      });
      assert.equal(moved.json['deviceGroupId'], null);
      const ok = await svc.call('DELETE', '/v1/device-groups/DW100%2FMarketing', {
        token: a.tokens.Contributor,
      });
      assert.equal(ok.status, 204);
      const gone = await svc.call('GET', '/v1/device-groups/DW100%2FMarketing', { token: a.tokens.Reader });
      assert.equal(gone.json.code, 'DEVICE_GROUP_NOT_FOUND');
    });

    test('deleting an empty product removes its device groups', async () => {
      await svc.call('POST', '/v1/products', { token: a.tokens.Contributor, body: { name: 'Temp' } });
      const del = await svc.call('DELETE', '/v1/products/Temp', { token: a.tokens.Contributor });
      assert.equal(del.status, 204);
      const groups = await svc.call('GET', '/v1/device-groups', { token: a.tokens.Reader });
      assert.ok(!groups.json.items?.some((g) => g['productName'] === 'Temp'));
    });

    test('every change writes an audit record with who, what, when and the request id', async () => {
      const r = await svc.call('PATCH', '/v1/products/DW100', {
        token: a.tokens.Contributor,
        body: { description: 'Dishwasher, 2nd gen' },
      });
      assert.equal(r.status, 200);
      const requestId = String(r.headers['x-request-id']);
      const log = await svc.call('GET', '/v1/audit?limit=5', { token: a.tokens.Administrator });
      const ev = log.json.items?.[0];
      assert.equal(ev?.['action'], 'product.updated');
      assert.equal(ev?.['requestId'], requestId);
      assert.equal(ev?.['actorRole'], 'Contributor');
      assert.equal(ev?.['at'], svc.now.toISOString());
      // tenants see only their own audit records; the operator sees all
      const bLog = await svc.call('GET', '/v1/audit?limit=1000', { token: b.tokens.Administrator });
      assert.ok(bLog.json.items?.every((e) => e['tenantId'] === b.id));
      await svc.call('POST', '/v1/tenants', { token: svc.operatorToken, body: { name: 'Audited' } });
      const opLog = await svc.call('GET', '/v1/audit?limit=1', { token: svc.operatorToken });
      assert.equal(opLog.json.items?.[0]?.['action'], 'tenant.created');
      assert.equal(opLog.json.items?.[0]?.['actorRole'], 'Operator');
      // paging with the cursor continues without overlap
      const p1 = await svc.call('GET', '/v1/audit?limit=2', { token: a.tokens.Administrator });
      const p2 = await svc.call('GET', `/v1/audit?limit=2&before=${p1.json['nextCursor']}`, {
        token: a.tokens.Administrator,
      });
      assert.ok(Number(p2.json.items?.[0]?.['seq']) < Number(p1.json.items?.[1]?.['seq']));
    });

    test('an expired token is refused with AUTH_TOKEN_EXPIRED', async () => {
      const u = await svc.call('POST', '/v1/users', {
        token: a.tokens.Administrator,
        body: { email: 'short@contoso.com', role: 'Reader', expiresInDays: 1 },
      });
      const token = String(u.json['token']);
      assert.equal((await svc.call('GET', '/v1/products', { token })).status, 200);
      const saved = svc.now;
      svc.now = new Date(saved.getTime() + 86_400_000 + 1000);
      try {
        const r = await svc.call('GET', '/v1/products', { token });
        assert.equal(r.status, 401);
        assert.equal(r.json.code, 'AUTH_TOKEN_EXPIRED');
      } finally {
        svc.now = saved;
      }
    });

    test('a cached token is still refused the moment it expires', async () => {
      const u = await svc.call('POST', '/v1/users', {
        token: a.tokens.Administrator,
        body: { email: 'cached@contoso.com', role: 'Reader', expiresInDays: 1 },
      });
      const token = String(u.json['token']);
      const expiry = Date.parse(String(u.json['tokenExpiresAt']));
      const saved = svc.now;
      try {
        svc.now = new Date(expiry - 1000);
        assert.equal((await svc.call('GET', '/v1/products', { token })).status, 200, 'resolved and cached');
        svc.now = new Date(expiry + 1000); // inside the cache window, past the expiry
        const r = await svc.call('GET', '/v1/products', { token });
        assert.equal(r.json.code, 'AUTH_TOKEN_EXPIRED');
      } finally {
        svc.now = saved;
      }
    });

    test('a read never sees another request’s uncommitted change', async () => {
      const d = await registerDevice(svc);
      await svc.call('POST', '/v1/devices/claim', {
        token: a.tokens.Contributor,
        body: { deviceIds: [d.id] },
      });
      const ctx = {
        actor: { userId: 'test', email: 't@example.com', role: 'Contributor' as const, tenantId: a.id },
        requestId: 'test',
        now: svc.now,
      };
      let read: Promise<Awaited<ReturnType<typeof svc.call>>> | undefined;
      await assert.rejects(
        svc.store.transaction(async (s) => {
          await s.forTenant(a.id).devices.update(ctx, d.id, { deviceGroup: 'DW100/Production' });
          // Issued while the change is uncommitted; it must wait for, or see past, this transaction.
          read = svc.call('GET', `/v1/devices/${d.id}`, { token: a.tokens.Reader });
          await new Promise((r) => setTimeout(r, 20));
          throw new Error('roll back');
        }),
        /roll back/,
      );
      const r = await read;
      assert.equal(r?.status, 200);
      assert.equal(r?.json['deviceGroupId'], null, 'the rolled-back change was never visible');
    });

    test('health, readiness, metrics and the OpenAPI document', async () => {
      assert.equal((await svc.call('GET', '/healthz')).json['status'], 'ok');
      assert.equal((await svc.call('GET', '/readyz')).json['status'], 'ready');
      const m = await svc.call('GET', '/metrics', { token: svc.operatorToken });
      assert.equal(m.status, 200);
      assert.match(
        m.body,
        /heptad_http_requests_total\{method="GET",route="\/v1\/products",status="200"\} \d+/,
      );
      assert.equal(
        (await svc.call('GET', '/metrics', { token: a.tokens.Administrator })).json.code,
        'AUTH_OPERATOR_REQUIRED',
      );
      const spec = await svc.call('GET', '/openapi.json');
      assert.equal(spec.json['openapi'], '3.1.0');
      const docs = await svc.call('GET', '/docs/');
      assert.equal(docs.status, 200);
      assert.match(docs.body, /swagger/i);
    });

    test('errors are problem+json with a stable code and request id, and 5xx hide their cause', async () => {
      const r = await svc.call('GET', '/v1/products/nope', { token: a.tokens.Reader });
      assert.equal(r.status, 404);
      assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
      assert.equal(r.json['type'], 'urn:heptad:error:PRODUCT_NOT_FOUND');
      assert.equal(r.json['requestId'], r.headers['x-request-id']);
      // Break the store under a read: the client gets INTERNAL_ERROR and nothing of the cause.
      const original = svc.store.forTenant;
      svc.store.forTenant = () => {
        throw new Error('secret internal detail: /var/lib/heptad');
      };
      try {
        const boom = await svc.call('GET', '/v1/products', { token: a.tokens.Reader });
        assert.equal(boom.status, 500);
        assert.equal(boom.json.code, 'INTERNAL_ERROR');
        assert.ok(!boom.body.includes('secret internal detail'));
        assert.equal(boom.json['detail'], undefined);
      } finally {
        svc.store.forTenant = original;
      }
    });
  });
}
