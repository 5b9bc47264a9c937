// Runtime releases (issue 5, runtime feeds): the operator registers the platform runtime-signing
// key, publishes a platform-signed runtime to retail-eval, promotes it to retail, withdraws a bad
// one; each device group is offered the newest release of its feed that is not withdrawn. Refusals
// change nothing. On SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { verifyPackage } from '@heptad/protocol';
import { appPackage, octet } from './support/images.ts';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

const platform = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const runtime = (version: string, sv: number, key = platform.privateKey) =>
  appPackage({ type: 'runtime', name: 'heptad-runtime', version, securityVersion: sv, key });

for (const backend of backends()) {
  describe(`runtime releases on ${backend}`, () => {
    let svc: TestService;
    let a: SeededTenant;
    const op = () => svc.operatorToken;
    const publish = (bytes: Buffer, token = op()) =>
      svc.call('POST', '/v1/runtime-releases', { token, raw: bytes, headers: octet });
    const offered = async (group: string) =>
      svc.call('GET', `/v1/device-groups/${encodeURIComponent(group)}/runtime`, { token: a.tokens.Reader });

    before(async () => {
      svc = await createTestService(backend, 'runtime_releases');
      a = await seedTenant(svc, 'Feeds A');
      assert.equal(
        (await svc.call('POST', '/v1/products', { token: a.tokens.Contributor, body: { name: 'P1' } }))
          .status,
        201,
      );
    });
    after(() => svc.close());

    test('publish needs a registered platform key; then retail-eval, promote to retail, withdraw', async () => {
      const rt1 = runtime('1.0.0', 1);
      const early = await publish(rt1);
      assert.equal(early.json.code, 'IMAGE_SIGNATURE_UNTRUSTED');
      const signer = await svc.call('POST', '/v1/runtime-signers', {
        token: op(),
        body: { publicKeyPem: platform.publicKey.export({ format: 'pem', type: 'spki' }).toString() },
      });
      assert.equal(signer.status, 201, signer.body);
      const p1 = await publish(rt1);
      assert.equal(p1.status, 201, p1.body);
      assert.equal(p1.json['feed'], 'retail-eval');
      // Its digest is known to attestation now.
      const known = await svc.call('GET', '/v1/runtime-images', { token: op() });
      assert.ok(known.json.items?.some((i) => i['digest'] === p1.json['digest']));
      // Evaluation groups see it at once; retail groups not yet.
      assert.equal((await offered('P1/Production OS Evaluation')).json['version'], '1.0.0');
      assert.equal((await offered('P1/Production')).json.code, 'RUNTIME_RELEASE_NOT_FOUND');
      const promoted = await svc.call('POST', '/v1/runtime-releases/1.0.0/promote', {
        token: op(),
        body: { feed: 'retail' },
      });
      assert.equal(promoted.status, 200, promoted.body);
      assert.equal((await offered('P1/Production')).json['version'], '1.0.0');
      // 1.1.0 on retail-eval: evaluation moves on, retail stays.
      svc.now = new Date(svc.now.getTime() + 1000);
      const p2 = await publish(runtime('1.1.0', 2));
      assert.equal(p2.status, 201);
      assert.equal((await offered('P1/Field Test OS Evaluation')).json['version'], '1.1.0');
      assert.equal((await offered('P1/Production')).json['version'], '1.0.0');
      // Withdrawn after evaluation (seed 004): never offered again; evaluation falls back to 1.0.0.
      const w = await svc.call('POST', `/v1/runtime-releases/${p2.json['digest']}/withdraw`, { token: op() });
      assert.equal(w.status, 200, w.body);
      assert.equal(w.json['withdrawn'], true);
      assert.equal((await offered('P1/Field Test OS Evaluation')).json['version'], '1.0.0');
      const again = await svc.call('POST', '/v1/runtime-releases/1.1.0/promote', {
        token: op(),
        body: { feed: 'retail' },
      });
      assert.equal(again.json.code, 'RUNTIME_RELEASE_WITHDRAWN');
      // The download is the package, byte for byte.
      const dl = await svc.app.inject({
        method: 'GET',
        url: '/v1/runtime-releases/1.0.0/content',
        headers: { authorization: `Bearer ${a.tokens.Reader}` },
      });
      assert.equal(dl.statusCode, 200);
      assert.deepEqual(dl.rawPayload, rt1);
      assert.equal(
        verifyPackage(dl.rawPayload, new Map([[String(signer.json['keyId']), platform.publicKey]])).manifest
          .version,
        '1.0.0',
      );
      const list = await svc.call('GET', '/v1/runtime-releases', { token: a.tokens.Reader });
      assert.deepEqual(
        list.json.items?.map((r) => [r['version'], r['feed'], r['withdrawn']]),
        [
          ['1.1.0', 'retail-eval', true],
          ['1.0.0', 'retail', false],
        ],
      );
    });

    test('refused, nothing changed', async () => {
      const cases: Array<
        [string, () => Promise<{ status: number; json: { code?: string } }>, number, string]
      > = [
        [
          'signed by a stranger',
          () => publish(runtime('2.0.0', 3, stranger.privateKey)),
          400,
          'IMAGE_SIGNATURE_UNTRUSTED',
        ],
        [
          'an application package',
          () => publish(appPackage({ key: platform.privateKey })),
          400,
          'IMAGE_TYPE_NOT_ALLOWED',
        ],
        ['the same version again', () => publish(runtime('1.0.0', 1)), 409, 'RUNTIME_RELEASE_EXISTS'],
        ['junk', () => publish(randomBytes(100)), 400, 'IMAGE_MAGIC_INVALID'],
        [
          'a tenant publishing',
          () => publish(runtime('2.0.1', 3), a.tokens.Administrator),
          403,
          'AUTH_OPERATOR_REQUIRED',
        ],
        [
          'promote unknown',
          () =>
            svc.call('POST', '/v1/runtime-releases/9.9.9/promote', { token: op(), body: { feed: 'retail' } }),
          404,
          'RUNTIME_RELEASE_NOT_FOUND',
        ],
        [
          'promote retail again',
          () =>
            svc.call('POST', '/v1/runtime-releases/1.0.0/promote', { token: op(), body: { feed: 'retail' } }),
          409,
          'RUNTIME_RELEASE_ALREADY_RETAIL',
        ],
        [
          'promote to a made-up feed',
          () =>
            svc.call('POST', '/v1/runtime-releases/1.0.0/promote', { token: op(), body: { feed: 'beta' } }),
          400,
          'REQUEST_INVALID',
        ],
        [
          'withdraw twice',
          () => svc.call('POST', '/v1/runtime-releases/1.1.0/withdraw', { token: op() }),
          409,
          'RUNTIME_RELEASE_WITHDRAWN',
        ],
        [
          'a signer that is not a key',
          () => svc.call('POST', '/v1/runtime-signers', { token: op(), body: { publicKeyPem: 'nope' } }),
          400,
          'RUNTIME_SIGNER_INVALID',
        ],
        [
          'an RSA signer',
          () =>
            svc.call('POST', '/v1/runtime-signers', {
              token: op(),
              body: {
                publicKeyPem: generateKeyPairSync('rsa', { modulusLength: 1024 })
                  .publicKey.export({ format: 'pem', type: 'spki' })
                  .toString(),
              },
            }),
          400,
          'RUNTIME_SIGNER_INVALID',
        ],
        [
          'the same signer twice',
          () =>
            svc.call('POST', '/v1/runtime-signers', {
              token: op(),
              body: { publicKeyPem: platform.publicKey.export({ format: 'pem', type: 'spki' }).toString() },
            }),
          409,
          'RUNTIME_SIGNER_EXISTS',
        ],
        [
          'a path-looking ref',
          () => svc.call('POST', '/v1/runtime-releases/..%2F..%2Fetc/withdraw', { token: op() }),
          400,
          'REQUEST_INVALID',
        ],
      ];
      for (const [name, call, status, code] of cases) {
        const before = await svc.snapshot();
        const r = await call();
        assert.equal(r.status, status, `${name}: ${JSON.stringify(r.json)}`);
        assert.equal(r.json.code, code, name);
        assert.equal(await svc.snapshot(), before, name);
      }
    });
  });
}
