// Update metadata (issue 5, "Update metadata (TUF)"): the service's image and director TUF
// repositories, read by the real tuf-js Updater over mTLS with a device certificate, as the
// device's update agent reads them. On SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, mock, test } from 'node:test';
import { buildApp } from '../src/app.ts';
import { type CertifiedDevice, certifiedDevice, tlsCall } from './support/device-tls.ts';
import { appPackage, octet } from './support/images.ts';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';
import { wire } from './support/soft-device.ts';
import { type TufClient, tufClient } from './support/tuf-client.ts';

const platform = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const DAY = 86_400_000;

interface Uploaded {
  id: string;
  componentId: string;
  path: string;
  bytes: Buffer;
}

for (const backend of backends()) {
  describe(`update metadata (TUF) on ${backend}`, () => {
    let svc: TestService;
    let a: SeededTenant;
    let b: SeededTenant;
    let dev: CertifiedDevice;
    let devB: CertifiedDevice;
    let blink1: Uploaded;
    const clients: TufClient[] = [];
    const tls = (d: CertifiedDevice, path: string, headers: Record<string, string> = {}) =>
      tlsGet(svc, d, path, headers);

    const upload = async (
      tenant: SeededTenant,
      o: Parameters<typeof appPackage>[0] = {},
    ): Promise<Uploaded> => {
      const r = await svc.call('POST', '/v1/images', {
        token: tenant.tokens.Contributor,
        raw: appPackage(o),
        headers: octet,
      });
      assert.ok(r.status === 201, r.body);
      const id = String(r.json['id']);
      const componentId = String(r.json['componentId']);
      const content = await svc.app.inject({
        method: 'GET',
        url: `/v1/images/${id}/content`,
        headers: { authorization: `Bearer ${tenant.tokens.Reader}` },
      });
      return { id, componentId, path: `apps/${componentId}/${id}.hpkg`, bytes: content.rawPayload };
    };
    const deploy = async (group: string, ...images: Uploaded[]) => {
      const r = await svc.call('POST', '/v1/deployments', {
        token: a.tokens.Contributor,
        body: { deviceGroup: group, imageIds: images.map((i) => i.id) },
      });
      assert.equal(r.status, 201, r.body);
    };
    const moveTo = async (tenant: SeededTenant, d: CertifiedDevice, group: string) => {
      const r = await svc.call('PATCH', `/v1/devices/${d.id}`, {
        token: tenant.tokens.Contributor,
        body: { deviceGroup: group },
      });
      assert.equal(r.status, 200, r.body);
    };
    const client = async (d: CertifiedDevice, repo: 'image' | 'director') => {
      const root = await tls(d, `/v1/device/tuf/${repo}/metadata/root.json`);
      assert.equal(root.status, 200, root.body.toString());
      const c = tufClient(svc, d, repo, root.body);
      clients.push(c);
      return c;
    };
    const signedOf = (body: Buffer) => JSON.parse(body.toString()).signed as Record<string, unknown>;

    before(async () => {
      svc = await createTestService(backend, 'tuf', { https: true });
      // tuf-js checks expiry against the real clock: the service's starts at the real time.
      svc.now = new Date();
      a = await seedTenant(svc, 'TUF A');
      b = await seedTenant(svc, 'TUF B');
      for (const t of [a, b])
        assert.equal(
          (await svc.call('POST', '/v1/products', { token: t.tokens.Contributor, body: { name: 'P1' } }))
            .status,
          201,
        );
      dev = await certifiedDevice(svc, a.tokens.Contributor);
      devB = await certifiedDevice(svc, b.tokens.Contributor);
      await moveTo(a, dev, 'P1/Field Test');
      blink1 = await upload(a, { name: 'blink', version: '1.0.0' });
      await deploy('P1/Field Test', blink1);
      const signer = await svc.call('POST', '/v1/runtime-signers', {
        token: svc.operatorToken,
        body: { publicKeyPem: platform.publicKey.export({ format: 'pem', type: 'spki' }).toString() },
      });
      assert.equal(signer.status, 201, signer.body);
    });
    after(async () => {
      for (const c of clients) c.close();
      await svc.close();
    });

    test('tuf-js refreshes both repositories; director and image targets agree; the image downloads', async () => {
      const image = await client(dev, 'image');
      const director = await client(dev, 'director');
      await image.updater.refresh();
      await director.updater.refresh();
      const d = await director.updater.getTargetInfo(blink1.path);
      const i = await image.updater.getTargetInfo(blink1.path);
      assert.ok(d && i);
      assert.equal(d.length, i.length);
      assert.deepEqual(d.hashes, i.hashes);
      assert.equal(i.length, blink1.bytes.length);
      assert.deepEqual(i.custom, {
        componentId: blink1.componentId,
        imageId: blink1.id,
        name: 'blink',
        version: '1.0.0',
        securityVersion: 1,
        type: 'application',
      });
      const file = await image.updater.downloadTarget(i, join(image.dir, 'targets', 'blink.hpkg'));
      assert.deepEqual(readFileSync(file), blink1.bytes);
      // Consistent snapshots: versioned snapshot/targets names and a hash-prefixed target URL.
      assert.ok(image.fetcher.fetched.some((u) => /\/metadata\/[0-9]+\.snapshot\.json$/.test(u)));
      assert.ok(image.fetcher.fetched.some((u) => u.endsWith(`/${i.hashes['sha256']}.${blink1.id}.hpkg`)));
    });

    test('a new deployment: the director names the new image and no longer the old one', async () => {
      const director = await client(dev, 'director');
      await director.updater.refresh();
      const blink2 = await upload(a, { componentId: blink1.componentId, name: 'blink', version: '1.1.0' });
      await deploy('P1/Field Test', blink2);
      const next = director.again();
      await next.refresh();
      assert.ok(await next.getTargetInfo(blink2.path));
      assert.equal(await next.getTargetInfo(blink1.path), undefined);
      // The image repository names both (every image of the tenant).
      const image = await client(dev, 'image');
      await image.updater.refresh();
      assert.ok(await image.updater.getTargetInfo(blink1.path));
      assert.ok(await image.updater.getTargetInfo(blink2.path));
      await deploy('P1/Field Test', blink1);
    });

    test('runtime releases: targets of the image repository, offered by the director per feed; withdrawn ones vanish', async () => {
      const rt = appPackage({
        type: 'runtime',
        name: 'heptad-runtime',
        version: '9.0.0',
        securityVersion: 3,
        key: platform.privateKey,
      });
      const pub = await svc.call('POST', '/v1/runtime-releases', {
        token: svc.operatorToken,
        raw: rt,
        headers: octet,
      });
      assert.equal(pub.status, 201, pub.body);
      const image = await client(dev, 'image');
      const director = await client(dev, 'director');
      await image.updater.refresh();
      await director.updater.refresh();
      const imageFile = JSON.parse(
        (await tls(dev, '/v1/device/tuf/image/metadata/timestamp.json')).body.toString(),
      ).signed.meta['snapshot.json'].version as number;
      const targets = signedOf(
        (await tls(dev, `/v1/device/tuf/image/metadata/${imageFile}.targets.json`)).body,
      )['targets'] as Record<string, { custom: { type: string; version: string; imageId: string } }>;
      const runtimePath = Object.keys(targets).find((p) => p.startsWith('runtime/'));
      assert.ok(runtimePath);
      assert.equal(targets[runtimePath]?.custom.type, 'runtime');
      assert.equal(runtimePath, `runtime/${targets[runtimePath]?.custom.imageId}.hpkg`);
      const info = await image.updater.getTargetInfo(runtimePath);
      assert.ok(info);
      // Field Test is on retail: not offered until promoted.
      assert.equal(await director.updater.getTargetInfo(runtimePath), undefined);
      const promoted = await svc.call('POST', '/v1/runtime-releases/9.0.0/promote', {
        token: svc.operatorToken,
        body: { feed: 'retail' },
      });
      assert.equal(promoted.status, 200, promoted.body);
      const d2 = director.again();
      await d2.refresh();
      const offered = await d2.getTargetInfo(runtimePath);
      assert.ok(offered);
      assert.deepEqual(offered.hashes, info.hashes);
      const file = await image.updater.downloadTarget(info, join(image.dir, 'targets', 'rt.hpkg'));
      assert.deepEqual(readFileSync(file), rt);
      // no-app-updates: the runtime still, no apps.
      const policy = await svc.call('PATCH', `/v1/device-groups/${encodeURIComponent('P1/Field Test')}`, {
        token: a.tokens.Contributor,
        body: { updatePolicy: 'no-app-updates' },
      });
      assert.equal(policy.status, 200, policy.body);
      const d3 = director.again();
      await d3.refresh();
      assert.equal(await d3.getTargetInfo(blink1.path), undefined);
      assert.ok(await d3.getTargetInfo(runtimePath));
      await svc.call('PATCH', `/v1/device-groups/${encodeURIComponent('P1/Field Test')}`, {
        token: a.tokens.Contributor,
        body: { updatePolicy: 'update-all' },
      });
      // Withdrawn: gone from both repositories, and its bytes are no longer served.
      const w = await svc.call('POST', '/v1/runtime-releases/9.0.0/withdraw', { token: svc.operatorToken });
      assert.equal(w.status, 200, w.body);
      const d4 = director.again();
      await d4.refresh();
      assert.equal(await d4.getTargetInfo(runtimePath), undefined);
      assert.ok(await d4.getTargetInfo(blink1.path));
      const i2 = image.again();
      await i2.refresh();
      assert.equal(await i2.getTargetInfo(runtimePath), undefined);
      const sha = info.hashes['sha256'];
      const gone = await tls(dev, `/v1/device/tuf/image/targets/runtime/${sha}.${runtimePath.slice(8)}`);
      assert.equal(gone.json.code, 'TUF_TARGET_NOT_FOUND');
    });

    test('ranges return the exact bytes; ETag and If-None-Match answer 304', async () => {
      const image = await client(dev, 'image');
      await image.updater.refresh();
      const info = await image.updater.getTargetInfo(blink1.path);
      assert.ok(info);
      const url = `/v1/device/tuf/image/targets/apps/${blink1.componentId}/${info.hashes['sha256']}.${blink1.id}.hpkg`;
      const size = blink1.bytes.length;
      const full = await tls(dev, url);
      assert.equal(full.status, 200);
      assert.deepEqual(full.body, blink1.bytes);
      assert.equal(full.headers['content-length'], String(size));
      assert.equal(full.headers['accept-ranges'], 'bytes');
      const cases: Array<[string, number, number]> = [
        ['bytes=10-19', 10, 19],
        ['bytes=0-0', 0, 0],
        [`bytes=${size - 7}-`, size - 7, size - 1],
        ['bytes=-5', size - 5, size - 1],
        [`bytes=100-${size + 1000}`, 100, size - 1],
      ];
      for (const [range, start, end] of cases) {
        const r = await tls(dev, url, { range });
        assert.equal(r.status, 206, range);
        assert.deepEqual(r.body, blink1.bytes.subarray(start, end + 1), range);
        assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${size}`, range);
        assert.equal(r.headers['content-length'], String(end - start + 1), range);
      }
      for (const range of [
        `bytes=${size}-`,
        'bytes=5-2',
        'bytes=0-1,3-4',
        'items=0-1',
        'bytes=-0',
        'bytes=x-y',
        'bytes=-',
      ]) {
        const r = await tls(dev, url, { range });
        assert.equal(r.status, 416, range);
        assert.equal(r.json.code, 'TUF_RANGE_NOT_SATISFIABLE', range);
        assert.equal(r.headers['content-range'], `bytes */${size}`, range);
      }
      const etag = String(full.headers['etag']);
      assert.equal(etag, `"${info.hashes['sha256']}"`);
      const cached = await tls(dev, url, { 'if-none-match': etag });
      assert.equal(cached.status, 304);
      assert.equal(cached.body.length, 0);
      const ts = await tls(dev, '/v1/device/tuf/image/metadata/timestamp.json');
      const again = await tls(dev, '/v1/device/tuf/image/metadata/timestamp.json', {
        'if-none-match': String(ts.headers['etag']),
      });
      assert.equal(again.status, 304);
    });

    test('refusals: unknown names, traversal, versions 0 / negative / huge, wrong hash prefix', async () => {
      const before = await svc.snapshot();
      for (const file of [
        'foo.json',
        '0.root.json',
        '-1.root.json',
        '01.root.json',
        '99999999999.root.json',
        '2147483648.snapshot.json',
        '1.timestamp.json',
        '999999.targets.json',
        '1.root.json.bak',
        '..%2F..%2Fetc%2Fpasswd',
        '%2e%2e',
      ]) {
        for (const repo of ['image', 'director']) {
          const r = await tls(dev, `/v1/device/tuf/${repo}/metadata/${file}`);
          assert.equal(r.status, 404, `${repo}/${file}`);
          assert.ok(
            ['TUF_METADATA_NOT_FOUND', 'ROUTE_NOT_FOUND'].includes(String(r.json.code)),
            `${repo}/${file}`,
          );
        }
      }
      const sha = 'a'.repeat(64);
      for (const name of [
        `apps/${blink1.componentId}/${sha}.${blink1.id}.hpkg`,
        `apps/${blink1.componentId}/../../${sha}.${blink1.id}.hpkg`,
        `apps/${blink1.componentId}/%2e%2e/${sha}.${blink1.id}.hpkg`,
        `apps/${blink1.componentId}/${blink1.id}.hpkg`,
        `runtime/..%2f..%2fheptad.sqlite`,
        '..%2F..%2F..%2Fetc%2Fpasswd',
        `%2e%2e%2f%2e%2e%2f${sha}`,
        `APPS/${blink1.componentId}/${sha}.${blink1.id}.hpkg`,
      ]) {
        const r = await tls(dev, `/v1/device/tuf/image/targets/${name}`);
        assert.equal(r.status, 404, name);
        assert.ok(['TUF_TARGET_NOT_FOUND', 'ROUTE_NOT_FOUND'].includes(String(r.json.code)), name);
      }
      assert.equal(await svc.snapshot(), before);
    });

    test("tenant isolation: a device of tenant B never gets tenant A's metadata or targets", async () => {
      const image = await client(dev, 'image');
      await image.updater.refresh();
      const info = await image.updater.getTargetInfo(blink1.path);
      assert.ok(info);
      const url = `/v1/device/tuf/image/targets/apps/${blink1.componentId}/${info.hashes['sha256']}.${blink1.id}.hpkg`;
      const r = await tls(devB, url);
      assert.equal(r.status, 404);
      assert.equal(r.json.code, 'TUF_TARGET_NOT_FOUND');
      const rootA = signedOf((await tls(dev, '/v1/device/tuf/image/metadata/root.json')).body);
      const rootB = signedOf((await tls(devB, '/v1/device/tuf/image/metadata/root.json')).body);
      assert.notDeepEqual(rootA['keys'], rootB['keys']);
      // B's image repository does not name A's image; B's device is in no group yet.
      const bImage = await client(devB, 'image');
      await bImage.updater.refresh();
      assert.equal(await bImage.updater.getTargetInfo(blink1.path), undefined);
      const noGroup = await tls(devB, '/v1/device/tuf/director/metadata/timestamp.json');
      assert.equal(noGroup.json.code, 'TUF_DEVICE_NOT_IN_GROUP');
      // No certificate: nothing.
      const anon = await tlsCall(svc, 'GET', '/v1/device/tuf/image/metadata/root.json');
      assert.equal(anon.json.code, 'AUTH_DEVICE_CERT_MISSING');
    });

    test('a device moving to a group with older metadata still refreshes (tenant-wide versions, re-sign on join)', async () => {
      // Field Test (the device's group) gets many new versions; Production has old ones.
      await svc.call(
        'GET',
        `/v1/tuf/director/${encodeURIComponent('P1/Production')}/metadata/timestamp.json`,
        {
          token: a.tokens.Reader,
        },
      );
      const other = await upload(a, { name: 'other' });
      await deploy('P1/Field Test', blink1, other);
      await deploy('P1/Field Test', blink1);
      const director = await client(dev, 'director');
      await director.updater.refresh();
      const held = signedOf((await tls(dev, '/v1/device/tuf/director/metadata/timestamp.json')).body)[
        'version'
      ] as number;
      const prod = signedOf(
        Buffer.from(
          (
            await svc.call(
              'GET',
              `/v1/tuf/director/${encodeURIComponent('P1/Production')}/metadata/timestamp.json`,
              {
                token: a.tokens.Reader,
              },
            )
          ).body,
        ),
      )['version'] as number;
      assert.ok(prod < held, `${prod} < ${held}`);
      await moveTo(a, dev, 'P1/Production');
      const next = director.again();
      await next.refresh();
      const now = signedOf((await tls(dev, '/v1/device/tuf/director/metadata/timestamp.json')).body)[
        'version'
      ] as number;
      assert.ok(now > held);
      // Production has no deployment: the director names no app.
      assert.equal(await next.getTargetInfo(blink1.path), undefined);
      await moveTo(a, dev, 'P1/Field Test');
    });

    for (const role of ['timestamp', 'snapshot', 'targets', 'root'] as const) {
      test(`rotating the ${role} key: a client holding the old root follows the chain`, async () => {
        const image = await client(dev, 'image');
        const director = await client(dev, 'director');
        await image.updater.refresh();
        await director.updater.refresh();
        const oldRoot = readFileSync(join(image.dir, 'metadata', 'root.json'));
        const r = await svc.call('POST', '/v1/tenants/current/tuf-keys/rotate', {
          token: a.tokens.Administrator,
          body: { role },
        });
        assert.equal(r.status, 200, r.body);
        assert.deepEqual(
          r.json.items?.map((i) => i['repository']),
          ['image', 'director'],
        );
        for (const c of [image, director]) {
          const next = c.again();
          await next.refresh();
          assert.ok(await next.getTargetInfo(blink1.path));
        }
        const newRoot = signedOf(readFileSync(join(image.dir, 'metadata', 'root.json')));
        assert.equal(newRoot['version'], (signedOf(oldRoot)['version'] as number) + 1);
        const keyId = r.json.items?.[0]?.['keyId'];
        assert.equal(typeof keyId, 'string');
        assert.deepEqual((newRoot['roles'] as Record<string, { keyids: string[] }>)[role]?.keyids, [keyId]);
        // A device that only ever had root version 1 walks every version since.
        const fresh = tufClient(
          svc,
          dev,
          'image',
          (await tls(dev, '/v1/device/tuf/image/metadata/1.root.json')).body,
        );
        clients.push(fresh);
        await fresh.updater.refresh();
        assert.ok(await fresh.updater.getTargetInfo(blink1.path));
        const audit = await svc.call('GET', '/v1/audit?limit=5', { token: a.tokens.Administrator });
        assert.ok(audit.json.items?.some((e) => e['action'] === 'tuf.key-rotated'));
      });
    }

    test('metadata near expiry is re-signed (on read and by the job); a client past the old expiry accepts it', async () => {
      const image = await client(dev, 'image');
      await image.updater.refresh();
      const ts0 = signedOf((await tls(dev, '/v1/device/tuf/image/metadata/timestamp.json')).body);
      // 13 h later the timestamp (1 day) has under half its life left: a read signs a new one.
      svc.now = new Date(svc.now.getTime() + 13 * 3_600_000);
      const ts1 = signedOf((await tls(dev, '/v1/device/tuf/image/metadata/timestamp.json')).body);
      assert.ok((ts1['version'] as number) > (ts0['version'] as number));
      assert.ok(Date.parse(ts1['expires'] as string) > Date.parse(ts0['expires'] as string));
      // Five days on, past the first timestamp's expiry: the job re-signs snapshot and timestamp.
      svc.now = new Date(svc.now.getTime() + 5 * DAY);
      assert.ok((await svc.app.tuf.renewAll()) >= 1);
      assert.equal(await svc.app.tuf.renewAll(), 0);
      // The device's 24 h certificate has run out meanwhile: it attests again.
      const evidence = await dev.device.evidence(await dev.device.challenge());
      const att = await svc.call('POST', '/v1/attestation/evidence', { body: wire(evidence) });
      assert.equal(att.status, 201, att.body);
      dev = {
        ...dev,
        certPem: (att.json['certificate'] as { chainPem: string }).chainPem,
        keyPem: evidence.tlsKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      };
      const ts2 = signedOf((await tls(dev, '/v1/device/tuf/image/metadata/timestamp.json')).body);
      assert.ok(Date.parse(ts2['expires'] as string) > svc.now.getTime());
      // tuf-js checks expiry against the time it was created: create it "five days later".
      mock.timers.enable({ apis: ['Date'], now: svc.now.getTime() });
      const renewed = tufClient(svc, dev, 'image', readFileSync(join(image.dir, 'metadata', 'root.json')));
      clients.push(renewed);
      let later: ReturnType<TufClient['again']>;
      try {
        later = renewed.again();
      } finally {
        mock.timers.reset();
      }
      await later.refresh();
      assert.ok(await later.getTargetInfo(blink1.path));
    });

    test('a quarantined device gets nothing', async () => {
      const q = await certifiedDevice(svc, a.tokens.Contributor);
      const r = await svc.call('POST', `/v1/devices/${q.id}/quarantine`, {
        token: a.tokens.Administrator,
        body: { reason: 'test' },
      });
      assert.ok([200, 201].includes(r.status), r.body);
      const got = await tls(q, '/v1/device/tuf/image/metadata/timestamp.json');
      assert.equal(got.json.code, 'AUTH_DEVICE_QUARANTINED');
    });

    test('two service processes creating a tenant repository at once: one set of keys, one root', async () => {
      const c = await seedTenant(svc, 'TUF C');
      const second = await buildApp({ store: svc.store, clock: () => svc.now, keys: svc.keys });
      try {
        const read = (app: typeof second) =>
          app.inject({
            method: 'GET',
            url: '/v1/tuf/image/metadata/root.json',
            headers: { authorization: `Bearer ${c.tokens.Reader}` },
          });
        const [r1, r2] = await Promise.all([read(svc.app), read(second)]);
        assert.equal(r1.statusCode, 200, r1.body);
        assert.equal(r2.statusCode, 200, r2.body);
        assert.equal(r1.body, r2.body);
        const keys = await svc.db.selectFrom('tuf_keys').select('id').where('tenant_id', '=', c.id).execute();
        assert.equal(keys.length, 4);
        const roots = await svc.db
          .selectFrom('tuf_metadata')
          .select('version')
          .where('tenant_id', '=', c.id)
          .where('role', '=', 'root')
          .execute();
        assert.equal(roots.length, 1);
      } finally {
        await second.close();
      }
    });
  });
}

/** One HTTPS GET with the device's certificate; the body as bytes. */
async function tlsGet(
  svc: TestService,
  d: CertifiedDevice,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; json: { code?: string } }> {
  const https = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(path, svc.url),
      { method: 'GET', agent: false, ca: svc.caPem, cert: d.certPem, key: d.keyPem, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          let json: { code?: string } = {};
          try {
            json = JSON.parse(body.toString()) as { code?: string };
          } catch {
            json = {};
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}
