import { randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  DeviceState,
  FsStorage,
  isAlive,
  LAST_UPLOAD_PATH,
  readQueueFile,
  readRunStatus,
  UPLOAD_NOW_PATH,
} from '@heptad/device';
import { HeptadError } from '@heptad/protocol';
import { str } from './args.ts';
import type { Column, CommandContext, CommandSpec } from './spec.ts';

type Row = Record<string, unknown>;
const col = (header: string, key: string): Column => ({ header, get: (r) => r[key] });

/** `7d`, `24h`, `30m` or an ISO-8601 UTC time, as the API takes them. */
const TIME = /^(?:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z|[1-9]\d{0,4}[dhm])$/;
function time(ctx: CommandContext, name: string): string | undefined {
  const v = str(ctx, name);
  if (v !== undefined && !TIME.test(v)) {
    throw new HeptadError('CLI_USAGE', `--${name} must be like 7d, 24h, 30m or 2026-11-22T10:00:00Z`);
  }
  return v;
}

const BUCKET_COLS = [
  col('BUCKET', 'id'),
  col('KIND', 'kind'),
  col('DEVICES', 'deviceCount'),
  col('EVENTS', 'eventCount'),
  col('IMAGES', 'imageCount'),
  col('LAST SEEN', 'lastSeen'),
  col('SIGNATURE', 'signature'),
];

export const ERROR_REPORT_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['error-report', 'list'],
    summary: 'List error-report buckets, most devices affected first (within the retention period)',
    args: [],
    options: [
      {
        name: 'since',
        type: 'string',
        valueName: 'T',
        description: 'only reports since T: 7d, 24h, or ISO-8601 UTC',
      },
      { name: 'device-group', type: 'string', valueName: 'GROUP', description: '"Product/Group" or id' },
      { name: 'image', type: 'string', valueName: 'ID', description: 'only reports of this image id' },
      { name: 'limit', type: 'string', valueName: 'N', description: 'page size, 1–1000 (default 100)' },
      { name: 'cursor', type: 'string', valueName: 'C', description: 'the next page (from nextCursor)' },
    ],
    service: true,
    examples: ['heptad error-report list --since 7d --device-group "DW100/Field Test"'],
    async run(ctx) {
      const q = new URLSearchParams();
      const since = time(ctx, 'since');
      if (since !== undefined) q.set('since', since);
      for (const [opt, param] of [
        ['device-group', 'deviceGroup'],
        ['image', 'imageId'],
        ['limit', 'limit'],
        ['cursor', 'cursor'],
      ] as const) {
        const v = str(ctx, opt);
        if (v !== undefined) q.set(param, opt === 'image' ? v.toLowerCase() : v);
      }
      const qs = q.size > 0 ? `?${q.toString()}` : '';
      const page = await (await ctx.client()).request<{ items: Row[]; nextCursor: string | null }>(
        'GET',
        `/v1/error-reports/buckets${qs}`,
      );
      return {
        data: page,
        table: { columns: BUCKET_COLS, rows: page.items },
        ...(page.nextCursor ? { note: `More: --cursor ${page.nextCursor}` } : {}),
      };
    },
  },
  {
    path: ['error-report', 'show'],
    summary: 'Show one bucket: its counts, images, most affected devices and newest reports',
    args: [
      { name: 'BUCKET', description: 'bucket id (32 hex, from heptad error-report list)', required: true },
    ],
    options: [
      {
        name: 'since',
        type: 'string',
        valueName: 'T',
        description: 'only reports since T: 7d, 24h, or ISO-8601 UTC',
      },
    ],
    service: true,
    async run(ctx) {
      const id = String(str(ctx, 'BUCKET')).toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(id)) throw new HeptadError('CLI_USAGE', 'BUCKET must be a 32-hex bucket id');
      const since = time(ctx, 'since');
      const b = await (await ctx.client()).request<{
        bucket: Row;
        images: Row[];
        devices: Row[];
        recent: Row[];
      }>('GET', `/v1/error-reports/buckets/${id}${since ? `?since=${encodeURIComponent(since)}` : ''}`);
      const lines = [
        ...Object.entries(b.bucket).map(([k, v]) => `${k.padEnd(13)} ${String(v)}`),
        '',
        'images:',
        ...b.images.map(
          (i) =>
            `  ${String(i['imageId'] ?? '(none)')}  events ${i['eventCount']}  devices ${i['deviceCount']}`,
        ),
        'devices (most events first):',
        ...b.devices.map((d) => `  ${d['deviceId']}  events ${d['eventCount']}  last ${d['lastSeen']}`),
      ];
      return { data: b, text: `${lines.join('\n')}\n` };
    },
  },
  {
    path: ['error-report', 'download'],
    summary:
      'Download error reports in a time range as CSV (Azure Sphere columns + ComponentId, ImageId, Bucket) or JSON',
    description:
      'Streams the export: any number of reports in bounded memory. With --out the file appears only when the ' +
      'download is complete (written beside it, then renamed).',
    args: [],
    options: [
      {
        name: 'from',
        type: 'string',
        valueName: 'T',
        description: 'start (default: the retention period ago)',
      },
      { name: 'to', type: 'string', valueName: 'T', description: 'end, exclusive (default: now)' },
      { name: 'format', type: 'string', valueName: 'csv|json', description: 'default csv' },
      { name: 'out', type: 'string', valueName: 'FILE', description: 'write to FILE instead of stdout' },
    ],
    service: true,
    examples: ['heptad error-report download --from 7d --to 2026-11-22T00:00:00Z --out reports.csv'],
    async run(ctx) {
      const q = new URLSearchParams();
      const from = time(ctx, 'from');
      const to = time(ctx, 'to');
      const format = str(ctx, 'format') ?? 'csv';
      if (format !== 'csv' && format !== 'json')
        throw new HeptadError('CLI_USAGE', '--format must be csv or json');
      if (from !== undefined) q.set('from', from);
      if (to !== undefined) q.set('to', to);
      q.set('format', format);
      const out = str(ctx, 'out');
      if (out === undefined && ctx.options['output'] === 'json') {
        throw new HeptadError(
          'CLI_USAGE',
          'the download itself goes to stdout: give --out FILE with --output json',
        );
      }
      const client = await ctx.client();
      const path = `/v1/error-reports/export?${q.toString()}`;
      if (out === undefined) {
        await client.stream(path, (chunk) => ctx.io.stdout(chunk.toString('utf8')));
        return { data: null, text: '' };
      }
      const target = resolve(ctx.io.cwd, out);
      const tmp = `${target}.${process.pid}.part`;
      const fd = openSync(tmp, 'w', 0o600);
      let bytes: number;
      try {
        bytes = await client.stream(path, (chunk) => {
          writeSync(fd, chunk);
        });
        fsyncSync(fd);
      } catch (e) {
        closeSync(fd);
        rmSync(tmp, { force: true });
        throw e;
      }
      closeSync(fd);
      renameSync(tmp, target);
      return { data: { file: target, bytes, format }, text: `Wrote ${target} (${bytes} bytes)\n` };
    },
  },
];

/** `heptad device reports`: the device's own queue, read from its state folder. */
export const DEVICE_REPORT_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['device', 'reports'],
    summary: "Show the device's queued error reports (not yet uploaded) and how many were dropped",
    args: [],
    options: [
      { name: 'state', type: 'string', valueName: 'DIR', description: 'device state folder', required: true },
    ],
    service: false,
    async run(ctx) {
      const dir = resolve(ctx.io.cwd, String(str(ctx, 'state')));
      new DeviceState(dir).config(); // DEVICE_STATE_INVALID unless this is a device's state folder
      const q = readQueueFile(new FsStorage(dir), true);
      const rows = q.reports.map((r) => ({
        id: r.id,
        at: r.at,
        lastAt: r.lastAt,
        kind: r.kind,
        componentId: r.componentId,
        imageId: r.imageId ?? null,
        count: r.count,
        signature: r.signature,
        sealed: r.sealed,
      }));
      return {
        data: { reports: rows, dropped: q.dropped, lastUploadAt: q.lastUploadAt },
        table: {
          columns: [
            col('ID', 'id'),
            col('AT', 'at'),
            col('KIND', 'kind'),
            col('COUNT', 'count'),
            col('SENT', 'sealed'),
            col('SIGNATURE', 'signature'),
          ],
          rows,
        },
        note: `${rows.length} queued, ${q.dropped} dropped since the last upload, last upload ${q.lastUploadAt ?? 'never'}`,
      };
    },
  },
  {
    path: ['device', 'upload-reports'],
    summary: 'Make the running device upload its queued error reports now, and wait for the outcome',
    description:
      'The runtime uploads its queue after each attestation when reports wait, and when 50 wait or a day has ' +
      'passed (checked every 10 minutes). This asks the runtime started by heptad device run on this state ' +
      'folder to upload at once (over mTLS with its device certificate) and prints how many reports the ' +
      'service accepted, already held or refused.',
    args: [],
    options: [
      { name: 'state', type: 'string', valueName: 'DIR', description: 'device state folder', required: true },
      {
        name: 'timeout',
        type: 'string',
        valueName: 'MS',
        description: 'how long to wait for the upload (default 60000)',
      },
    ],
    service: false,
    examples: ['heptad device upload-reports --state ./dev1', 'heptad error-report list --since 1h'],
    async run(ctx) {
      const dir = resolve(ctx.io.cwd, String(str(ctx, 'state')));
      new DeviceState(dir).config(); // DEVICE_STATE_INVALID unless this is a device's state folder
      const t = str(ctx, 'timeout');
      if (t !== undefined && (!/^\d{1,9}$/.test(t) || Number(t) < 100))
        throw new HeptadError('CLI_USAGE', '--timeout must be a number of ms ≥ 100');
      const timeoutMs = t === undefined ? 60_000 : Number(t);
      const run = readRunStatus(dir);
      if (!run || !(run.phase === 'running' || run.phase === 'starting') || !isAlive(run.supervisorPid))
        throw new HeptadError('REPORT_DEVICE_NOT_RUNNING', `no heptad device run on ${dir}`);
      const storage = new FsStorage(dir);
      const request = randomUUID();
      storage.write(UPLOAD_NOW_PATH, Buffer.from(request), 0o600);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const bytes = storage.read(LAST_UPLOAD_PATH);
        let r:
          | {
              request?: string;
              ok: boolean;
              code?: string;
              accepted: number;
              duplicate: number;
              refused: number;
            }
          | undefined;
        try {
          r = bytes ? JSON.parse(bytes.toString('utf8')) : undefined;
        } catch {
          r = undefined; // written atomically; unreadable only mid-replace on odd file systems: read again
        }
        if (r?.request === request) {
          if (!r.ok)
            throw new HeptadError('REPORT_UPLOAD_FAILED', `the upload stopped: ${r.code ?? 'unknown'}`, {
              detail: { code: r.code ?? null, accepted: r.accepted },
            });
          return {
            data: r,
            text: `${r.accepted} accepted, ${r.duplicate} already held, ${r.refused} refused\n`,
          };
        }
        if (Date.now() > deadline)
          throw new HeptadError('REPORT_UPLOAD_TIMEOUT', `no upload finished within ${timeoutMs} ms`);
        await new Promise((res) => setTimeout(res, 200));
      }
    },
  },
];
