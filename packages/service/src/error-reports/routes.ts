import {
  DEVICE_ID_PATTERN,
  ERROR_REPORT_KINDS,
  type ErrorReport,
  HeptadError,
  MAX_MESSAGE_LENGTH,
  MAX_REPORT_BATCH,
  MAX_REPORT_COUNT,
  MAX_REPORT_JSON,
  MAX_STACK_LENGTH,
} from '@heptad/protocol';
import { Type } from 'typebox';
import { access, tenantScope } from '../http/auth.ts';
import type { App, RouteDeps } from '../http/deps.ts';
import { deviceOf } from '../http/device-auth.ts';
import { DeviceGroupRef, errorResponses, Limit, NullableString, Timestamp } from '../http/schemas.ts';
import { exportStream } from './export.ts';
import { IngestGroupCommit } from './group-commit.ts';
import { type ErrorReportOptions, prepareBatch, ReportRateLimiter } from './ingest.ts';

const LowerUuid = Type.String({
  pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
  description: 'UUID, lowercase',
});
const ReportTime = Type.String({
  maxLength: 40,
  pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\\.[0-9]{1,9})?Z$',
  description: 'ISO-8601 UTC, device clock',
});
/** Text a device writes: no control characters other than tab and newline. */
const DeviceText = (maxLength: number) =>
  Type.String({ maxLength, pattern: '^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f]*$' });
const Token = (maxLength: number) => Type.String({ minLength: 1, maxLength, pattern: '^[A-Za-z0-9_.:/-]+$' });

const Details = Type.Object(
  {
    exitCode: Type.Optional(Type.Integer({ minimum: -(2 ** 31), maximum: 2 ** 32 - 1 })),
    signal: Type.Optional(Type.String({ pattern: '^SIG[A-Z0-9]{1,12}$' })),
    stack: Type.Optional(DeviceText(MAX_STACK_LENGTH)),
    message: Type.Optional(DeviceText(MAX_MESSAGE_LENGTH)),
    capability: Type.Optional(Token(128)),
    target: Type.Optional(Type.String({ minLength: 1, maxLength: 256, pattern: '^[\\x21-\\x7e]+$' })),
    phase: Type.Optional(Token(64)),
    code: Type.Optional(Token(64)),
    networkInterface: Type.Optional(Token(32)),
    memoryHighWaterBytes: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
    uptimeSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: 1e10 })),
    dropped: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e9 })),
  },
  { additionalProperties: false },
);

const Report = Type.Object(
  {
    id: LowerUuid,
    deviceId: Type.Optional(
      Type.String({ pattern: DEVICE_ID_PATTERN, description: "optional; must be the certificate's device" }),
    ),
    componentId: LowerUuid,
    imageId: Type.Optional(LowerUuid),
    bootId: LowerUuid,
    at: ReportTime,
    lastAt: Type.Optional(ReportTime),
    kind: Type.Union(ERROR_REPORT_KINDS.map((k) => Type.Literal(k))),
    count: Type.Integer({ minimum: 1, maximum: MAX_REPORT_COUNT }),
    details: Details,
  },
  { additionalProperties: false },
);

const Bucket = Type.Object(
  {
    id: Type.String(),
    componentId: Type.String(),
    kind: Type.String(),
    signature: Type.String(),
    description: Type.String(),
    firstSeen: Timestamp,
    lastSeen: Timestamp,
    eventCount: Type.Integer(),
    reportCount: Type.Integer(),
    deviceCount: Type.Integer(),
    imageCount: Type.Integer(),
  },
  { $id: 'ErrorBucket' },
);

const ReportRow = Type.Object({
  deviceId: Type.String(),
  id: Type.String(),
  bucketId: Type.String(),
  componentId: Type.String(),
  imageId: NullableString(),
  bootId: Type.String(),
  deviceGroupId: NullableString(),
  kind: Type.String(),
  at: Timestamp,
  lastAt: Timestamp,
  count: Type.Integer(),
  details: Type.Record(Type.String(), Type.Unknown()),
  receivedAt: Timestamp,
});

/** A request time: ISO-8601 UTC, or a duration before now (`7d`, `24h`, `30m`). */
const TimeParam = Type.String({
  maxLength: 40,
  pattern:
    '^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\\.[0-9]{1,9})?Z|[1-9][0-9]{0,4}[dhm])$',
  description: 'ISO-8601 UTC, or a duration before now: 7d, 24h, 30m',
});

export function parseTime(value: string, now: Date): Date {
  const m = /^([1-9][0-9]{0,4})([dhm])$/.exec(value);
  if (m) {
    const unit = m[2] === 'd' ? 86_400_000 : m[2] === 'h' ? 3_600_000 : 60_000;
    return new Date(now.getTime() - Number(m[1]) * unit);
  }
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new HeptadError('REPORT_RANGE_INVALID', `${value} is not a time`);
  return new Date(t);
}

export interface ErrorReportDeps extends RouteDeps {
  readonly reports: ErrorReportOptions;
}

const MAX_BATCH_BODY = MAX_REPORT_BATCH * MAX_REPORT_JSON * 3 + 64 * 1024;

export function errorReportRoutes(app: App, { store, clock, reports: options }: ErrorReportDeps): void {
  app.addSchema(Bucket);
  const limiter = new ReportRateLimiter(options.rateBurst, options.ratePerMinute);
  const writer = new IngestGroupCommit(store);
  const retentionStart = (now: Date) => new Date(now.getTime() - options.retentionDays * 86_400_000);
  /** `since` clamped to the retention period: nothing older is ever returned. */
  const sinceOf = (value: string | undefined, now: Date) => {
    const start = retentionStart(now).getTime();
    const since = value === undefined ? start : parseTime(value, now).getTime();
    return new Date(Math.max(start, since)).toISOString();
  };

  app.post(
    '/v1/device/error-reports',
    {
      config: { access: access.device },
      bodyLimit: MAX_BATCH_BODY,
      // Before schema validation, so an oversized batch gets its own code, not a schema list.
      preValidation: async (req) => {
        const body = req.body as { reports?: unknown } | null;
        if (body && Array.isArray(body.reports) && body.reports.length > MAX_REPORT_BATCH) {
          throw new HeptadError(
            'REPORT_BATCH_TOO_LARGE',
            `${body.reports.length} reports; at most ${MAX_REPORT_BATCH}`,
          );
        }
      },
      schema: {
        tags: ['error reports'],
        summary: 'Upload a batch of error reports (device, mTLS with its tenant-CA certificate)',
        description:
          'Device-authenticated: the client certificate names the device and tenant; the body cannot. ' +
          `At most ${MAX_REPORT_BATCH} reports, each at most ${MAX_REPORT_JSON} characters of JSON, stamped no ` +
          'later than the allowed clock skew and no earlier than the retention period. Idempotent by report id: ' +
          'a retried batch stores nothing twice and the answer counts the duplicates. The answer comes only ' +
          'after the batch is committed. A device over its rate gets 429 REPORT_RATE_LIMITED with Retry-After.',
        security: [],
        body: Type.Object(
          { reports: Type.Array(Report, { minItems: 1, maxItems: MAX_REPORT_BATCH }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            accepted: Type.Integer({ description: 'reports stored by this call' }),
            duplicate: Type.Integer({
              description: 'reports already stored (a retry), or repeated in the batch',
            }),
          }),
          ...errorResponses(413, 429),
        },
      },
    },
    async (req, reply) => {
      const device = deviceOf(req);
      const now = clock();
      const body = req.body as { reports: ErrorReport[] };
      const { prepared, duplicateInBatch } = prepareBatch(device, body.reports, now, options);
      try {
        limiter.take(device.deviceId, body.reports.length, now.getTime());
      } catch (e) {
        const wait = (e as HeptadError).detail?.['retryAfterSeconds'];
        if (typeof wait === 'number') reply.header('retry-after', String(wait));
        throw e;
      }
      const accepted = await writer.ingest(device.tenantId, device, prepared, now);
      return { accepted, duplicate: duplicateInBatch + (prepared.length - accepted) };
    },
  );

  app.get(
    '/v1/error-reports/buckets',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['error reports'],
        summary: 'Error-report buckets with reports in the window, most devices affected first',
        querystring: Type.Object(
          {
            since: Type.Optional(TimeParam),
            deviceGroup: Type.Optional(DeviceGroupRef),
            imageId: Type.Optional(LowerUuid),
            limit: Type.Optional(Limit),
            cursor: Type.Optional(
              Type.String({ pattern: '^(?:0|[1-9][0-9]{0,8})$', description: 'from nextCursor' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('ErrorBucket')), nextCursor: NullableString() }),
          ...errorResponses(404),
        },
      },
    },
    async (req) => {
      const scope = tenantScope(store, req);
      const now = clock();
      const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
      const offset = req.query.cursor === undefined ? 0 : Number(req.query.cursor);
      const group = req.query.deviceGroup ? await scope.products.getGroup(req.query.deviceGroup) : undefined;
      const items = await scope.errorReports.listBuckets(
        {
          since: sinceOf(req.query.since, now),
          ...(group ? { deviceGroupId: group.id } : {}),
          ...(req.query.imageId ? { imageId: req.query.imageId } : {}),
        },
        { limit: limit + 1, offset },
      );
      const more = items.length > limit;
      return { items: items.slice(0, limit), nextCursor: more ? String(offset + limit) : null };
    },
  );

  app.get(
    '/v1/error-reports/buckets/:bucketId',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['error reports'],
        summary: 'One bucket: its counts, images, most affected devices and newest reports',
        params: Type.Object({ bucketId: Type.String({ pattern: '^[0-9a-f]{32}$' }) }),
        querystring: Type.Object({ since: Type.Optional(TimeParam) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            bucket: Type.Ref('ErrorBucket'),
            images: Type.Array(
              Type.Object({
                imageId: NullableString(),
                eventCount: Type.Integer(),
                deviceCount: Type.Integer(),
              }),
            ),
            devices: Type.Array(
              Type.Object({ deviceId: Type.String(), eventCount: Type.Integer(), lastSeen: Timestamp }),
            ),
            recent: Type.Array(ReportRow),
          }),
          ...errorResponses(404),
        },
      },
    },
    async (req) => {
      const scope = tenantScope(store, req);
      const since = sinceOf(req.query.since, clock());
      const bucket = await scope.errorReports.getBucket(req.params.bucketId, { since });
      if (!bucket) throw new HeptadError('REPORT_BUCKET_NOT_FOUND');
      const detail = await scope.errorReports.bucketDetail(req.params.bucketId, since, 20);
      return {
        bucket,
        images: detail.images,
        devices: detail.devices,
        recent: detail.recent.map((r) => ({
          ...r,
          details: JSON.parse(r.details) as Record<string, unknown>,
        })),
      };
    },
  );

  app.get(
    '/v1/error-reports/export',
    {
      config: { access: access.tenant('Reader') },
      schema: {
        tags: ['error reports'],
        summary:
          'Every report in [from, to) as CSV (Azure Sphere columns + ComponentId, ImageId, Bucket) or JSON, streamed',
        querystring: Type.Object(
          {
            from: Type.Optional(TimeParam),
            to: Type.Optional(TimeParam),
            format: Type.Optional(Type.Union([Type.Literal('csv'), Type.Literal('json')])),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.String(), ...errorResponses() },
      },
    },
    async (req, reply) => {
      const scope = tenantScope(store, req);
      const now = clock();
      const to =
        req.query.to === undefined
          ? new Date(now.getTime() + options.maxSkewMs + 1)
          : parseTime(req.query.to, now);
      if (req.query.from !== undefined && parseTime(req.query.from, now) >= to) {
        throw new HeptadError('REPORT_RANGE_INVALID', '--from must be before --to');
      }
      // A range that starts before the retention period starts at it (nothing older is
      // returned); one that ends before it is empty.
      const from = sinceOf(req.query.from, now);
      const format = req.query.format ?? 'csv';
      return reply
        .header(
          'content-type',
          format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json; charset=utf-8',
        )
        .header('content-disposition', `attachment; filename="error-reports.${format}"`)
        .send(exportStream(scope.errorReports, { from, to: to.toISOString() }, format) as unknown as string);
    },
  );
}
