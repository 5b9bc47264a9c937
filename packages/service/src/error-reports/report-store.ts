import { CompiledQuery, type Kysely, sql } from 'kysely';
import type { Dialect } from '../store/migrations.ts';
import type { Database, ErrorReportsTable } from '../store/schema.ts';

/** A report checked and bucketed by the ingest path, ready to store. */
export interface PreparedReport {
  readonly id: string;
  readonly bucketId: string;
  readonly componentId: string;
  readonly imageId: string | null;
  readonly bootId: string;
  readonly kind: string;
  readonly at: string;
  readonly lastAt: string;
  readonly count: number;
  readonly details: string;
  readonly signature: string;
  readonly description: string;
}

/** One device's checked batch, as one upload brought it. */
export interface BatchToStore {
  readonly device: { readonly deviceId: string; readonly deviceGroupId: string | null };
  readonly reports: readonly PreparedReport[];
  readonly now: Date;
}

export interface BucketSummary {
  id: string;
  componentId: string;
  kind: string;
  signature: string;
  description: string;
  firstSeen: string;
  lastSeen: string;
  /** events, with identical events the device folded counted each */
  eventCount: number;
  reportCount: number;
  deviceCount: number;
  imageCount: number;
}

export interface BucketFilter {
  /** only reports at or after this time (ISO) */
  readonly since: string;
  readonly deviceGroupId?: string;
  readonly imageId?: string;
}

export interface ExportRow {
  deviceId: string;
  id: string;
  bucketId: string;
  componentId: string;
  imageId: string | null;
  bootId: string;
  deviceGroupId: string | null;
  kind: string;
  at: string;
  lastAt: string;
  count: number;
  details: string;
  receivedAt: string;
}

const REPORT_COLUMNS = [
  'device_id',
  'id',
  'tenant_id',
  'bucket_id',
  'component_id',
  'image_id',
  'boot_id',
  'device_group_id',
  'kind',
  'at',
  'last_at',
  'count',
  'details',
  'received_at',
] as const;
const BUCKET_COLUMNS = ['tenant_id', 'id', 'component_id', 'kind', 'signature', 'description', 'created_at'];

/** Multi-row INSERT … ON CONFLICT DO NOTHING text for n rows, per dialect, cached by n. */
function insertText(table: string, columns: readonly string[], conflict: string, rows: number, d: Dialect) {
  const one = `(${columns.map(() => '?').join(', ')})`;
  let text = `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${Array(rows).fill(one).join(', ')} ON CONFLICT (${conflict}) DO NOTHING`;
  if (d === 'postgres') {
    let n = 0;
    text = text.replace(/\?/g, () => `$${++n}`);
  }
  return text;
}
const insertCache = new Map<string, string>();
function cachedInsert(table: string, columns: readonly string[], conflict: string, rows: number, d: Dialect) {
  const key = `${table}:${rows}:${d}`;
  let text = insertCache.get(key);
  if (text === undefined) {
    text = insertText(table, columns, conflict, rows, d);
    insertCache.set(key, text);
  }
  return text;
}

const NEEDS_ESCAPE = /[\\"]/;
const ESCAPED = /[\\"]/g;
/**
 * A PostgreSQL array literal of text, every element quoted (so commas, braces, spaces and the
 * word NULL inside a value stay data), `"` and `\` escaped; null is NULL. Sent as one text
 * parameter cast to text[]: pg's own array encoding runs two regular expressions per element and
 * was 7 % of the service's CPU in the benchmark.
 */
export function toPgTextArray(values: readonly (string | null)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else out += `"${NEEDS_ESCAPE.test(v) ? v.replace(ESCAPED, '\\$&') : v}"`;
  }
  return `${out}}`;
}

/**
 * PostgreSQL: several batches in one statement, its values as one array per column (`unnest`), so
 * the text is the same for any number of rows. Against one multi-row VALUES statement per batch
 * (14 parameters a row, 1,400 a batch) PostgreSQL no longer parses and plans a new statement per
 * batch, and a group is one round trip instead of two per batch plus BEGIN and COMMIT: its CPU
 * per 1000 rows fell from 27 to 11.5 ms (bench/error-reports-pg-ceiling.ts). One statement is
 * one transaction: the buckets (a data-modifying WITH runs to completion whether read or not) and
 * the reports commit together or not at all.
 *
 * It answers with the batch number ($21) of every row that was already stored (a retry): none,
 * in the usual case, so nothing is sent back for the rows stored. The caller passes each
 * (device, report id) once, so the anti-join against the rows inserted is exact.
 */
const PG_INGEST = `WITH buckets AS (
  INSERT INTO error_buckets (tenant_id, id, component_id, kind, signature, description, created_at)
  SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
  ON CONFLICT (tenant_id, id) DO NOTHING
), inserted AS (
  INSERT INTO error_reports (${REPORT_COLUMNS.join(', ')})
  SELECT u.device_id, u.id, $1, u.bucket_id, u.component_id, u.image_id, u.boot_id, u.device_group_id,
    u.kind, u.at, u.last_at, u.count, u.details, u.received_at
  FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
    $15::text[], $16::text[], $17::text[], $18::int[], $19::text[], $20::text[])
    AS u(device_id, id, bucket_id, component_id, image_id, boot_id, device_group_id, kind, at, last_at, count, details, received_at)
  ON CONFLICT (device_id, id) DO NOTHING
  RETURNING device_id, id
)
SELECT u.batch FROM unnest($8::text[], $9::text[], $21::int[]) AS u(device_id, id, batch)
WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.device_id = u.device_id AND i.id = u.id)`;

/**
 * One tenant's error reports and buckets (tenancy by construction: the tenant id is fixed at
 * construction and in every query). Bucket counts are aggregates of the retained reports, so
 * filters and retention never leave a stale count behind.
 */
export class ErrorReportStore {
  readonly #db: Kysely<Database>;
  readonly #dialect: Dialect;
  readonly #tenantId: string;

  constructor(db: Kysely<Database>, dialect: Dialect, tenantId: string) {
    this.#db = db;
    this.#dialect = dialect;
    this.#tenantId = tenantId;
  }

  /**
   * Stores a device's batch in one transaction: new buckets, then the reports, each keyed by
   * (device, report id) so a retried batch stores nothing twice. Returns how many were new. The
   * caller acknowledges the batch only after this resolves, i.e. after the commit: a service
   * killed before the commit stored nothing and acknowledged nothing.
   */
  async ingest(
    device: { deviceId: string; deviceGroupId: string | null },
    reports: readonly PreparedReport[],
    now: Date,
  ): Promise<number> {
    if (reports.length === 0) return 0;
    const receivedAt = now.toISOString();
    // Buckets in a fixed order, so two concurrent batches never wait on each other in a cycle.
    const buckets = new Map<string, PreparedReport>();
    for (const r of reports) if (!buckets.has(r.bucketId)) buckets.set(r.bucketId, r);
    const bucketRows = [...buckets.values()].sort((a, b) => (a.bucketId < b.bucketId ? -1 : 1));
    const bucketParams: unknown[] = [];
    for (const b of bucketRows) {
      bucketParams.push(
        this.#tenantId,
        b.bucketId,
        b.componentId,
        b.kind,
        b.signature,
        b.description,
        receivedAt,
      );
    }
    const reportParams: unknown[] = [];
    for (const r of reports) {
      reportParams.push(
        device.deviceId,
        r.id,
        this.#tenantId,
        r.bucketId,
        r.componentId,
        r.imageId,
        r.bootId,
        device.deviceGroupId,
        r.kind,
        r.at,
        r.lastAt,
        r.count,
        r.details,
        receivedAt,
      );
    }
    const work = async (db: Kysely<Database>) => {
      await db.executeQuery(
        CompiledQuery.raw(
          cachedInsert('error_buckets', BUCKET_COLUMNS, 'tenant_id, id', bucketRows.length, this.#dialect),
          bucketParams,
        ),
      );
      const r = await db.executeQuery(
        CompiledQuery.raw(
          cachedInsert('error_reports', REPORT_COLUMNS, 'device_id, id', reports.length, this.#dialect),
          reportParams,
        ),
      );
      return Number(r.numAffectedRows ?? 0n);
    };
    if (this.#db.isTransaction) return work(this.#db);
    return this.#db.transaction().execute(work);
  }

  /**
   * Stores several devices' batches at once (the group commit's), with the same outcome as
   * storing them one after another in this order: a report id a device sends twice — in one
   * batch, in two batches of the group, or again after a commit — is stored once, by the first
   * batch that holds it. Returns how many reports of each batch were new, after the commit. On
   * SQLite, or inside a caller's transaction, it is `ingest` per batch in one transaction; on
   * PostgreSQL outside one it is one statement (see PG_INGEST).
   */
  async ingestBatches(batches: readonly BatchToStore[]): Promise<number[]> {
    if (this.#dialect !== 'postgres') {
      const work = async (store: ErrorReportStore) => {
        const out: number[] = [];
        for (const b of batches) out.push(await store.ingest(b.device, b.reports, b.now));
        return out;
      };
      if (this.#db.isTransaction) return work(this);
      return this.#db
        .transaction()
        .execute((trx) => work(new ErrorReportStore(trx, this.#dialect, this.#tenantId)));
    }
    const counts = batches.map(() => 0);
    const buckets = new Map<string, { r: PreparedReport; at: string }>();
    const seen = new Set<string>();
    const col = {
      device: [] as string[],
      id: [] as string[],
      bucket: [] as string[],
      component: [] as string[],
      image: [] as (string | null)[],
      boot: [] as string[],
      group: [] as (string | null)[],
      batch: [] as number[],
      kind: [] as string[],
      at: [] as string[],
      lastAt: [] as string[],
      count: [] as number[],
      details: [] as string[],
      received: [] as string[],
    };
    batches.forEach((b, n) => {
      const receivedAt = b.now.toISOString();
      for (const r of b.reports) {
        // An id an earlier batch of this group holds is a duplicate of this one, as it would be
        // had that batch committed first; the statement then sees each (device, id) once.
        const key = `${b.device.deviceId}\0${r.id}`;
        if (seen.has(key)) continue;
        seen.add(key);
        counts[n] = (counts[n] ?? 0) + 1;
        if (!buckets.has(r.bucketId)) buckets.set(r.bucketId, { r, at: receivedAt });
        col.device.push(b.device.deviceId);
        col.id.push(r.id);
        col.bucket.push(r.bucketId);
        col.component.push(r.componentId);
        col.image.push(r.imageId);
        col.boot.push(r.bootId);
        col.group.push(b.device.deviceGroupId);
        col.batch.push(n);
        col.kind.push(r.kind);
        col.at.push(r.at);
        col.lastAt.push(r.lastAt);
        col.count.push(r.count);
        col.details.push(r.details);
        col.received.push(receivedAt);
      }
    });
    if (col.id.length === 0) return counts;
    // Buckets in a fixed order, so two concurrent statements never wait on each other in a cycle.
    const bucketRows = [...buckets.values()].sort((a, b) => (a.r.bucketId < b.r.bucketId ? -1 : 1));
    const result = await this.#db.executeQuery<{ batch: number }>(
      CompiledQuery.raw(PG_INGEST, [
        this.#tenantId,
        toPgTextArray(bucketRows.map((b) => b.r.bucketId)),
        toPgTextArray(bucketRows.map((b) => b.r.componentId)),
        toPgTextArray(bucketRows.map((b) => b.r.kind)),
        toPgTextArray(bucketRows.map((b) => b.r.signature)),
        toPgTextArray(bucketRows.map((b) => b.r.description)),
        toPgTextArray(bucketRows.map((b) => b.at)),
        toPgTextArray(col.device),
        toPgTextArray(col.id),
        toPgTextArray(col.bucket),
        toPgTextArray(col.component),
        toPgTextArray(col.image),
        toPgTextArray(col.boot),
        toPgTextArray(col.group),
        toPgTextArray(col.kind),
        toPgTextArray(col.at),
        toPgTextArray(col.lastAt),
        `{${col.count.join(',')}}`,
        toPgTextArray(col.details),
        toPgTextArray(col.received),
        `{${col.batch.join(',')}}`,
      ]),
    );
    for (const { batch } of result.rows) counts[batch] = (counts[batch] ?? 0) - 1;
    return counts;
  }

  #aggregate(filter: BucketFilter) {
    let q = this.#db
      .selectFrom('error_reports as r')
      .leftJoin('error_buckets as b', (j) =>
        j.onRef('b.tenant_id', '=', 'r.tenant_id').onRef('b.id', '=', 'r.bucket_id'),
      )
      .where('r.tenant_id', '=', this.#tenantId)
      .where('r.at', '>=', filter.since);
    if (filter.deviceGroupId !== undefined) q = q.where('r.device_group_id', '=', filter.deviceGroupId);
    if (filter.imageId !== undefined) q = q.where('r.image_id', '=', filter.imageId);
    return q
      .select([
        'r.bucket_id as id',
        sql<string>`max(r.component_id)`.as('componentId'),
        sql<string>`max(r.kind)`.as('kind'),
        sql<string>`coalesce(max(b.signature), '')`.as('signature'),
        sql<string>`coalesce(max(b.description), '')`.as('description'),
        sql<string>`min(r.at)`.as('firstSeen'),
        sql<string>`max(r.last_at)`.as('lastSeen'),
        sql<number>`sum(r.count)`.as('eventCount'),
        sql<number>`count(*)`.as('reportCount'),
        sql<number>`count(distinct r.device_id)`.as('deviceCount'),
        sql<number>`count(distinct r.image_id)`.as('imageCount'),
      ])
      .groupBy('r.bucket_id');
  }

  /** Buckets with reports in the filter, most devices affected first, then most events. */
  async listBuckets(filter: BucketFilter, page: { limit: number; offset: number }): Promise<BucketSummary[]> {
    const rows = await this.#aggregate(filter)
      .orderBy('deviceCount', 'desc')
      .orderBy('eventCount', 'desc')
      .orderBy('r.bucket_id')
      .limit(page.limit)
      .offset(page.offset)
      .execute();
    return rows.map(toSummary);
  }

  async getBucket(id: string, filter: BucketFilter): Promise<BucketSummary | undefined> {
    const row = await this.#aggregate(filter).where('r.bucket_id', '=', id).executeTakeFirst();
    return row ? toSummary(row) : undefined;
  }

  /** The bucket's images and devices (most events first) and its newest reports. */
  async bucketDetail(id: string, since: string, limit: number) {
    const base = () =>
      this.#db
        .selectFrom('error_reports')
        .where('tenant_id', '=', this.#tenantId)
        .where('bucket_id', '=', id)
        .where('at', '>=', since);
    const images = await base()
      .select([
        'image_id as imageId',
        sql<number>`sum(count)`.as('eventCount'),
        sql<number>`count(distinct device_id)`.as('deviceCount'),
      ])
      .groupBy('image_id')
      .orderBy('eventCount', 'desc')
      .limit(limit)
      .execute();
    const devices = await base()
      .select([
        'device_id as deviceId',
        sql<number>`sum(count)`.as('eventCount'),
        sql<string>`max(last_at)`.as('lastSeen'),
      ])
      .groupBy('device_id')
      .orderBy('eventCount', 'desc')
      .orderBy('device_id')
      .limit(limit)
      .execute();
    const recent = await base().selectAll().orderBy('at', 'desc').orderBy('id').limit(limit).execute();
    return {
      images: images.map((i) => ({
        ...i,
        eventCount: Number(i.eventCount),
        deviceCount: Number(i.deviceCount),
      })),
      devices: devices.map((d) => ({ ...d, eventCount: Number(d.eventCount) })),
      recent: recent.map(toExportRow),
    };
  }

  /**
   * One page of reports in [from, to), oldest first, after the cursor (at, device, id): keyset
   * paging, so an export of any size reads a bounded page at a time.
   */
  async exportPage(
    range: { from: string; to: string },
    after: { at: string; deviceId: string; id: string } | null,
    limit: number,
  ): Promise<ExportRow[]> {
    // `at >= cursor.at` as a plain range lets the (tenant, at) index seek to the page: the row
    // comparison alone is a filter, and every page would scan from the start (quadratic).
    let q = this.#db
      .selectFrom('error_reports')
      .selectAll()
      .where('tenant_id', '=', this.#tenantId)
      .where('at', '>=', after && after.at > range.from ? after.at : range.from)
      .where('at', '<', range.to);
    if (after) {
      q = q.where(sql<boolean>`(at, device_id, id) > (${after.at}, ${after.deviceId}, ${after.id})`);
    }
    const rows = await q.orderBy('at').orderBy('device_id').orderBy('id').limit(limit).execute();
    return rows.map(toExportRow);
  }
}

/** Platform-wide retention: the one operation on error reports that crosses tenants. */
export class ErrorReportRetentionStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /**
   * Deletes reports older than `cutoff` in chunks (so a large purge never holds the store for
   * long), then buckets that have no report left. Reads take counts from the reports and only
   * the signature text from the bucket row (left join), and ingest re-creates a missing bucket,
   * so a bucket removed while a batch for it commits concurrently costs nothing but its text
   * until the next report of it.
   */
  async purge(cutoff: string, chunk = 5_000): Promise<number> {
    let total = 0;
    for (;;) {
      const r =
        await sql`DELETE FROM error_reports WHERE (device_id, id) IN (SELECT device_id, id FROM error_reports WHERE at < ${cutoff} LIMIT ${chunk})`.execute(
          this.#db,
        );
      const n = Number(r.numAffectedRows ?? 0n);
      total += n;
      if (n < chunk) break;
    }
    await sql`DELETE FROM error_buckets WHERE NOT EXISTS (SELECT 1 FROM error_reports r WHERE r.tenant_id = error_buckets.tenant_id AND r.bucket_id = error_buckets.id)`.execute(
      this.#db,
    );
    return total;
  }
}

function toSummary(r: Record<string, unknown>): BucketSummary {
  return {
    id: String(r['id']),
    componentId: String(r['componentId']),
    kind: String(r['kind']),
    signature: String(r['signature']),
    description: String(r['description']),
    firstSeen: String(r['firstSeen']),
    lastSeen: String(r['lastSeen']),
    eventCount: Number(r['eventCount']),
    reportCount: Number(r['reportCount']),
    deviceCount: Number(r['deviceCount']),
    imageCount: Number(r['imageCount']),
  };
}

function toExportRow(r: ErrorReportsTable): ExportRow {
  return {
    deviceId: r.device_id,
    id: r.id,
    bucketId: r.bucket_id,
    componentId: r.component_id,
    imageId: r.image_id,
    bootId: r.boot_id,
    deviceGroupId: r.device_group_id,
    kind: r.kind,
    at: r.at,
    lastAt: r.last_at,
    count: Number(r.count),
    details: r.details,
    receivedAt: r.received_at,
  };
}
