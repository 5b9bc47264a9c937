import {
  DEVICE_EVENT_KINDS,
  DEVICE_ID_PATTERN,
  HeptadError,
  MAX_LOG_ENTRIES,
  MAX_REPORT_EVENTS,
} from '@heptad/protocol';
import { Type } from 'typebox';
import { access, changeContext, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import {
  DeviceId,
  errorResponses,
  Limit,
  NullableString,
  NullableUuid,
  Timestamp,
  Uuid,
} from '../http/schemas.ts';
import type { TenantPki } from '../pki/tenant-pki.ts';
import { DEFAULT_ROTATION_OVERLAP_DAYS } from '../pki/tenant-pki.ts';
import type { AttestationService } from './attestation-service.ts';

const Hex32 = Type.String({ pattern: '^[0-9a-f]{64}$' });
/** A challenge nonce: 76 bytes, hex (see nonce-store.ts). */
const Nonce = Type.String({ pattern: '^[0-9a-f]{152}$' });
const Base64 = (maxLength: number) =>
  Type.String({ minLength: 4, maxLength, pattern: '^[A-Za-z0-9+/]+={0,2}$' });

/**
 * A runtime version as the package manifest has it: semver.org 2.0.0 (the expression of
 * protocol's package/manifest.ts), at most 128 characters.
 */
const SEMVER_PATTERN =
  '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$';
const Version = Type.String({ maxLength: 128, pattern: SEMVER_PATTERN });
/**
 * The version an event names (a package installed, refused or abandoned): bounded and of a safe
 * alphabet, not held to semver — the report travels with every attestation until the service
 * accepts it, so one odd version must not keep the device from ever attesting again.
 */
const EventVersion = Type.String({ minLength: 1, maxLength: 128, pattern: '^[0-9A-Za-z.+-]+$' });
const Slot = Type.Union([Type.Literal('A'), Type.Literal('B')]);
const Uint31 = Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 });

/**
 * The device report (protocol attestation.ts). Strict, because the service hashes it as received
 * into the quote binding and stores it: every string is bounded and of a known alphabet, and an
 * unknown field is refused rather than dropped (dropping it would break the binding anyway).
 */
const DeviceEventSchema = Type.Object(
  {
    at: Type.String({
      format: 'date-time',
      maxLength: 40,
      pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\\.[0-9]{1,9})?Z$',
      description: 'ISO-8601 UTC, device clock',
    }),
    kind: Type.Union(DEVICE_EVENT_KINDS.map((k) => Type.Literal(k))),
    slot: Type.Optional(Slot),
    version: Type.Optional(EventVersion),
    digest: Type.Optional(Hex32),
    code: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: '^[A-Za-z0-9_.-]+$',
        description: 'reason: a Heptad error code, an exit code or a signal name',
      }),
    ),
  },
  { additionalProperties: false },
);
const DeviceReportSchema = Type.Object(
  {
    runtime: Type.Object(
      {
        slot: Slot,
        version: Version,
        digest: Hex32,
        securityVersion: Uint31,
        trial: Type.Boolean(),
        floor: Uint31,
      },
      { additionalProperties: false },
    ),
    events: Type.Array(DeviceEventSchema, { maxItems: MAX_REPORT_EVENTS }),
  },
  {
    additionalProperties: false,
    description:
      "what the device's boot chain did since its last accepted report; bound into the quote with the nonce and CSR",
  },
);

const Evidence = Type.Object(
  {
    deviceId: DeviceId,
    nonce: Nonce,
    quote: Type.Object({ attest: Base64(2048), signature: Base64(1024) }, { additionalProperties: false }),
    log: Type.Array(
      Type.Object(
        {
          kind: Type.Union([Type.Literal('runtime'), Type.Literal('app')]),
          digest: Hex32,
          name: Type.Optional(Type.String({ maxLength: 100 })),
          version: Type.Optional(Type.String({ maxLength: 64 })),
          componentId: Type.Optional(Uuid),
          imageId: Type.Optional(Uuid),
        },
        { additionalProperties: false },
      ),
      { maxItems: MAX_LOG_ENTRIES },
    ),
    csr: Base64(4096),
    report: Type.Optional(DeviceReportSchema),
  },
  { additionalProperties: false },
);

const CaCert = Type.Object(
  {
    id: Uuid,
    kind: Type.Union([Type.Literal('root'), Type.Literal('issuing')]),
    generation: Type.Integer(),
    status: Type.Union([
      Type.Literal('active'),
      Type.Literal('next'),
      Type.Literal('retiring'),
      Type.Literal('retired'),
    ]),
    subject: Type.String(),
    serial: Type.String(),
    fingerprintSha256: Type.String(),
    notBefore: Timestamp,
    notAfter: Timestamp,
    activeFrom: Timestamp,
    certificatePem: Type.String(),
  },
  { $id: 'TenantCaCertificate' },
);

export interface AttestationDeps extends RouteDeps {
  readonly attestation: AttestationService;
  readonly pki: TenantPki;
  /** the broker URL a device is told, given the host name it reached the service by; null: none */
  readonly brokerUrl?: (requestHost: string) => string | null;
}

const PEM = 'application/x-pem-file';

export function attestationRoutes(
  app: App,
  { attestation, pki, store, clock, brokerUrl }: AttestationDeps,
): void {
  app.addSchema(CaCert);

  // Attestation is how a device without a certificate proves who it is: the two calls are not
  // bearer-authenticated; the quote, signed by the registered identity key, is the credential.
  app.post(
    '/v1/attestation/challenge',
    {
      config: { access: access.public },
      schema: {
        tags: ['attestation'],
        summary: 'Get a fresh single-use nonce (60 s) for a device to quote',
        security: [],
        body: Type.Object({ deviceId: DeviceId }, { additionalProperties: false }),
        response: {
          201: Type.Object({ nonce: Nonce, expiresAt: Timestamp }),
          ...errorResponses(404),
        },
      },
    },
    async (req, reply) => reply.code(201).send(await attestation.challenge(req.body.deviceId)),
  );

  app.post(
    '/v1/attestation/evidence',
    {
      config: { access: access.public },
      schema: {
        tags: ['attestation'],
        summary:
          'Send a quote, the measurement log, a CSR and the device report; receive a 24 h device certificate',
        description:
          'Checked in order, each with its own code: device registered, claimed, not quarantined; nonce known, ' +
          "this device's, unexpired, unused (then burnt); quote signed by the registered key; quote covers the " +
          'nonce bound to the CSR and the report; the log replays to the quoted register; the report names the ' +
          'last measured runtime; measured runtimes are known; measured apps are in the current or previous ' +
          'deployment of its group (any app on an appDevelopment device); the CSR is valid and its key not ' +
          'certified for another device. Every refusal is stored as a security event. On success the report is stored with ' +
          'the device and its slot-refused, trial-abandoned, install-refused, runtime-exited and ' +
          'watchdog-expired events become security events (device.<kind>).',
        security: [],
        body: Evidence,
        response: {
          201: Type.Object({
            deviceId: DeviceId,
            tenantId: Uuid,
            rotKind: Type.String(),
            capabilities: Type.Array(Type.String(), {
              description: "the device's capabilities (appDevelopment: developer apps, no cloud app updates)",
            }),
            imageKeysPem: Type.String({
              description: "the tenant's production image public keys (PEM, empty before its first image)",
            }),
            mqttUrl: Type.Union([Type.String(), Type.Null()], {
              description:
                'the MQTT broker the device keeps its session with (mqtts://HOST:PORT), null when the service runs none',
            }),
            certificate: Type.Object({
              serial: Type.String(),
              notBefore: Timestamp,
              notAfter: Timestamp,
              chainPem: Type.String({ description: 'the device certificate, then the issuing CA' }),
              rootPem: Type.String({ description: "the tenant's root CA" }),
            }),
          }),
          ...errorResponses(403, 404, 409),
        },
      },
    },
    async (req, reply) =>
      reply
        .code(201)
        .send({ ...(await attestation.attest(req.body)), mqttUrl: brokerUrl?.(req.hostname) ?? null }),
  );

  app.get(
    '/v1/tenants/current/ca-certificates',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['tenant pki'],
        summary: "The tenant's CA certificates: root and issuing generations with their status",
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('TenantCaCertificate')) }),
          ...errorResponses(),
        },
      },
    },
    async (req) => ({ items: await pki.list(tenantScope(store, req).tenantId) }),
  );

  app.get(
    '/v1/tenants/current/ca-certificates/trust-bundle',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['tenant pki'],
        summary: 'PEM to trust: the root CA, or with ?chain=true the root and every published issuing CA',
        querystring: Type.Object(
          { chain: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])) },
          { additionalProperties: false },
        ),
        response: { 200: Type.String(), ...errorResponses() },
      },
    },
    async (req, reply) => {
      const p = await pki.published(tenantScope(store, req).tenantId);
      return reply.header('content-type', PEM).send(req.query.chain === 'true' ? p.chain : p.root);
    },
  );

  app.post(
    '/v1/tenants/current/ca-certificates/rotate',
    {
      config: { access: access.tenant('Administrator') },
      schema: {
        tags: ['tenant pki'],
        summary: 'Create the next issuing CA: published now, issuing after the overlap window',
        body: Type.Object(
          { overlapDays: Type.Optional(Type.Integer({ minimum: 0, maximum: 365 })) },
          { additionalProperties: false },
        ),
        response: { 201: Type.Ref('TenantCaCertificate'), ...errorResponses(409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      const overlap = req.body.overlapDays ?? DEFAULT_ROTATION_OVERLAP_DAYS;
      const ca = await pki.rotate(tenantId, overlap);
      await store.forTenant(tenantId).audit.record(ctx, {
        tenantId,
        action: 'tenant-ca.rotated',
        targetType: 'tenant-ca',
        targetId: ca.id,
        detail: { generation: ca.generation, activeFrom: ca.activeFrom },
      });
      return reply.code(201).send(ca);
    },
  );

  app.get(
    '/v1/tenants/current/crl',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['tenant pki'],
        summary: "The tenant's certificate revocation lists (PEM, one per published issuing CA)",
        response: { 200: Type.String(), ...errorResponses() },
      },
    },
    async (req, reply) =>
      reply.header('content-type', PEM).send(await pki.crl(tenantScope(store, req).tenantId)),
  );

  // CRLs are signed public data that brokers fetch without credentials (RFC 5280 §5).
  app.get(
    '/pki/tenants/:tenantId/crl.pem',
    {
      config: { access: access.public },
      schema: {
        tags: ['tenant pki'],
        summary: "A tenant's CRLs for brokers (public: signed, not secret)",
        security: [],
        params: Type.Object({ tenantId: Uuid }),
        response: { 200: Type.String(), ...errorResponses(404) },
      },
    },
    async (req, reply) => {
      const tenant = await store.platform().tenants.get(req.params.tenantId.toLowerCase());
      return reply.header('content-type', PEM).send(await pki.crl(tenant.id));
    },
  );

  app.get(
    '/v1/security-events',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['attestation'],
        summary:
          "The tenant's security events (refused attestations, failures devices reported), newest first",
        querystring: Type.Object(
          {
            deviceId: Type.Optional(Type.String({ pattern: DEVICE_ID_PATTERN })),
            limit: Type.Optional(Limit),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            items: Type.Array(
              Type.Object({
                id: Uuid,
                tenantId: NullableUuid,
                deviceId: Type.String(),
                kind: Type.String(),
                reason: Type.String(),
                evidenceDigest: NullableString(),
                at: Timestamp,
                lastAt: Timestamp,
                count: Type.Integer(),
              }),
            ),
          }),
          ...errorResponses(),
        },
      },
    },
    async (req) => {
      const tenantId = tenantScope(store, req).tenantId;
      const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
      return {
        items: await store.attestation().listEvents(tenantId, {
          limit,
          ...(req.query.deviceId ? { deviceId: req.query.deviceId } : {}),
        }),
      };
    },
  );

  const RuntimeImage = Type.Object({
    digest: Hex32,
    version: Type.String(),
    securityVersion: Type.Integer(),
    createdAt: Timestamp,
  });
  app.post(
    '/v1/runtime-images',
    {
      config: { access: access.operator },
      schema: {
        tags: ['runtime images'],
        summary: 'Make a runtime image digest known to attestation (operator)',
        body: Type.Object(
          {
            digest: Hex32,
            version: Type.String({ minLength: 1, maxLength: 64, pattern: '^[0-9A-Za-z.+-]+$' }),
            securityVersion: Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: RuntimeImage, ...errorResponses(409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const image = await store.transaction(async (s) => {
        const images = s.platform().runtimeImages;
        if (await images.exists(req.body.digest)) {
          throw new HeptadError('RUNTIME_IMAGE_EXISTS');
        }
        const added = await images.add(req.body, ctx.now.toISOString());
        await s.platform().audit.record(ctx, {
          tenantId: null,
          action: 'runtime-image.added',
          targetType: 'runtime-image',
          targetId: added.digest,
          detail: { version: added.version, securityVersion: added.securityVersion },
        });
        return added;
      });
      return reply.code(201).send(image);
    },
  );

  app.get(
    '/v1/runtime-images',
    {
      config: { access: access.tenant('Reader', true) },
      schema: {
        tags: ['runtime images'],
        summary: 'The runtime images the platform knows',
        response: { 200: Type.Object({ items: Type.Array(RuntimeImage) }), ...errorResponses() },
      },
    },
    async () => ({ items: await store.platform().runtimeImages.list() }),
  );
}
