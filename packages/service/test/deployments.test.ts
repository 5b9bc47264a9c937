// Deployments (issue 5): which images a device group must run; the newest is current. Every
// image must be an application of the tenant, one version per application; groups of another
// tenant are invisible; refusals change nothing. On SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { appPackage, octet } from './support/images.ts';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

for (const backend of backends()) {
  describe(`deployments on ${backend}`, () => {
    let svc: TestService;
    let a: SeededTenant;
    let b: SeededTenant;
    let group: string;
    const image = async (t: SeededTenant, o: Parameters<typeof appPackage>[0] = {}) => {
      const r = await svc.call('POST', '/v1/images', {
        token: t.tokens.Contributor,
        raw: appPackage(o),
        headers: octet,
      });
      assert.equal(r.status, 201, r.body);
      return String(r.json['id']);
    };
    const deploy = (deviceGroup: string, imageIds: string[], token = a.tokens.Contributor) =>
      svc.call('POST', '/v1/deployments', { token, body: { deviceGroup, imageIds } });

    before(async () => {
      svc = await createTestService(backend, 'deployments');
      a = await seedTenant(svc, 'Deploy A');
      b = await seedTenant(svc, 'Deploy B');
      const p = await svc.call('POST', '/v1/products', {
        token: a.tokens.Contributor,
        body: { name: 'DW100' },
      });
      assert.equal(p.status, 201);
      group = 'DW100/Field Test';
    });
    after(() => svc.close());

    test('the newest deployment of a group is current; list and show give the images', async () => {
      const cid = randomUUID();
      const v1 = await image(a, { componentId: cid, name: 'blink', version: '1.0.0' });
      const other = await image(a, { name: 'telemetry' });
      const first = await deploy(group, [v1, other]);
      assert.equal(first.status, 201, first.body);
      assert.equal(first.json['current'], true);
      assert.equal(first.json['deviceGroupName'], 'Field Test');
      assert.equal(first.json['productName'], 'DW100');
      assert.deepEqual(
        (first.json['images'] as Array<Record<string, unknown>>).map((i) => [
          i['id'],
          i['name'],
          i['version'],
        ]),
        [
          [v1, 'blink', '1.0.0'],
          [other, 'telemetry', '1.0.0'],
        ],
      );
      svc.now = new Date(svc.now.getTime() + 1000);
      const v2 = await image(a, { componentId: cid, name: 'blink', version: '1.1.0' });
      const second = await deploy(group, [v2]);
      assert.equal(second.status, 201);
      const list = await svc.call('GET', `/v1/deployments?deviceGroup=${encodeURIComponent(group)}`, {
        token: a.tokens.Reader,
      });
      assert.deepEqual(
        list.json.items?.map((d) => [d['id'], d['current']]),
        [
          [second.json['id'], true],
          [first.json['id'], false],
        ],
      );
      const shown = await svc.call('GET', `/v1/deployments/${first.json['id']}`, { token: a.tokens.Reader });
      assert.equal(shown.json['current'], false);
      const audit = await svc.call('GET', '/v1/audit', { token: a.tokens.Administrator });
      assert.ok(audit.json.items?.some((e) => e['action'] === 'deployment.created'));
    });

    test('refused, nothing changed: unknown image, another tenant’s image, an image twice, two versions of one app, a runtime id, bad bodies', async () => {
      const cid = randomUUID();
      const x1 = await image(a, { componentId: cid, name: 'x', version: '1.0.0' });
      const x2 = await image(a, { componentId: cid, name: 'x', version: '2.0.0' });
      const theirs = await image(b, { name: 'theirs' });
      const cases: Array<[string, unknown, number, string]> = [
        ['unknown image', { deviceGroup: group, imageIds: [randomUUID()] }, 404, 'IMAGE_NOT_FOUND'],
        ["another tenant's image", { deviceGroup: group, imageIds: [theirs] }, 404, 'IMAGE_NOT_FOUND'],
        ['an image twice', { deviceGroup: group, imageIds: [x1, x1] }, 400, 'DEPLOYMENT_INVALID'],
        ['two versions of one app', { deviceGroup: group, imageIds: [x1, x2] }, 400, 'DEPLOYMENT_INVALID'],
        ['unknown group', { deviceGroup: 'DW100/Nope', imageIds: [x1] }, 404, 'DEVICE_GROUP_NOT_FOUND'],
        ['no images', { deviceGroup: group, imageIds: [] }, 400, 'REQUEST_INVALID'],
        [
          'too many images',
          { deviceGroup: group, imageIds: Array.from({ length: 33 }, () => randomUUID()) },
          400,
          'REQUEST_INVALID',
        ],
        ['not a UUID', { deviceGroup: group, imageIds: ["1' or 1=1 --"] }, 400, 'REQUEST_INVALID'],
        ['unknown field', { deviceGroup: group, imageIds: [x1], force: true }, 400, 'REQUEST_INVALID'],
        ['no group', { imageIds: [x1] }, 400, 'REQUEST_INVALID'],
      ];
      for (const [name, body, status, code] of cases) {
        const before = await svc.snapshot();
        const r = await svc.call('POST', '/v1/deployments', { token: a.tokens.Contributor, body });
        assert.equal(r.status, status, `${name}: ${r.body}`);
        assert.equal(r.json.code, code, name);
        assert.equal(await svc.snapshot(), before, name);
      }
    });

    test('another tenant sees none of it; a deleted group takes its deployments with it', async () => {
      const img = await image(a, { name: 'solo' });
      const g = await svc.call('POST', '/v1/device-groups', {
        token: a.tokens.Contributor,
        body: { product: 'DW100', name: `Temp ${randomUUID().slice(0, 6)}` },
      });
      assert.equal(g.status, 201, g.body);
      const gid = String(g.json['id']);
      const d = await deploy(gid, [img]);
      assert.equal(d.status, 201);
      for (const url of [`/v1/deployments/${d.json['id']}`, `/v1/deployments?deviceGroup=${gid}`]) {
        const r = await svc.call('GET', url, { token: b.tokens.Administrator });
        assert.equal(r.status, 404, url);
      }
      assert.equal((await deploy(gid, [img], b.tokens.Contributor)).status, 404);
      assert.equal(
        (await svc.call('DELETE', `/v1/device-groups/${gid}`, { token: a.tokens.Administrator })).status,
        204,
      );
      const gone = await svc.call('GET', `/v1/deployments/${d.json['id']}`, { token: a.tokens.Reader });
      assert.equal(gone.json.code, 'DEPLOYMENT_NOT_FOUND');
    });
  });
}
