// Application images (issue 5, image packages): upload validates everything and re-signs with the
// tenant's production key; list, show, download; and every bad package is refused with its code
// and changes nothing. On SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { createHash, createPublicKey, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keyIdOf, verifyPackage } from '@heptad/protocol';
import { FsBlobStore } from '../src/images/blob-store.ts';
import { appPackage, octet, signedRegionEnd } from './support/images.ts';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

for (const backend of backends()) {
  describe(`images on ${backend}`, () => {
    let svc: TestService;
    let a: SeededTenant;
    let b: SeededTenant;
    const upload = (bytes: Buffer, token = a.tokens.Contributor, headers: Record<string, string> = octet) =>
      svc.call('POST', '/v1/images', { token, raw: bytes, headers });
    const tenantKeys = async (t: SeededTenant) => {
      const r = await svc.call('GET', '/v1/tenants/current/image-signing-key', { token: t.tokens.Reader });
      assert.equal(r.status, 200, r.body);
      const key = createPublicKey(String(r.json['publicKeyPem']));
      assert.equal(r.json['keyId'], keyIdOf(key));
      return new Map([[keyIdOf(key), key]]);
    };

    before(async () => {
      svc = await createTestService(backend, 'images');
      a = await seedTenant(svc, 'Images A');
      b = await seedTenant(svc, 'Images B');
    });
    after(() => svc.close());

    test('upload validates and re-signs with the tenant key; show, list and download give it back', async () => {
      const componentId = randomUUID();
      const pkg = appPackage({ componentId, name: 'blink', version: '1.2.3' });
      const r = await upload(pkg);
      assert.equal(r.status, 201, r.body);
      const id = String(r.json['id']);
      assert.equal(r.json['componentId'], componentId);
      assert.equal(r.json['name'], 'blink');
      assert.equal(r.json['version'], '1.2.3');
      assert.equal(r.json['type'], 'application');
      assert.equal(r.json['tenantId'], a.id);
      const shown = await svc.call('GET', `/v1/images/${id}`, { token: a.tokens.Reader });
      assert.equal(shown.status, 200);
      assert.deepEqual((shown.json['appManifest'] as Record<string, unknown>)['Name'], 'blink');
      const listed = await svc.call('GET', '/v1/images', { token: a.tokens.Reader });
      assert.ok(listed.json.items?.some((i) => i['id'] === id));
      // The download is the same package, now also signed by the tenant's production key.
      const dl = await svc.app.inject({
        method: 'GET',
        url: `/v1/images/${id}/content`,
        headers: { authorization: `Bearer ${a.tokens.Reader}` },
      });
      assert.equal(dl.statusCode, 200);
      assert.equal(dl.headers['content-type'], 'application/octet-stream');
      const bytes = dl.rawPayload;
      const v = verifyPackage(bytes, await tenantKeys(a));
      assert.equal(v.digest, r.json['digest']);
      assert.equal(dl.headers['etag'], `"${v.digest}"`);
      assert.equal(bytes.length, r.json['size']);
      assert.deepEqual(
        bytes.subarray(0, signedRegionEnd(bytes)),
        pkg.subarray(0, signedRegionEnd(pkg)),
        'signed region unchanged',
      );
      // Another tenant's key does not verify it: each tenant signs with its own key.
      assert.throws(() => verifyPackage(bytes, new Map()));
      const otherKeys = await tenantKeys(b);
      assert.throws(
        () => verifyPackage(bytes, otherKeys),
        (e: unknown) => (e as { code?: string }).code === 'IMAGE_SIGNATURE_UNTRUSTED',
      );
      // The upload is audited.
      const audit = await svc.call('GET', '/v1/audit', { token: a.tokens.Administrator });
      assert.ok(audit.json.items?.some((e) => e['action'] === 'image.add' && e['targetId'] === id));
    });

    test('the same package again, or its production-signed download, answers 200 with the same image', async () => {
      const pkg = appPackage();
      const first = await upload(pkg);
      assert.equal(first.status, 201);
      const again = await upload(pkg);
      assert.equal(again.status, 200);
      assert.equal(again.json['id'], first.json['id']);
      const dl = await svc.app.inject({
        method: 'GET',
        url: `/v1/images/${first.json['id']}/content`,
        headers: { authorization: `Bearer ${a.tokens.Reader}` },
      });
      const back = await upload(dl.rawPayload);
      assert.equal(back.status, 200, back.body);
      assert.equal(back.json['digest'], first.json['digest']);
    });

    test('another tenant neither sees nor collides with the image', async () => {
      const imageId = randomUUID();
      const pkg = appPackage({ imageId });
      assert.equal((await upload(pkg)).status, 201);
      for (const url of [`/v1/images/${imageId}`, `/v1/images/${imageId}/content`]) {
        const r = await svc.call('GET', url, { token: b.tokens.Administrator });
        assert.equal(r.status, 404);
        assert.equal(r.json.code, 'IMAGE_NOT_FOUND');
      }
      const list = await svc.call('GET', '/v1/images', { token: b.tokens.Reader });
      assert.ok(!list.body.includes(imageId));
      // The same image id in tenant B is B's own image (ids are per tenant).
      const inB = await upload(pkg, b.tokens.Contributor);
      assert.equal(inB.status, 201);
      assert.equal(inB.json['tenantId'], b.id);
    });

    test('paging: limit and after walk the list newest first without repeats', async () => {
      const c = await seedTenant(svc, `Paging ${randomUUID().slice(0, 6)}`);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        svc.now = new Date(svc.now.getTime() + 1000);
        const r = await upload(appPackage(), c.tokens.Contributor);
        ids.push(String(r.json['id']));
      }
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const r = await svc.call('GET', `/v1/images?limit=2${after ? `&after=${after}` : ''}`, {
          token: c.tokens.Reader,
        });
        const items = r.json.items ?? [];
        if (items.length === 0) break;
        seen.push(...items.map((i) => String(i['id'])));
        after = seen.at(-1);
      }
      assert.deepEqual(seen, [...ids].reverse());
    });

    const refusals: Array<[string, () => Buffer, number, string, Record<string, string>?]> = [
      ['a runtime package', () => appPackage({ type: 'runtime' }), 400, 'IMAGE_TYPE_NOT_ALLOWED'],
      ['truncated', () => appPackage().subarray(0, 60), 400, 'IMAGE_TRUNCATED'],
      ['not a package', () => Buffer.from('hello, this is not an image package'), 400, 'IMAGE_MAGIC_INVALID'],
      ['empty', () => Buffer.alloc(0), 400, 'IMAGE_TRUNCATED'],
      [
        'no signature at all',
        () => {
          const p = appPackage();
          return Buffer.concat([p.subarray(0, signedRegionEnd(p)), Buffer.from([0])]);
        },
        400,
        'IMAGE_SIGNATURE_MISSING',
      ],
      [
        'a byte flipped in a file',
        () => {
          const p = appPackage();
          const at = signedRegionEnd(p) - 3;
          p.writeUInt8((p.readUInt8(at) ^ 0x01) & 0xff, at);
          return p;
        },
        400,
        'IMAGE_FILE_DIGEST_MISMATCH|IMAGE_PAYLOAD_MISMATCH',
      ],
      ['bytes appended', () => Buffer.concat([appPackage(), Buffer.from('x')]), 400, 'IMAGE_[A-Z_]+'],
      ['a path that climbs out (../)', () => withPath('../x.js'), 400, 'IMAGE_PATH_INVALID'],
      [
        'sent as JSON',
        () => appPackage(),
        415,
        'REQUEST_UNSUPPORTED_MEDIA_TYPE',
        { 'content-type': 'text/plain' },
      ],
      [
        'an app manifest that names another component',
        () => appPackage({ appManifestPatch: { ComponentId: randomUUID() } }),
        400,
        'APP_MANIFEST_INVALID',
      ],
      [
        'an app manifest with an unknown capability',
        () => appPackage({ appManifestPatch: { Capabilities: { RootShell: true } } }),
        400,
        'APP_MANIFEST_INVALID',
      ],
      [
        'DeviceAuthentication for another tenant',
        () => appPackage({ appManifestPatch: { Capabilities: { DeviceAuthentication: randomUUID() } } }),
        400,
        'APP_MANIFEST_INVALID',
      ],
    ];
    for (const [name, make, status, code, headers] of refusals) {
      test(`refused, nothing stored: ${name}`, async () => {
        const before = await svc.snapshot();
        const r = await upload(make(), a.tokens.Contributor, headers ?? octet);
        assert.equal(r.status, status, r.body);
        assert.match(String(r.json.code), new RegExp(`^(?:${code})$`));
        assert.equal(await svc.snapshot(), before);
      });
    }

    test('refused, nothing stored: this image id with other contents (IMAGE_EXISTS), another app’s component id (IMAGE_COMPONENT_CONFLICT)', async () => {
      const imageId = randomUUID();
      const componentId = randomUUID();
      assert.equal((await upload(appPackage({ imageId, componentId, name: 'first' }))).status, 201);
      const before = await svc.snapshot();
      const same = await upload(appPackage({ imageId, componentId, name: 'first', version: '9.9.9' }));
      assert.equal(same.status, 409);
      assert.equal(same.json.code, 'IMAGE_EXISTS');
      const clash = await upload(appPackage({ componentId, name: 'second' }));
      assert.equal(clash.status, 409);
      assert.equal(clash.json.code, 'IMAGE_COMPONENT_CONFLICT');
      assert.equal(await svc.snapshot(), before);
      // A new version of the same app (same component id and name) is fine.
      assert.equal((await upload(appPackage({ componentId, name: 'first', version: '1.1.0' }))).status, 201);
    });

    test('over 64 MiB is refused before it is stored (REQUEST_BODY_TOO_LARGE)', async () => {
      const before = await svc.snapshot();
      const r = await upload(Buffer.alloc(64 * 1024 * 1024 + 1));
      assert.equal(r.status, 413);
      assert.equal(r.json.code, 'REQUEST_BODY_TOO_LARGE');
      assert.equal(await svc.snapshot(), before);
    });

    test('unknown image ids and bad ids', async () => {
      const r = await svc.call('GET', `/v1/images/${randomUUID()}`, { token: a.tokens.Reader });
      assert.equal(r.json.code, 'IMAGE_NOT_FOUND');
      for (const bad of ['not-a-uuid', "1' or '1'='1", '..%2F..%2Fetc'])
        assert.equal(
          (await svc.call('GET', `/v1/images/${bad}`, { token: a.tokens.Reader })).status,
          400,
          bad,
        );
      assert.equal(
        (await svc.call('GET', `/v1/images?after=${randomUUID()}`, { token: a.tokens.Reader })).json.code,
        'IMAGE_NOT_FOUND',
      );
    });
  });
}

/** A package whose file path is `path` (same length as "ab/x.js"), with a consistent payload hash. */
function withPath(path: string): Buffer {
  const p = appPackage({
    files: [
      { path: 'ab/x.js', content: Buffer.from('1') },
      { path: 'main.js', content: Buffer.from('2') },
    ],
  });
  const m = p.readUInt32BE(8);
  const payloadStart = 20 + m;
  const end = signedRegionEnd(p);
  const out = Buffer.from(p);
  const at = out.indexOf('ab/x.js', payloadStart);
  out.write(path, at, 'latin1');
  // Keep the manifest's payloadSha256 true, so the path rule is what refuses it (the developer
  // signature no longer matches, but the service does not know that key anyway).
  const oldHash = createHash('sha256').update(p.subarray(payloadStart, end)).digest('hex');
  const newHash = createHash('sha256').update(out.subarray(payloadStart, end)).digest('hex');
  const mi = out.indexOf(oldHash, 20);
  out.write(newHash, mi, 'latin1');
  return out;
}

describe('file blob store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'heptad-blobs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  test('content-addressed, written once, checked on read', () => {
    const s = new FsBlobStore(dir);
    const sha = s.put(Buffer.from('image bytes'));
    assert.equal(sha, createHash('sha256').update('image bytes').digest('hex'));
    assert.equal(s.put(Buffer.from('image bytes')), sha);
    assert.deepEqual(s.get(sha), Buffer.from('image bytes'));
    assert.equal(s.size(sha), 11);
    assert.equal(s.get('0'.repeat(64)), undefined);
    const file = join(dir, 'sha256', sha.slice(0, 2), sha);
    assert.deepEqual(readdirSync(join(dir, 'sha256', sha.slice(0, 2))), [sha]);
    writeFileSync(file, 'tampered');
    assert.throws(() => s.get(sha), /does not match/);
    assert.throws(() => s.get('../../etc/passwd'), /not a blob name/);
    assert.equal(readFileSync(file, 'utf8'), 'tampered');
  });
});
