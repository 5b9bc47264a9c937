import { Readable } from 'node:stream';
import {
  describeReport,
  type ErrorReportDetails,
  type ErrorReportKind,
  EVENT_COLUMNS,
} from '@heptad/protocol';
import type { ErrorReportStore, ExportRow } from './report-store.ts';

/** Rows read per query while exporting: memory stays bounded whatever the range holds. */
export const EXPORT_PAGE = 1_000;

/** Azure Sphere's error-report columns, then Heptad's. */
export const CSV_COLUMNS = [
  'DeviceId',
  'EventType',
  'EventClass',
  'EventCategory',
  'EventCount',
  'Description',
  'StartTime',
  'EndTime',
  'ComponentId',
  'ImageId',
  'Bucket',
] as const;

/**
 * One CSV field (RFC 4180 quoting). Text a device wrote can start with = + - @ or a tab, which
 * spreadsheets run as a formula (CSV injection): such a field is prefixed with a quote mark.
 */
export function csvField(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

function detailsOf(row: ExportRow): ErrorReportDetails {
  try {
    return JSON.parse(row.details) as ErrorReportDetails;
  } catch {
    return {};
  }
}

export function csvLine(row: ExportRow): string {
  const kind = row.kind as ErrorReportKind;
  const [type, cls, category] = EVENT_COLUMNS[kind] ?? [row.kind, '', ''];
  return `${[
    row.deviceId,
    type,
    cls,
    category,
    String(row.count),
    describeReport(kind, detailsOf(row)),
    row.at,
    row.lastAt,
    row.componentId,
    row.imageId ?? '',
    row.bucketId,
  ]
    .map(csvField)
    .join(',')}\r\n`;
}

export function jsonItem(row: ExportRow): string {
  const { details: _d, ...rest } = row;
  return JSON.stringify({ ...rest, details: detailsOf(row) });
}

async function* pages(store: ErrorReportStore, range: { from: string; to: string }) {
  let after: { at: string; deviceId: string; id: string } | null = null;
  for (;;) {
    const rows = await store.exportPage(range, after, EXPORT_PAGE);
    if (rows.length > 0) yield rows;
    if (rows.length < EXPORT_PAGE) return;
    const last = rows[rows.length - 1] as ExportRow;
    after = { at: last.at, deviceId: last.deviceId, id: last.id };
  }
}

/**
 * The reports in [from, to) as a stream: a page is read only when the client has taken the
 * previous one (Readable.from pulls on demand), so a slow client and a million rows cost one
 * page of memory.
 */
export function exportStream(
  store: ErrorReportStore,
  range: { from: string; to: string },
  format: 'csv' | 'json',
): Readable {
  async function* body() {
    if (format === 'csv') yield `${CSV_COLUMNS.join(',')}\r\n`;
    else yield '[';
    let first = true;
    for await (const rows of pages(store, range)) {
      if (format === 'csv') yield rows.map(csvLine).join('');
      else {
        let chunk = '';
        for (const r of rows) {
          chunk += `${first ? '' : ','}\n${jsonItem(r)}`;
          first = false;
        }
        yield chunk;
      }
    }
    if (format === 'json') yield first ? ']\n' : '\n]\n';
  }
  return Readable.from(body(), { objectMode: false });
}
