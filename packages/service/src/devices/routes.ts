import { DEFAULT_MEASUREMENT_PCR, DEVICE_EVENT_KINDS, HeptadError } from '@heptad/protocol';
import { type Static, Type } from 'typebox';
import { access, changeContext, principalOf, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import {
  DeviceGroupRef,
  DeviceId,
  errorResponses,
  Limit,
  NullableString,
  NullableTimestamp,
  NullableUuid,
  Timestamp,
} from '../http/schemas.ts';
import { MAX_CLAIM_BATCH } from './device-store.ts';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const NullableText = NullableString();

/** A string enum in a RESPONSE schema: `enum`, not anyOf of constants (see NullableString). */
const StringEnum = <T extends string>(values: readonly T[]) =>
  Type.Unsafe<T>({ type: 'string', enum: [...values] });
const Slot = StringEnum(['A', 'B'] as const);
const DeviceEventSchema = Type.Object({
  at: Type.String({ description: 'ISO-8601 UTC, as the device clock had it' }),
  kind: StringEnum(DEVICE_EVENT_KINDS),
  slot: Type.Optional(Slot),
  version: Type.Optional(Type.String()),
  digest: Type.Optional(Type.String()),
  code: Type.Optional(Type.String({ description: 'reason: a Heptad error code, an exit code or a signal' })),
});
const DeviceRuntimeSchema = Type.Object({
  slot: Slot,
  version: Type.String(),
  digest: Type.String({ description: 'SHA-256 (hex) of the runtime package: the last runtime measured' }),
  securityVersion: Type.Integer(),
  trial: Type.Boolean({ description: 'a trial that has not committed yet' }),
  floor: Type.Integer({ description: 'the anti-rollback floor the bootloader enforces' }),
  reportedAt: Timestamp,
  events: Type.Optional(
    Type.Array(DeviceEventSchema, {
      description: 'the newest events the boot chain reported, oldest first; only where one device is read',
    }),
  ),
});

const DeviceFields = {
  measurementPcr: Type.Integer(),
  quarantinedAt: NullableTimestamp,
  quarantineReason: NullableText,
  lastAttestedAt: NullableTimestamp,
  // A type array, not anyOf (see NullableString): the serializer picks the branch by typeof.
  runtime: Type.Unsafe<Static<typeof DeviceRuntimeSchema> | null>({
    ...DeviceRuntimeSchema,
    type: ['object', 'null'],
    description: 'what the device reported at its last successful attestation; null until a report came',
  }),
};

const DeviceSchema = Type.Object(
  {
    id: DeviceId,
    rotKind: Type.String(),
    ...DeviceFields,
    registeredAt: Timestamp,
    tenantId: NullableUuid,
    claimedAt: NullableTimestamp,
    deviceGroupId: NullableUuid,
    deviceGroupName: NullableText,
    productId: NullableUuid,
    productName: NullableText,
  },
  { $id: 'Device' },
);

const RegisteredDeviceSchema = Type.Object(
  {
    id: DeviceId,
    rotKind: Type.String(),
    ...DeviceFields,
    tpmPublic: NullableText,
    registeredAt: Timestamp,
    tenantId: NullableUuid,
    claimedAt: NullableTimestamp,
    deviceGroupId: NullableUuid,
    deviceGroupName: NullableText,
    productId: NullableUuid,
    productName: NullableText,
    publicKeyPem: Type.String(),
  },
  { $id: 'RegisteredDevice' },
);

const DevicePage = Type.Object({
  items: Type.Array(Type.Ref('Device')),
  nextCursor: NullableText,
});
const DEFAULT_PAGE = 100;
const limitOf = (s: string | undefined) => (s === undefined ? DEFAULT_PAGE : Number(s));

export function deviceRoutes(app: App, { store, clock, sessions, updates }: RouteDeps): void {
  app.addSchema(DeviceSchema);
  app.addSchema(RegisteredDeviceSchema);
  const IdParams = Type.Object({ deviceId: DeviceId });

  app.post(
    '/v1/devices',
    {
      config: { access: access.operator },
      schema: {
        tags: ['devices'],
        summary: 'Register a manufactured device in the device registry (operator)',
        body: Type.Object(
          {
            id: DeviceId,
            publicKey: Type.String({
              minLength: 1,
              maxLength: 4096,
              description: 'identity key, SPKI PEM, ECDSA P-256',
            }),
            rotKind: Type.Optional(
              Type.Union([Type.Literal('tpm'), Type.Literal('soft'), Type.Literal('unknown')]),
            ),
            measurementPcr: Type.Optional(Type.Integer({ minimum: 0, maximum: 23 })),
            tpmPublic: Type.Optional(
              Type.String({
                minLength: 4,
                maxLength: 2048,
                pattern: '^[A-Za-z0-9+/]+={0,2}$',
                description: 'base64 TPM2B_PUBLIC of a TPM identity key',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Ref('RegisteredDevice'), ...errorResponses(409) },
      },
    },
    async (req, reply) => {
      const ctx = changeContext(req, clock);
      const b = req.body;
      const device = await store.transaction((s) =>
        s.platform().registry.register(ctx, {
          id: b.id,
          publicKeyPem: b.publicKey,
          rotKind: b.rotKind ?? 'unknown',
          measurementPcr: b.measurementPcr ?? DEFAULT_MEASUREMENT_PCR,
          tpmPublic: b.tpmPublic,
        }),
      );
      return reply.code(201).send(device);
    },
  );

  app.post(
    '/v1/devices/claim',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['devices'],
        summary: `Claim up to ${MAX_CLAIM_BATCH} devices for the tenant, all or nothing`,
        description:
          'Claiming is one-time: a device claimed by another tenant is refused and only the operator can unclaim it.',
        body: Type.Object(
          {
            deviceIds: Type.Array(DeviceId, { minItems: 1, maxItems: MAX_CLAIM_BATCH, uniqueItems: true }),
            deviceGroup: Type.Optional(DeviceGroupRef),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ claimed: Type.Array(DeviceId), alreadyClaimed: Type.Array(DeviceId) }),
          ...errorResponses(404, 409),
        },
      },
    },
    async (req) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      return store.transaction(async (s) => {
        const result = await s
          .forTenant(tenantId)
          .devices.claim(ctx, req.body.deviceIds, req.body.deviceGroup);
        // Devices joined the group: its director files get versions above any they hold.
        if (req.body.deviceGroup !== undefined && result.claimed.length > 0) {
          const group = await s.forTenant(tenantId).products.getGroup(req.body.deviceGroup);
          await updates.deviceJoined(s, tenantId, group.id);
        }
        return result;
      });
    },
  );

  app.get(
    '/v1/devices',
    {
      config: { access: access.tenant('Reader', true) },
      schema: {
        tags: ['devices'],
        summary: "List devices: the tenant's claimed devices, or the whole registry for the operator",
        querystring: Type.Object(
          {
            deviceGroup: Type.Optional(DeviceGroupRef),
            limit: Type.Optional(Limit),
            after: Type.Optional(DeviceId),
          },
          { additionalProperties: false },
        ),
        response: { 200: DevicePage, ...errorResponses(404) },
      },
    },
    async (req) => {
      const p = principalOf(req);
      const page = {
        limit: limitOf(req.query.limit),
        ...(req.query.after ? { after: req.query.after } : {}),
      };
      if (p.tenantId === null) {
        if (req.query.deviceGroup !== undefined) throw new HeptadError('AUTH_TENANT_REQUIRED');
        return store.platform().registry.list(page);
      }
      return tenantScope(store, req).devices.list({
        ...page,
        ...(req.query.deviceGroup !== undefined ? { deviceGroup: req.query.deviceGroup } : {}),
      });
    },
  );

  app.get(
    '/v1/devices/:deviceId',
    {
      config: { access: access.tenant('Reader', true) },
      schema: {
        tags: ['devices'],
        summary: 'Show a device',
        params: IdParams,
        response: { 200: Type.Ref('Device'), ...errorResponses(404) },
      },
    },
    async (req) => {
      const p = principalOf(req);
      if (p.tenantId === null) return store.platform().registry.get(req.params.deviceId);
      return tenantScope(store, req).devices.get(req.params.deviceId);
    },
  );

  app.patch(
    '/v1/devices/:deviceId',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['devices'],
        summary: 'Move a device to another device group (null: no group)',
        params: IdParams,
        body: Type.Object({ deviceGroup: Nullable(DeviceGroupRef) }, { additionalProperties: false }),
        response: { 200: Type.Ref('Device'), ...errorResponses(404) },
      },
    },
    async (req) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      return store.transaction(async (s) => {
        const device = await s.forTenant(tenantId).devices.update(ctx, req.params.deviceId, req.body);
        // The versioning rule (docs/updates.md): the destination group's director metadata is
        // signed again with versions above anything the device saw in its old group.
        if (device.deviceGroupId !== null) await updates.deviceJoined(s, tenantId, device.deviceGroupId);
        return device;
      });
    },
  );

  app.post(
    '/v1/devices/:deviceId/unclaim',
    {
      config: { access: access.operator },
      schema: {
        tags: ['devices'],
        summary: 'Unclaim a device: take it from its tenant so it can be claimed again (operator)',
        params: IdParams,
        response: { 200: Type.Ref('RegisteredDevice'), ...errorResponses(404, 409) },
      },
    },
    async (req) => {
      const ctx = changeContext(req, clock);
      const device = await store.transaction((s) => s.platform().registry.unclaim(ctx, req.params.deviceId));
      // Its certificates name the old tenant: its live broker sessions end now.
      sessions.endDeviceSessions(device.id, 'unclaimed');
      return device;
    },
  );

  app.post(
    '/v1/devices/:deviceId/quarantine',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['devices'],
        summary: 'Quarantine a device: no new certificate, current certificates revoked (on the CRL)',
        params: IdParams,
        body: Type.Object(
          { reason: Type.Optional(Type.String({ maxLength: 500, pattern: '^[^\\u0000-\\u001f\\u007f]*$' })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Ref('Device'), ...errorResponses(404) },
      },
    },
    async (req) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      const device = await store.transaction((s) =>
        s.forTenant(tenantId).devices.quarantine(ctx, req.params.deviceId, req.body.reason ?? ''),
      );
      // Its certificates are revoked: its live broker sessions end now, not at reconnect.
      sessions.endDeviceSessions(device.id, 'quarantined');
      return device;
    },
  );

  app.delete(
    '/v1/devices/:deviceId/quarantine',
    {
      config: { access: access.tenant('Contributor') },
      schema: {
        tags: ['devices'],
        summary: 'Release a device from quarantine (revoked certificates stay revoked; it attests afresh)',
        params: IdParams,
        response: { 200: Type.Ref('Device'), ...errorResponses(404, 409) },
      },
    },
    async (req) => {
      const ctx = changeContext(req, clock);
      const tenantId = tenantScope(store, req).tenantId;
      return store.transaction((s) => s.forTenant(tenantId).devices.release(ctx, req.params.deviceId));
    },
  );
}
