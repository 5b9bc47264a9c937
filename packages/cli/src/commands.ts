import { HeptadError, isDeviceId } from '@heptad/protocol';
import { APP_DEVICE_COMMANDS } from './app-commands.ts';
import { readFileArg, str } from './args.ts';
import { BROKER_COMMANDS } from './broker-commands.ts';
import { ServiceClient } from './client.ts';
import { demoCommand } from './demo.ts';
import { DEVICE_LOCAL_COMMANDS, PKI_COMMANDS } from './device-commands.ts';
import { DEVICE_REPORT_COMMANDS, ERROR_REPORT_COMMANDS } from './error-report-commands.ts';
import {
  CAPABILITY_COMMANDS,
  DEPLOYMENT_COMMANDS,
  IMAGE_COMMANDS,
  UPDATE_STATUS_COMMANDS,
} from './image-commands.ts';
import { renderRecord } from './output.ts';
import { saveProfile } from './profiles.ts';
import { RUNTIME_COMMANDS, RUNTIME_RELEASE_COMMANDS } from './runtime-commands.ts';
import { serveCommand } from './serve-command.ts';
import type { Column, CommandContext, CommandResult, CommandSpec } from './spec.ts';
import { TUF_COMMANDS } from './tuf-commands.ts';

type Row = Record<string, unknown>;
const col = (header: string, key: string): Column => ({ header, get: (r) => r[key] });

const need = (ctx: CommandContext, name: string): string => {
  const v = str(ctx, name);
  if (v === undefined) throw new HeptadError('CLI_USAGE', `${name} is required`);
  return v;
};
const enc = encodeURIComponent;
/** "Product/Group" travels as one path segment, its slash encoded as %2F. */
const encGroup = enc;

/** List output: `{ items }` in JSON (plus `nextCursor` for paged lists), a table otherwise. */
function list(items: Row[], columns: Column[], data: unknown = { items }): CommandResult {
  return { data, table: { columns, rows: items } };
}
function one(item: Row, columns: Column[]): CommandResult {
  return { data: item, table: { columns, rows: [item] } };
}

const TENANT_COLS = [col('ID', 'id'), col('NAME', 'name'), col('CREATED', 'createdAt')];
const USER_COLS = [col('ID', 'id'), col('EMAIL', 'email'), col('ROLE', 'role'), col('TENANT', 'tenantId')];
const PRODUCT_COLS = [col('ID', 'id'), col('NAME', 'name'), col('DESCRIPTION', 'description')];
const GROUP_COLS = [
  col('ID', 'id'),
  col('PRODUCT', 'productName'),
  col('NAME', 'name'),
  col('OS FEED', 'osFeed'),
  col('UPDATES', 'updatePolicy'),
  col('PEER MESSAGES', 'allowPeerMessages'),
  col('DEVICES', 'deviceCount'),
];
const DEVICE_COLS = [
  col('ID', 'id'),
  col('ROT', 'rotKind'),
  col('PRODUCT', 'productName'),
  col('GROUP', 'deviceGroupName'),
  col('CLAIMED', 'claimedAt'),
  {
    // What the device last reported running (its boot chain's report at attestation).
    header: 'RUNTIME',
    get: (r: Record<string, unknown>) => {
      const rt = r['runtime'] as { version?: string; slot?: string; trial?: boolean } | null | undefined;
      return rt ? `${rt.version} (${rt.slot}${rt.trial ? ', trial' : ''})` : '';
    },
  },
];
const AUDIT_COLS = [
  col('SEQ', 'seq'),
  col('AT', 'at'),
  col('ACTION', 'action'),
  col('TARGET', 'targetId'),
  col('ACTOR', 'actorId'),
  col('ROLE', 'actorRole'),
];

async function tenantIdOf(client: ServiceClient, ref: string): Promise<string> {
  if (/^[0-9a-f-]{36}$/i.test(ref)) return ref;
  const { items } = await client.request<{ items: Row[] }>('GET', '/v1/tenants');
  const hit = items.find((t) => t['name'] === ref);
  if (!hit) throw new HeptadError('TENANT_NOT_FOUND', `no tenant named "${ref}"`);
  return String(hit['id']);
}

const GROUP_OPTIONS = [
  { name: 'description', type: 'string', valueName: 'TEXT', description: 'description' },
  {
    name: 'os-feed',
    type: 'string',
    valueName: 'retail|retail-eval',
    description: 'runtime feed the group takes',
  },
  {
    name: 'update-policy',
    type: 'string',
    valueName: 'update-all|no-app-updates',
    description: 'whether the group takes app updates',
  },
] as const;

function groupBody(ctx: CommandContext): Row {
  const body: Row = {};
  const d = str(ctx, 'description');
  const f = str(ctx, 'os-feed');
  const u = str(ctx, 'update-policy');
  if (d !== undefined) body['description'] = d;
  if (f !== undefined) body['osFeed'] = f;
  if (u !== undefined) body['updatePolicy'] = u;
  return body;
}

export const COMMANDS: readonly CommandSpec[] = [
  serveCommand,
  demoCommand,
  {
    path: ['login'],
    summary: 'Save a service URL, token and CA as a profile, after checking they work',
    args: [],
    options: [
      { name: 'url', type: 'string', valueName: 'URL', description: 'service URL', required: true },
      { name: 'token', type: 'string', valueName: 'TOKEN', description: 'API token', required: true },
      {
        name: 'ca',
        type: 'string',
        valueName: 'FILE',
        description: 'CA certificate of the service (DATA/platform-ca.pem)',
      },
      { name: 'profile', type: 'string', valueName: 'NAME', description: 'profile name (default "default")' },
    ],
    service: false,
    examples: [
      'heptad login --url https://127.0.0.1:8443 --token "$(cat heptad-data/operator-token)" --ca heptad-data/platform-ca.pem',
    ],
    async run(ctx) {
      const url = need(ctx, 'url');
      const token = need(ctx, 'token').trim();
      const caFile = str(ctx, 'ca');
      const caPem = caFile === undefined ? undefined : readFileArg(ctx, caFile, 'CA file', 'utf8');
      const client = new ServiceClient({ url, token, ...(caPem ? { caPem } : {}) });
      try {
        await client.request('GET', '/v1/tenants');
      } finally {
        client.close();
      }
      const name = str(ctx, 'profile') ?? 'default';
      const path = saveProfile(ctx.io.env, name, { url, token, ...(caPem ? { caPem } : {}) });
      return { data: { profile: name, url, path }, text: `Saved profile "${name}" for ${url} in ${path}\n` };
    },
  },

  // ---- tenants ----
  {
    path: ['tenant', 'create'],
    summary: 'Create a tenant (operator)',
    args: [{ name: 'NAME', description: 'tenant name', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const c = await ctx.client();
      return one(await c.request<Row>('POST', '/v1/tenants', { name: need(ctx, 'NAME') }), TENANT_COLS);
    },
  },
  {
    path: ['tenant', 'list'],
    summary: 'List tenants (all for the operator, your own for tenant users)',
    args: [],
    options: [],
    service: true,
    async run(ctx) {
      const { items } = await (await ctx.client()).request<{ items: Row[] }>('GET', '/v1/tenants');
      return list(items, TENANT_COLS);
    },
  },
  {
    path: ['tenant', 'show'],
    summary: 'Show a tenant (your own when no ID is given)',
    args: [{ name: 'ID', description: 'tenant id or name', required: false }],
    options: [],
    service: true,
    async run(ctx) {
      const c = await ctx.client();
      const ref = str(ctx, 'ID');
      const path = ref === undefined ? '/v1/tenants/current' : `/v1/tenants/${enc(await tenantIdOf(c, ref))}`;
      return one(await c.request<Row>('GET', path), TENANT_COLS);
    },
  },

  // ---- users ----
  {
    path: ['user', 'create'],
    summary: "Create a user and print its API token once (operator, or a tenant's Administrator)",
    args: [{ name: 'EMAIL', description: 'the user’s email', required: true }],
    options: [
      {
        name: 'tenant',
        type: 'string',
        valueName: 'TENANT',
        description: 'tenant id or name (required for the operator)',
      },
      {
        name: 'role',
        type: 'string',
        valueName: 'ROLE',
        description: 'Administrator, Contributor or Reader',
        required: true,
      },
      {
        name: 'expires-in-days',
        type: 'string',
        valueName: 'N',
        description: 'token lifetime in days (default: no expiry)',
      },
    ],
    service: true,
    async run(ctx) {
      const c = await ctx.client();
      const body: Row = { email: need(ctx, 'EMAIL'), role: need(ctx, 'role') };
      const tenant = str(ctx, 'tenant');
      if (tenant !== undefined) body['tenantId'] = await tenantIdOf(c, tenant);
      const days = str(ctx, 'expires-in-days');
      if (days !== undefined) {
        if (!/^\d{1,5}$/.test(days))
          throw new HeptadError('CLI_USAGE', '--expires-in-days must be a whole number');
        body['expiresInDays'] = Number(days);
      }
      const created = await c.request<{ user: Row; token: string; tokenExpiresAt: string | null }>(
        'POST',
        '/v1/users',
        body,
      );
      return {
        data: created,
        table: {
          columns: [...USER_COLS, { header: 'TOKEN', get: () => created.token }],
          rows: [created.user],
        },
        note: 'The token is shown once; store it now (the service keeps only its hash).',
      };
    },
  },
  {
    path: ['user', 'list'],
    summary: "List a tenant's users (Administrator; the operator names --tenant)",
    args: [],
    options: [{ name: 'tenant', type: 'string', valueName: 'TENANT', description: 'tenant id or name' }],
    service: true,
    async run(ctx) {
      const c = await ctx.client();
      const tenant = str(ctx, 'tenant');
      const q = tenant === undefined ? '' : `?tenantId=${enc(await tenantIdOf(c, tenant))}`;
      const { items } = await c.request<{ items: Row[] }>('GET', `/v1/users${q}`);
      return list(items, USER_COLS);
    },
  },

  // ---- products ----
  {
    path: ['product', 'create'],
    summary: 'Create a product with its five default device groups',
    args: [{ name: 'NAME', description: 'product name', required: true }],
    options: [{ name: 'description', type: 'string', valueName: 'TEXT', description: 'description' }],
    service: true,
    async run(ctx) {
      const body: Row = { name: need(ctx, 'NAME') };
      const d = str(ctx, 'description');
      if (d !== undefined) body['description'] = d;
      return one(await (await ctx.client()).request<Row>('POST', '/v1/products', body), PRODUCT_COLS);
    },
  },
  {
    path: ['product', 'list'],
    summary: "List the tenant's products",
    args: [],
    options: [],
    service: true,
    async run(ctx) {
      const { items } = await (await ctx.client()).request<{ items: Row[] }>('GET', '/v1/products');
      return list(items, PRODUCT_COLS);
    },
  },
  {
    path: ['product', 'show'],
    summary: 'Show a product',
    args: [{ name: 'PRODUCT', description: 'product id or name', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      return one(
        await (await ctx.client()).request<Row>('GET', `/v1/products/${enc(need(ctx, 'PRODUCT'))}`),
        PRODUCT_COLS,
      );
    },
  },
  {
    path: ['product', 'update'],
    summary: 'Rename a product or change its description',
    args: [{ name: 'PRODUCT', description: 'product id or name', required: true }],
    options: [
      { name: 'name', type: 'string', valueName: 'NAME', description: 'new name' },
      { name: 'description', type: 'string', valueName: 'TEXT', description: 'new description' },
    ],
    service: true,
    async run(ctx) {
      const body: Row = {};
      const n = str(ctx, 'name');
      const d = str(ctx, 'description');
      if (n !== undefined) body['name'] = n;
      if (d !== undefined) body['description'] = d;
      if (Object.keys(body).length === 0)
        throw new HeptadError('CLI_USAGE', 'give --name and/or --description');
      const c = await ctx.client();
      return one(
        await c.request<Row>('PATCH', `/v1/products/${enc(need(ctx, 'PRODUCT'))}`, body),
        PRODUCT_COLS,
      );
    },
  },
  {
    path: ['product', 'delete'],
    summary: 'Delete a product and its device groups (refused while any has devices)',
    args: [{ name: 'PRODUCT', description: 'product id or name', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const ref = need(ctx, 'PRODUCT');
      await (await ctx.client()).request('DELETE', `/v1/products/${enc(ref)}`);
      return { data: { deleted: ref }, text: `Deleted product ${ref}\n` };
    },
  },

  // ---- device groups ----
  {
    path: ['device-group', 'create'],
    summary: 'Create a device group in a product',
    args: [{ name: 'NAME', description: 'group name', required: true }],
    options: [
      {
        name: 'product',
        type: 'string',
        valueName: 'PRODUCT',
        description: 'product id or name',
        required: true,
      },
      ...GROUP_OPTIONS,
    ],
    service: true,
    examples: ['heptad device-group create --product DW100 "Marketing" --os-feed retail-eval'],
    async run(ctx) {
      const body = { product: need(ctx, 'product'), name: need(ctx, 'NAME'), ...groupBody(ctx) };
      return one(await (await ctx.client()).request<Row>('POST', '/v1/device-groups', body), GROUP_COLS);
    },
  },
  {
    path: ['device-group', 'list'],
    summary: 'List device groups (of one product with --product)',
    args: [],
    options: [{ name: 'product', type: 'string', valueName: 'PRODUCT', description: 'product id or name' }],
    service: true,
    async run(ctx) {
      const p = str(ctx, 'product');
      const q = p === undefined ? '' : `?product=${enc(p)}`;
      const { items } = await (await ctx.client()).request<{ items: Row[] }>('GET', `/v1/device-groups${q}`);
      return list(items, GROUP_COLS);
    },
  },
  {
    path: ['device-group', 'show'],
    summary: 'Show a device group',
    args: [{ name: 'GROUP', description: 'device group id or "Product/Group"', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const c = await ctx.client();
      return one(
        await c.request<Row>('GET', `/v1/device-groups/${encGroup(need(ctx, 'GROUP'))}`),
        GROUP_COLS,
      );
    },
  },
  {
    path: ['device-group', 'update'],
    summary: 'Change a device group',
    args: [{ name: 'GROUP', description: 'device group id or "Product/Group"', required: true }],
    options: [
      { name: 'name', type: 'string', valueName: 'NAME', description: 'new name' },
      ...GROUP_OPTIONS,
      {
        name: 'allow-peer-messages',
        type: 'boolean',
        description: "let the group's devices message each other under groups/<id>/… on the broker",
      },
      {
        name: 'no-allow-peer-messages',
        type: 'boolean',
        description: 'stop device-to-device messages (default)',
      },
    ],
    service: true,
    examples: ['heptad device-group update "DW100/Field Test" --allow-peer-messages'],
    async run(ctx) {
      const body = groupBody(ctx);
      const n = str(ctx, 'name');
      if (n !== undefined) body['name'] = n;
      const allow = ctx.options['allow-peer-messages'] === true;
      const deny = ctx.options['no-allow-peer-messages'] === true;
      if (allow && deny)
        throw new HeptadError(
          'CLI_USAGE',
          'give --allow-peer-messages or --no-allow-peer-messages, not both',
        );
      if (allow || deny) body['allowPeerMessages'] = allow;
      if (Object.keys(body).length === 0)
        throw new HeptadError('CLI_USAGE', 'give at least one change (see --help)');
      const c = await ctx.client();
      return one(
        await c.request<Row>('PATCH', `/v1/device-groups/${encGroup(need(ctx, 'GROUP'))}`, body),
        GROUP_COLS,
      );
    },
  },
  {
    path: ['device-group', 'delete'],
    summary: 'Delete a device group (refused while it has devices)',
    args: [{ name: 'GROUP', description: 'device group id or "Product/Group"', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const ref = need(ctx, 'GROUP');
      await (await ctx.client()).request('DELETE', `/v1/device-groups/${encGroup(ref)}`);
      return { data: { deleted: ref }, text: `Deleted device group ${ref}\n` };
    },
  },

  // ---- devices ----
  {
    path: ['device', 'register'],
    summary: 'Add a manufactured device to the device registry (operator)',
    description:
      'Give the registration record written at manufacture (--from DIR/registration.json), or the id and ' +
      'public key by hand (--id and --public-key).',
    args: [],
    options: [
      {
        name: 'from',
        type: 'string',
        valueName: 'FILE',
        description: 'registration record (DIR/registration.json)',
      },
      {
        name: 'id',
        type: 'string',
        valueName: 'ID',
        description: 'device id: SHA-256 (hex) of the identity key SPKI',
      },
      { name: 'public-key', type: 'string', valueName: 'FILE', description: 'identity public key, SPKI PEM' },
      {
        name: 'rot-kind',
        type: 'string',
        valueName: 'tpm|soft',
        description: 'kind of root of trust (default unknown)',
      },
    ],
    service: true,
    async run(ctx) {
      const from = str(ctx, 'from');
      let body: Row;
      if (from !== undefined) {
        if (str(ctx, 'id') !== undefined || str(ctx, 'public-key') !== undefined) {
          throw new HeptadError('CLI_USAGE', 'give --from, or --id with --public-key, not both');
        }
        try {
          body = JSON.parse(readFileArg(ctx, from, 'registration record', 'utf8')) as Row;
        } catch (cause) {
          if (cause instanceof HeptadError) throw cause;
          throw new HeptadError('CLI_FILE_UNREADABLE', `${from} is not JSON`, { cause });
        }
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
          throw new HeptadError('CLI_FILE_UNREADABLE', `${from} is not a registration record`);
        }
      } else {
        const id = str(ctx, 'id');
        const keyFile = str(ctx, 'public-key');
        if (id === undefined || keyFile === undefined) {
          throw new HeptadError('CLI_USAGE', 'give --from FILE, or --id ID and --public-key FILE');
        }
        body = { id: id.toLowerCase(), publicKey: readFileArg(ctx, keyFile, 'public key file', 'utf8') };
      }
      const rot = str(ctx, 'rot-kind');
      if (rot !== undefined) body['rotKind'] = rot;
      return one(await (await ctx.client()).request<Row>('POST', '/v1/devices', body), DEVICE_COLS);
    },
  },
  {
    path: ['device', 'claim'],
    summary: 'Claim devices for your tenant (up to 1000 at once, all or nothing)',
    description:
      'Claiming is one-time: a device claimed by another tenant cannot be claimed (only the operator can unclaim it).',
    args: [{ name: 'ID', description: 'device ids', required: false, variadic: true }],
    options: [
      {
        name: 'from-file',
        type: 'string',
        valueName: 'FILE',
        description: 'read device ids from a file, one per line',
      },
      {
        name: 'device-group',
        type: 'string',
        valueName: 'GROUP',
        description: 'put the devices in this group ("Product/Group" or id)',
      },
    ],
    service: true,
    async run(ctx) {
      const ids = [...((ctx.args['ID'] as string[] | undefined) ?? [])];
      const file = str(ctx, 'from-file');
      if (file !== undefined) {
        ids.push(
          ...readFileArg(ctx, file, 'device id file', 'utf8')
            .split(/\r?\n/)
            .map((l) => l.trim())
            .filter((l) => l !== '' && !l.startsWith('#')),
        );
      }
      if (ids.length === 0)
        throw new HeptadError('CLI_USAGE', 'give device ids as arguments or with --from-file');
      const normalized = ids.map((i) => i.toLowerCase());
      const bad = normalized.filter((i) => !isDeviceId(i));
      if (bad.length > 0)
        throw new HeptadError('CLI_USAGE', `not a device id (64 hex): ${bad.slice(0, 3).join(', ')}`);
      if (new Set(normalized).size > 1000)
        throw new HeptadError('CLI_USAGE', 'at most 1000 devices per claim');
      const body: Row = { deviceIds: [...new Set(normalized)] };
      const g = str(ctx, 'device-group');
      if (g !== undefined) body['deviceGroup'] = g;
      const r = await (await ctx.client()).request<{ claimed: string[]; alreadyClaimed: string[] }>(
        'POST',
        '/v1/devices/claim',
        body,
      );
      const rows = [
        ...r.claimed.map((id) => ({ id, result: 'claimed' })),
        ...r.alreadyClaimed.map((id) => ({ id, result: 'already claimed by this tenant' })),
      ];
      return { data: r, table: { columns: [col('ID', 'id'), col('RESULT', 'result')], rows } };
    },
  },
  {
    path: ['device', 'list'],
    summary: "List your tenant's devices (the whole registry for the operator)",
    args: [],
    options: [
      {
        name: 'device-group',
        type: 'string',
        valueName: 'GROUP',
        description: 'only this group ("Product/Group" or id)',
      },
      { name: 'limit', type: 'string', valueName: 'N', description: 'page size, 1–1000 (default 100)' },
      {
        name: 'after',
        type: 'string',
        valueName: 'ID',
        description: 'continue after this device id (from nextCursor)',
      },
    ],
    service: true,
    async run(ctx) {
      const q = new URLSearchParams();
      for (const [flag, key] of [
        ['device-group', 'deviceGroup'],
        ['limit', 'limit'],
        ['after', 'after'],
      ] as const) {
        const v = str(ctx, flag);
        if (v !== undefined) q.set(key, v);
      }
      const qs = q.size > 0 ? `?${q.toString()}` : '';
      const page = await (await ctx.client()).request<{ items: Row[]; nextCursor: string | null }>(
        'GET',
        `/v1/devices${qs}`,
      );
      return {
        ...list(page.items, DEVICE_COLS, page),
        ...(page.nextCursor ? { note: `More devices: --after ${page.nextCursor}` } : {}),
      };
    },
  },
  {
    path: ['device', 'show'],
    summary: 'Show a device',
    args: [{ name: 'ID', description: 'device id', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const id = need(ctx, 'ID').toLowerCase();
      const d = await (await ctx.client()).request<Row>('GET', `/v1/devices/${enc(id)}`);
      // The runtime the device last reported, on one line, and its boot events one per line.
      const rt = d['runtime'] as
        | { version: string; slot: string; trial: boolean; floor: number; reportedAt: string; events?: Row[] }
        | null
        | undefined;
      const pairs: Array<[string, unknown]> = Object.entries(d).filter(([k]) => k !== 'runtime');
      pairs.push([
        'runtime',
        rt
          ? `${rt.version} (slot ${rt.slot}, ${rt.trial ? 'trial' : 'committed'}, floor ${rt.floor}, reported ${rt.reportedAt})`
          : null,
      ]);
      for (const e of rt?.events ?? [])
        pairs.push([
          'event',
          [e['at'], e['kind'], e['slot'] && `slot ${e['slot']}`, e['version'], e['code']]
            .filter(Boolean)
            .join('  '),
        ]);
      return { data: d, text: renderRecord(pairs) };
    },
  },
  {
    path: ['device', 'update'],
    summary: 'Move a device to another device group',
    args: [{ name: 'ID', description: 'device id', required: true }],
    options: [
      { name: 'device-group', type: 'string', valueName: 'GROUP', description: '"Product/Group" or id' },
      { name: 'no-device-group', type: 'boolean', description: 'take the device out of any group' },
    ],
    service: true,
    async run(ctx) {
      const g = str(ctx, 'device-group');
      const none = ctx.options['no-device-group'] === true;
      if ((g === undefined) === !none)
        throw new HeptadError('CLI_USAGE', 'give exactly one of --device-group or --no-device-group');
      const id = need(ctx, 'ID').toLowerCase();
      const d = await (await ctx.client()).request<Row>('PATCH', `/v1/devices/${enc(id)}`, {
        deviceGroup: g ?? null,
      });
      return one(d, DEVICE_COLS);
    },
  },
  {
    path: ['device', 'unclaim'],
    summary: 'Take a claimed device from its tenant so it can be claimed again (operator)',
    args: [{ name: 'ID', description: 'device id', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const id = need(ctx, 'ID').toLowerCase();
      return one(
        await (await ctx.client()).request<Row>('POST', `/v1/devices/${enc(id)}/unclaim`),
        DEVICE_COLS,
      );
    },
  },

  ...DEVICE_LOCAL_COMMANDS,
  ...PKI_COMMANDS,
  ...RUNTIME_COMMANDS,
  ...APP_DEVICE_COMMANDS,
  ...IMAGE_COMMANDS,
  ...DEPLOYMENT_COMMANDS,
  ...CAPABILITY_COMMANDS,
  ...UPDATE_STATUS_COMMANDS,
  ...RUNTIME_RELEASE_COMMANDS,
  ...TUF_COMMANDS,
  ...BROKER_COMMANDS,
  ...DEVICE_REPORT_COMMANDS,
  ...ERROR_REPORT_COMMANDS,

  // ---- audit ----
  {
    path: ['audit', 'list'],
    summary: 'Show the audit log, newest first (Administrator: your tenant; operator: all)',
    args: [],
    options: [
      { name: 'limit', type: 'string', valueName: 'N', description: 'how many, 1–1000 (default 100)' },
      {
        name: 'before',
        type: 'string',
        valueName: 'SEQ',
        description: 'continue before this sequence number (from nextCursor)',
      },
    ],
    service: true,
    async run(ctx) {
      const q = new URLSearchParams();
      const l = str(ctx, 'limit');
      const b = str(ctx, 'before');
      if (l !== undefined) q.set('limit', l);
      if (b !== undefined) q.set('before', b);
      const qs = q.size > 0 ? `?${q.toString()}` : '';
      const page = await (await ctx.client()).request<{ items: Row[]; nextCursor: string | null }>(
        'GET',
        `/v1/audit${qs}`,
      );
      return {
        ...list(page.items, AUDIT_COLS, page),
        ...(page.nextCursor ? { note: `Older events: --before ${page.nextCursor}` } : {}),
      };
    },
  },
];
