import { HeptadError } from '@heptad/protocol';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { access, changeContext, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import { deviceOf } from '../http/device-auth.ts';
import { DeviceGroupRef, errorResponses } from '../http/schemas.ts';
import { BlobCache, type BlobStore } from '../images/blob-store.ts';
import type { TufRepositoryName } from '../store/schema.ts';
import { TUF_REPOSITORIES, TUF_ROLES } from './metadata.ts';
import { parseMetadataFile, parseRange, parseTargetName } from './requests.ts';
import { type ServedFile, TENANT_SCOPE, type TufService } from './tuf-service.ts';

const FileParams = Type.Object({
  file: Type.String({
    maxLength: 64,
    description: 'timestamp.json, root.json (the newest), N.root.json, N.snapshot.json or N.targets.json',
  }),
});
const MetadataDescription =
  'TUF 1.0 metadata as signed (application/json), with an ETag; If-None-Match answers 304. ' +
  'Consistent snapshots: snapshot and targets are fetched by version. See docs/updates.md.';

function sendMetadata(req: FastifyRequest, reply: FastifyReply, f: ServedFile) {
  reply.header('etag', f.etag).header('cache-control', 'no-cache');
  if (req.headers['if-none-match'] === f.etag) return reply.code(304).send();
  return reply.type('application/json').send(f.bytes);
}

/**
 * Update metadata routes: the device's (mTLS; tenant and group come from the certificate and the
 * device record, never from the URL), the operators' read routes, and key rotation.
 */
export function tufRoutes(
  app: App,
  { store, clock, tuf, blobs }: RouteDeps & { tuf: TufService; blobs: BlobStore },
) {
  // Targets devices download, kept in memory once checked against their hash.
  const cache = new BlobCache(blobs);
  const directorScope = (req: FastifyRequest): string => {
    const group = deviceOf(req).deviceGroupId;
    if (group === null) throw new HeptadError('TUF_DEVICE_NOT_IN_GROUP');
    return group;
  };

  app.get(
    '/v1/device/tuf/image/metadata/:file',
    {
      config: { access: access.device },
      schema: {
        tags: ['update metadata'],
        summary: "A device fetches its tenant's image-repository metadata (mTLS)",
        description: MetadataDescription,
        params: FileParams,
        response: { ...errorResponses(404) },
      },
    },
    async (req, reply) => {
      const f = await tuf.metadata(
        deviceOf(req).tenantId,
        'image',
        TENANT_SCOPE,
        parseMetadataFile(req.params.file),
      );
      return sendMetadata(req, reply, f);
    },
  );

  app.get(
    '/v1/device/tuf/director/metadata/:file',
    {
      config: { access: access.device },
      schema: {
        tags: ['update metadata'],
        summary: "A device fetches its device group's director metadata (mTLS): what it must run",
        description: MetadataDescription,
        params: FileParams,
        response: { ...errorResponses(404, 409) },
      },
    },
    async (req, reply) => {
      const request = parseMetadataFile(req.params.file);
      const f = await tuf.metadata(deviceOf(req).tenantId, 'director', directorScope(req), request);
      return sendMetadata(req, reply, f);
    },
  );

  app.get(
    '/v1/device/tuf/image/targets/*',
    {
      config: { access: access.device },
      schema: {
        tags: ['update metadata'],
        summary: 'A device downloads an image-repository target by its consistent-snapshot name (mTLS)',
        description:
          'apps/<componentId>/<sha256>.<imageId>.hpkg or runtime/<sha256>.<imageId>.hpkg. One byte range ' +
          '(Range: bytes=a-b, a- or -n) answers 206 with Content-Range; an unsatisfiable or malformed range ' +
          '416. ETag is the SHA-256; If-None-Match answers 304.',
        params: Type.Object({ '*': Type.String({ maxLength: 300 }) }),
        response: { ...errorResponses(404, 416) },
      },
    },
    async (req, reply) => {
      const { path, sha256 } = parseTargetName(req.params['*']);
      const target = await tuf.target(deviceOf(req).tenantId, path, sha256);
      const size = blobs.size(target.sha256);
      if (size !== target.length)
        throw new HeptadError('INTERNAL_ERROR', `the file of target ${path} is missing or changed`);
      const etag = `"${target.sha256}"`;
      reply
        .header('etag', etag)
        .header('accept-ranges', 'bytes')
        .header('cache-control', 'private, no-transform');
      if (req.headers['if-none-match'] === etag) return reply.code(304).send();
      let range: ReturnType<typeof parseRange>;
      try {
        range = parseRange(req.headers.range, size);
      } catch (e) {
        reply.header('content-range', `bytes */${size}`);
        throw e;
      }
      reply.type('application/octet-stream');
      const bytes = cache.get(target.sha256);
      if (!range) return reply.header('content-length', size).send(bytes ?? blobs.stream(target.sha256));
      return reply
        .code(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        .header('content-length', range.end - range.start + 1)
        .send(
          bytes?.subarray(range.start, range.end + 1) ?? blobs.stream(target.sha256, range.start, range.end),
        );
    },
  );

  app.get(
    '/v1/tuf/image/metadata/:file',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['update metadata'],
        summary: "The tenant's image-repository metadata, as devices get it",
        description: MetadataDescription,
        params: FileParams,
        response: { ...errorResponses(404) },
      },
    },
    async (req, reply) => {
      const f = await tuf.metadata(
        tenantScope(store, req).tenantId,
        'image',
        TENANT_SCOPE,
        parseMetadataFile(req.params.file),
      );
      return sendMetadata(req, reply, f);
    },
  );

  app.get(
    '/v1/tuf/director/:deviceGroup/metadata/:file',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['update metadata'],
        summary: "A device group's director metadata, as its devices get it",
        description: MetadataDescription,
        params: Type.Object({ deviceGroup: DeviceGroupRef, file: FileParams.properties.file }),
        response: { ...errorResponses(404) },
      },
    },
    async (req, reply) => {
      const scope = tenantScope(store, req);
      const request = parseMetadataFile(req.params.file);
      const group = await scope.products.getGroup(req.params.deviceGroup);
      return sendMetadata(req, reply, await tuf.metadata(scope.tenantId, 'director', group.id, request));
    },
  );

  app.post(
    '/v1/tenants/current/tuf-keys/rotate',
    {
      config: { access: access.tenant('Administrator') },
      schema: {
        tags: ['update metadata'],
        summary: 'Rotate a TUF signing key of the tenant: a new root version lists the new key',
        description:
          'Without repository, both (image and director). Rotating root signs the new root with the old and ' +
          'the new root key; rotating another role re-signs its metadata with the new key. Audited.',
        body: Type.Object(
          {
            role: Type.Union(TUF_ROLES.map((r) => Type.Literal(r))),
            repository: Type.Optional(Type.Union(TUF_REPOSITORIES.map((r) => Type.Literal(r)))),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            items: Type.Array(
              Type.Object({
                repository: Type.String(),
                role: Type.String(),
                keyId: Type.String({ description: 'TUF key id of the new key' }),
                rootVersion: Type.Integer({ description: 'the root version that lists it' }),
              }),
            ),
          }),
          ...errorResponses(),
        },
      },
    },
    async (req) => {
      const ctx = changeContext(req, clock);
      const repos: readonly TufRepositoryName[] = req.body.repository
        ? [req.body.repository]
        : TUF_REPOSITORIES;
      return { items: await tuf.rotate(ctx, tenantScope(store, req).tenantId, req.body.role, repos) };
    },
  );
}
