import { HeptadError } from '@heptad/protocol';
import { Type } from 'typebox';
import { access, changeContext, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import { errorResponses, Limit, Timestamp, Uuid } from '../http/schemas.ts';
import { type ImageService, MAX_IMAGE_BYTES } from './image-service.ts';

const ImageFields = {
  id: Uuid,
  tenantId: Uuid,
  componentId: Uuid,
  name: Type.String(),
  version: Type.String(),
  securityVersion: Type.Integer(),
  type: Type.String({ description: 'application (runtime images are the platform’s)' }),
  digest: Type.String({
    description: 'package digest: SHA-256 (hex) of the signed region, what devices measure',
  }),
  size: Type.Integer({ description: 'bytes of the production-signed package' }),
  uploadedBy: Uuid,
  createdAt: Timestamp,
};
const ImageSchema = Type.Object(ImageFields, { $id: 'Image' });
const ImageDetailSchema = Type.Object(
  {
    ...ImageFields,
    appManifest: Type.Unsafe<Record<string, unknown> | null>({
      type: ['object', 'null'],
      additionalProperties: true,
      description: 'the app manifest the package carries',
    }),
  },
  { $id: 'ImageDetail' },
);

const DEFAULT_PAGE = 100;

export function imageRoutes(app: App, { store, clock, images }: RouteDeps & { images: ImageService }): void {
  app.addSchema(ImageSchema);
  app.addSchema(ImageDetailSchema);
  const IdParams = Type.Object({ id: Uuid });

  // Image packages travel as raw bytes: authenticated (onRequest) before a byte is read, and
  // bounded by the route's own body limit.
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );

  app.post(
    '/v1/images',
    {
      bodyLimit: MAX_IMAGE_BYTES,
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['images'],
        summary:
          'Upload an application image package; the service validates it and signs it with the tenant key',
        description:
          'Body: the image package (docs/formats/image-package.md) as application/octet-stream, up to 64 MiB. ' +
          'Every structure, manifest and file digest is checked; the package is then signed with the tenant’s ' +
          'production image key and stored. Uploading the same package again answers 200 with the image.',
        response: { 200: Type.Ref('Image'), 201: Type.Ref('Image'), ...errorResponses(400, 409, 413, 415) },
      },
    },
    async (req, reply) => {
      const tenantId = tenantScope(store, req).tenantId;
      // text/plain and JSON have their own parsers: only raw bytes are a package.
      if (!Buffer.isBuffer(req.body))
        throw new HeptadError(
          'REQUEST_UNSUPPORTED_MEDIA_TYPE',
          'send the package as application/octet-stream',
        );
      const { image, created } = await images.add(changeContext(req, clock), tenantId, req.body);
      return reply.code(created ? 201 : 200).send(image);
    },
  );

  app.get(
    '/v1/images',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['images'],
        summary: "The tenant's images, newest first",
        querystring: Type.Object(
          { limit: Type.Optional(Limit), after: Type.Optional(Uuid), componentId: Type.Optional(Uuid) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(Type.Ref('Image')) }), ...errorResponses(400, 404) },
      },
    },
    async (req) => ({
      items: await tenantScope(store, req).images.list({
        limit: req.query.limit === undefined ? DEFAULT_PAGE : Number(req.query.limit),
        after: req.query.after,
        componentId: req.query.componentId?.toLowerCase(),
      }),
    }),
  );

  app.get(
    '/v1/images/:id',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['images'],
        summary: 'One image, with its app manifest',
        params: IdParams,
        response: { 200: Type.Ref('ImageDetail'), ...errorResponses(404) },
      },
    },
    async (req) => tenantScope(store, req).images.get(req.params.id),
  );

  app.get(
    '/v1/tenants/current/image-signing-key',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['images'],
        summary: "The tenant's production image-signing public key (devices of the tenant trust it)",
        response: {
          200: Type.Object({
            keyId: Type.String({ description: 'SHA-256 (hex) of the DER SubjectPublicKeyInfo' }),
            publicKeyPem: Type.String(),
          }),
          ...errorResponses(),
        },
      },
    },
    async (req) => images.signingKey(tenantScope(store, req).tenantId),
  );

  app.get(
    '/v1/images/:id/content',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['images'],
        summary: 'Download the production-signed image package',
        description: 'application/octet-stream; the ETag is the package digest.',
        params: IdParams,
        response: { ...errorResponses(404) },
      },
    },
    async (req, reply) => {
      const tenantId = tenantScope(store, req).tenantId;
      const { bytes, digest } = await images.content(tenantId, req.params.id);
      return reply
        .type('application/octet-stream')
        .header('etag', `"${digest}"`)
        .header('content-disposition', `attachment; filename="${req.params.id.toLowerCase()}.hpkg"`)
        .send(bytes);
    },
  );
}
