import { HeptadError, verifyPackage } from '@heptad/protocol';
import { Type } from 'typebox';
import { access, changeContext, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import { DeviceGroupRef, errorResponses, Timestamp } from '../http/schemas.ts';
import type { BlobStore } from '../images/blob-store.ts';
import { MAX_IMAGE_BYTES } from '../images/image-service.ts';
import { RuntimeReleaseStore } from './release-store.ts';

/** A release by package digest (64 hex) or by version. */
const ReleaseRef = Type.String({ minLength: 1, maxLength: 128, pattern: '^[0-9A-Za-z.+-]+$' });
const ReleaseSchema = Type.Object(
  {
    digest: Type.String({ description: 'package digest: what the bootloader measures' }),
    version: Type.String(),
    securityVersion: Type.Integer(),
    feed: Type.String({ description: 'retail-eval (published) or retail (promoted)' }),
    withdrawn: Type.Boolean(),
    size: Type.Integer(),
    publishedAt: Timestamp,
    promotedAt: Type.Unsafe<string | null>({ type: ['string', 'null'] }),
    withdrawnAt: Type.Unsafe<string | null>({ type: ['string', 'null'] }),
  },
  { $id: 'RuntimeRelease' },
);
const SignerSchema = Type.Object({ keyId: Type.String(), publicKeyPem: Type.String(), createdAt: Timestamp });

/**
 * Runtime ("OS") releases, by the operator: publish a platform-signed runtime to the
 * retail-eval feed, promote it to retail, withdraw it. A device group takes the newest release
 * of its feed that is not withdrawn (evaluation groups see retail releases too).
 */
export function runtimeReleaseRoutes(
  app: App,
  { store, clock, blobs, updates }: RouteDeps & { blobs: BlobStore },
): void {
  app.addSchema(ReleaseSchema);
  const releases = () => new RuntimeReleaseStore(store.db);
  const RefParams = Type.Object({ ref: ReleaseRef });

  app.post(
    '/v1/runtime-signers',
    {
      config: { access: access.operator },
      schema: {
        tags: ['runtime releases'],
        summary: "Add a platform runtime-signing public key (the key devices' read-only area trusts)",
        body: Type.Object(
          { publicKeyPem: Type.String({ maxLength: 4096 }) },
          { additionalProperties: false },
        ),
        response: { 201: SignerSchema, ...errorResponses(409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const signer = await store.transaction(async (s) => {
        const added = await new RuntimeReleaseStore(s.db).addSigner(
          req.body.publicKeyPem,
          ctx.now.toISOString(),
        );
        await s.platform().audit.record(ctx, {
          tenantId: null,
          action: 'runtime-signer.added',
          targetType: 'runtime-signer',
          targetId: added.keyId,
        });
        return added;
      });
      return reply.code(201).send(signer);
    },
  );

  app.get(
    '/v1/runtime-signers',
    {
      config: { access: access.tenant('Reader', true) },
      schema: {
        tags: ['runtime releases'],
        summary: 'The platform runtime-signing public keys',
        response: { 200: Type.Object({ items: Type.Array(SignerSchema) }), ...errorResponses() },
      },
    },
    async () => ({ items: await releases().signers() }),
  );

  app.post(
    '/v1/runtime-releases',
    {
      bodyLimit: MAX_IMAGE_BYTES,
      config: { access: access.operator },
      schema: {
        tags: ['runtime releases'],
        summary: 'Publish a platform-signed runtime package to the retail-eval feed',
        description:
          'Body: the runtime package as application/octet-stream. It must verify against a platform ' +
          'runtime-signing key (POST /v1/runtime-signers). Its digest becomes known to attestation.',
        response: { 201: Type.Ref('RuntimeRelease'), ...errorResponses(409, 413, 415) },
      },
    },
    async (req, reply) => {
      const body = req.body;
      if (!Buffer.isBuffer(body))
        throw new HeptadError(
          'REQUEST_UNSUPPORTED_MEDIA_TYPE',
          'send the package as application/octet-stream',
        );
      const ctx = changeContext(req, clock);
      const keys = await releases().trustedKeys();
      if (keys.size === 0)
        throw new HeptadError(
          'IMAGE_SIGNATURE_UNTRUSTED',
          'no platform runtime-signing key is registered yet',
        );
      const pkg = verifyPackage(body, keys);
      if (pkg.manifest.type !== 'runtime')
        throw new HeptadError('IMAGE_TYPE_NOT_ALLOWED', 'the runtime feeds take runtime packages only');
      const m = pkg.manifest;
      const blob = blobs.put(body);
      const release = await store.transaction(async (s) => {
        const now = ctx.now.toISOString();
        const r = await new RuntimeReleaseStore(s.db).insert({
          digest: pkg.digest,
          version: m.version,
          security_version: m.securityVersion,
          feed: 'retail-eval',
          blob_sha256: blob,
          size: body.length,
          published_at: now,
          promoted_at: null,
          withdrawn_at: null,
        });
        // Devices that boot it must be able to attest.
        const known = s.platform().runtimeImages;
        if (!(await known.exists(pkg.digest)))
          await known.add(
            { digest: pkg.digest, version: m.version, securityVersion: m.securityVersion },
            now,
          );
        await s.platform().audit.record(ctx, {
          tenantId: null,
          action: 'runtime-release.published',
          targetType: 'runtime-release',
          targetId: pkg.digest,
          detail: { version: m.version, securityVersion: m.securityVersion },
        });
        // Every tenant's image repository names it; evaluation groups' directors offer it.
        await updates.runtimeChanged(s);
        return r;
      });
      return reply.code(201).send(release);
    },
  );

  app.get(
    '/v1/runtime-releases',
    {
      config: { access: access.tenant('Reader', true) },
      schema: {
        tags: ['runtime releases'],
        summary: 'Runtime releases, newest first',
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('RuntimeRelease')) }),
          ...errorResponses(),
        },
      },
    },
    async () => ({ items: await releases().list() }),
  );

  for (const action of ['promote', 'withdraw'] as const) {
    app.post(
      `/v1/runtime-releases/:ref/${action}`,
      {
        config: { access: access.operator },
        schema: {
          tags: ['runtime releases'],
          summary:
            action === 'promote'
              ? 'Promote a release from retail-eval to retail'
              : 'Withdraw a release: it is never offered again',
          params: RefParams,
          ...(action === 'promote'
            ? { body: Type.Object({ feed: Type.Literal('retail') }, { additionalProperties: false }) }
            : {}),
          response: { 200: Type.Ref('RuntimeRelease'), ...errorResponses(404, 409) },
        },
      },
      async (req) => {
        const ctx = changeContext(req, clock);
        return store.transaction(async (s) => {
          const rs = new RuntimeReleaseStore(s.db);
          const r =
            action === 'promote'
              ? await rs.promote(req.params.ref, ctx.now.toISOString())
              : await rs.withdraw(req.params.ref, ctx.now.toISOString());
          await s.platform().audit.record(ctx, {
            tenantId: null,
            action: `runtime-release.${action === 'promote' ? 'promoted' : 'withdrawn'}`,
            targetType: 'runtime-release',
            targetId: r.digest,
            detail: { version: r.version },
          });
          await updates.runtimeChanged(s);
          return r;
        });
      },
    );
  }

  app.get(
    '/v1/runtime-releases/:ref/content',
    {
      config: { access: access.tenant('Reader', true) },
      schema: {
        tags: ['runtime releases'],
        summary: 'Download a runtime release package',
        params: RefParams,
        response: { ...errorResponses(404) },
      },
    },
    async (req, reply) => {
      const { sha256, digest } = await releases().blobOf(req.params.ref);
      const bytes = blobs.get(sha256);
      if (!bytes) throw new HeptadError('INTERNAL_ERROR', `the file of runtime release ${digest} is missing`);
      return reply.type('application/octet-stream').header('etag', `"${digest}"`).send(bytes);
    },
  );

  app.get(
    '/v1/device-groups/:deviceGroup/runtime',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['runtime releases'],
        summary: "The runtime release a device group's feed offers now",
        params: Type.Object({ deviceGroup: DeviceGroupRef }),
        response: { 200: Type.Ref('RuntimeRelease'), ...errorResponses(404) },
      },
    },
    async (req) => {
      const group = await tenantScope(store, req).products.getGroup(req.params.deviceGroup);
      const offered = await releases().offered(group.osFeed);
      if (!offered)
        throw new HeptadError('RUNTIME_RELEASE_NOT_FOUND', `no release on the ${group.osFeed} feed yet`);
      return offered;
    },
  );
}
