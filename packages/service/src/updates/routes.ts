/**
 * Deployment progress: devices report each update step (POST /v1/device/update-status, mTLS),
 * the service keeps the newest line per device and component, and a deployment's progress is
 * computed from those lines for every device of its group (GET /v1/deployments/{id}/progress).
 */
import { MAX_UPDATE_STATUS_BATCH, type UPDATE_STATES } from '@heptad/protocol';
import type { Kysely } from 'kysely';
import { Type } from 'typebox';
import { access, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import { deviceOf } from '../http/device-auth.ts';
import { DeviceId, errorResponses, Limit, Timestamp, Uuid } from '../http/schemas.ts';
import type { Database } from '../store/schema.ts';

const State = Type.Union([
  Type.Literal('pending'),
  Type.Literal('downloading'),
  Type.Literal('installed'),
  Type.Literal('failed'),
  Type.Literal('rolled-back'),
]);
const DeviceTime = Type.String({
  maxLength: 40,
  pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\\.[0-9]{1,9})?Z$',
  description: 'ISO-8601 UTC, device clock',
});
const Code = Type.String({ pattern: '^[A-Z][A-Z0-9_]{0,63}$' });

/** A device's state for a deployment: the worst of its images' states. */
export const DEVICE_PROGRESS = ['installed', 'pending', 'downloading', 'rolled-back', 'failed'] as const;
type Progress = (typeof DEVICE_PROGRESS)[number];
const ProgressState = Type.Union([
  Type.Literal('installed'),
  Type.Literal('pending'),
  Type.Literal('downloading'),
  Type.Literal('rolled-back'),
  Type.Literal('failed'),
]);
const worse = (a: Progress, b: Progress): Progress =>
  DEVICE_PROGRESS.indexOf(a) >= DEVICE_PROGRESS.indexOf(b) ? a : b;

/** Reports dated this far into the future (device clock) are refused: they would shadow real ones. */
const MAX_FUTURE_MS = 24 * 3_600_000;

export function updateRoutes(app: App, { store, clock }: RouteDeps): void {
  app.post(
    '/v1/device/update-status',
    {
      config: { access: access.device },
      schema: {
        tags: ['updates'],
        summary: "Report the device's update steps (device, mTLS with its tenant-CA certificate)",
        description:
          'One line per component: its image and where the update stands (pending, downloading, installed, ' +
          'failed, rolled-back, with the error code). The newest line per component replaces the previous ' +
          'one; a line older than the one held is ignored. The device and tenant come from the certificate.',
        security: [],
        body: Type.Object(
          {
            statuses: Type.Array(
              Type.Object(
                {
                  componentId: Uuid,
                  imageId: Uuid,
                  state: State,
                  code: Type.Optional(Code),
                  at: DeviceTime,
                },
                { additionalProperties: false },
              ),
              { minItems: 1, maxItems: MAX_UPDATE_STATUS_BATCH },
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ accepted: Type.Integer() }), ...errorResponses(400, 401, 403) },
      },
    },
    async (req) => {
      const device = deviceOf(req);
      const now = clock();
      const received = now.toISOString();
      const rows = req.body.statuses
        .filter((s) => Number.isFinite(Date.parse(s.at)) && Date.parse(s.at) <= now.getTime() + MAX_FUTURE_MS)
        .map((s) => ({
          tenant_id: device.tenantId,
          device_id: device.deviceId,
          component_id: s.componentId.toLowerCase(),
          image_id: s.imageId.toLowerCase(),
          state: s.state,
          code: s.state === 'failed' || s.state === 'rolled-back' ? (s.code ?? null) : null,
          at: new Date(s.at).toISOString(),
          received_at: received,
        }));
      // One line per component in a batch: the newest.
      const newest = new Map<string, (typeof rows)[number]>();
      for (const r of rows) {
        const held = newest.get(r.component_id);
        if (!held || held.at <= r.at) newest.set(r.component_id, r);
      }
      await store.transaction(async (s) => {
        for (const r of newest.values()) {
          await s.db
            .insertInto('device_update_status')
            .values(r)
            .onConflict((oc) =>
              oc
                .columns(['device_id', 'component_id'])
                .doUpdateSet({
                  tenant_id: (eb) => eb.ref('excluded.tenant_id'),
                  image_id: (eb) => eb.ref('excluded.image_id'),
                  state: (eb) => eb.ref('excluded.state'),
                  code: (eb) => eb.ref('excluded.code'),
                  at: (eb) => eb.ref('excluded.at'),
                  received_at: (eb) => eb.ref('excluded.received_at'),
                })
                // A stale line (older device time) never replaces a newer one; a line of another
                // tenant (the device was claimed again) always does.
                .where((eb) =>
                  eb.or([
                    eb('device_update_status.at', '<=', eb.ref('excluded.at')),
                    eb('device_update_status.tenant_id', '<>', eb.ref('excluded.tenant_id')),
                  ]),
                ),
            )
            .execute();
        }
      });
      return { accepted: newest.size };
    },
  );

  app.get(
    '/v1/devices/:deviceId/update-status',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['updates'],
        summary: 'What a device last reported about each component it updates (runtime and apps)',
        params: Type.Object({ deviceId: DeviceId }),
        response: {
          200: Type.Object({
            items: Type.Array(
              Type.Object({
                componentId: Uuid,
                imageId: Uuid,
                state: State,
                code: Type.Optional(Type.String()),
                at: Timestamp,
                receivedAt: Timestamp,
              }),
            ),
          }),
          ...errorResponses(404),
        },
      },
    },
    async (req) => {
      const scope = tenantScope(store, req);
      await scope.devices.get(req.params.deviceId);
      const rows = await store.db
        .selectFrom('device_update_status')
        .selectAll()
        .where('tenant_id', '=', scope.tenantId)
        .where('device_id', '=', req.params.deviceId)
        .orderBy('component_id')
        .execute();
      return {
        items: rows.map((r) => ({
          componentId: r.component_id,
          imageId: r.image_id,
          state: r.state as (typeof UPDATE_STATES)[number],
          ...(r.code !== null ? { code: r.code } : {}),
          at: r.at,
          receivedAt: r.received_at,
        })),
      };
    },
  );

  app.get(
    '/v1/device/image-keys',
    {
      config: { access: access.device },
      schema: {
        tags: ['updates'],
        summary:
          "The tenant's production image public keys (device, mTLS): what cloud-deployed apps are signed with",
        description:
          'The device verifies every app package against these keys before it installs or starts it. Empty ' +
          "before the tenant's first image. The attestation answer carries the same keys.",
        security: [],
        response: { 200: Type.Object({ keysPem: Type.String() }), ...errorResponses(401, 403) },
      },
    },
    async (req) => {
      const device = deviceOf(req);
      const keys = await store.db
        .selectFrom('tenant_image_keys')
        .select('public_key_pem')
        .where('tenant_id', '=', device.tenantId)
        .execute();
      return { keysPem: keys.map((k) => k.public_key_pem).join('') };
    },
  );

  const ImageProgress = Type.Object({
    imageId: Uuid,
    componentId: Uuid,
    state: ProgressState,
    code: Type.Optional(Type.String()),
    at: Type.Optional(Timestamp),
  });

  app.get(
    '/v1/deployments/:id/progress',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['deployments'],
        summary: "Per-device progress of a deployment, from the devices' update reports",
        description:
          "Each device of the deployment's group, with each image's state as the device last reported it: " +
          'pending (nothing reported for this image yet), downloading, installed, failed (with its code) or ' +
          'rolled-back. A device is as far as its least advanced image. Devices in id order; page with after.',
        params: Type.Object({ id: Uuid }),
        querystring: Type.Object(
          { limit: Type.Optional(Limit), after: Type.Optional(DeviceId) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            deploymentId: Uuid,
            current: Type.Boolean(),
            summary: Type.Object({
              devices: Type.Integer(),
              installed: Type.Integer(),
              pending: Type.Integer(),
              downloading: Type.Integer(),
              failed: Type.Integer(),
              rolledBack: Type.Integer(),
            }),
            items: Type.Array(
              Type.Object({
                deviceId: DeviceId,
                state: ProgressState,
                images: Type.Array(ImageProgress),
              }),
            ),
          }),
          ...errorResponses(404),
        },
      },
    },
    async (req) => {
      const scope = tenantScope(store, req);
      const deployment = await scope.deployments.get(req.params.id);
      const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
      // The summary covers the whole group (two queries), the items one page of it.
      const all = await statuses(store.db, scope.tenantId, deployment.deviceGroupId);
      const summary = { devices: 0, installed: 0, pending: 0, downloading: 0, failed: 0, rolledBack: 0 };
      const perDevice = new Map<
        string,
        Map<string, { image_id: string; state: string; code: string | null; at: string }>
      >();
      for (const r of all.rows) {
        const m = perDevice.get(r.device_id) ?? new Map();
        m.set(r.component_id, r);
        perDevice.set(r.device_id, m);
      }
      const judge = (deviceId: string) => {
        const held = perDevice.get(deviceId);
        let state = 'installed' as Progress;
        const images = deployment.images.map((img) => {
          const r = held?.get(img.componentId);
          const s: Progress = r && r.image_id === img.id ? (r.state as Progress) : 'pending';
          state = worse(state, s);
          return {
            imageId: img.id,
            componentId: img.componentId,
            state: s,
            ...(r && r.image_id === img.id && r.code !== null ? { code: r.code } : {}),
            ...(r && r.image_id === img.id ? { at: r.at } : {}),
          };
        });
        return { deviceId, state, images };
      };
      for (const id of all.devices) {
        const s = judge(id).state;
        summary.devices += 1;
        if (s === 'rolled-back') summary.rolledBack += 1;
        else summary[s] += 1;
      }
      const page = all.devices
        .filter((d) => req.query.after === undefined || d > req.query.after)
        .slice(0, limit);
      return { deploymentId: deployment.id, current: deployment.current, summary, items: page.map(judge) };
    },
  );
}

/** The group's devices and their status lines. */
async function statuses(
  db: Kysely<Database>,
  tenantId: string,
  groupId: string,
): Promise<{
  devices: string[];
  rows: Array<{
    device_id: string;
    component_id: string;
    image_id: string;
    state: string;
    code: string | null;
    at: string;
  }>;
}> {
  const devices = await db
    .selectFrom('devices')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('device_group_id', '=', groupId)
    .orderBy('id')
    .execute();
  const rows = await db
    .selectFrom('device_update_status as s')
    .innerJoin('devices as d', 'd.id', 's.device_id')
    .select(['s.device_id', 's.component_id', 's.image_id', 's.state', 's.code', 's.at'])
    .where('s.tenant_id', '=', tenantId)
    .where('d.tenant_id', '=', tenantId)
    .where('d.device_group_id', '=', groupId)
    .execute();
  return { devices: devices.map((d) => d.id), rows };
}
