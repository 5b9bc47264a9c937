import { createPublicKey, randomUUID } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import {
  buildPackage,
  HeptadError,
  type JsonObject,
  keyIdOf,
  type PackageFileInput,
  parseAppManifestText,
  verifyPackage,
  writeFileAtomic,
} from '@heptad/protocol';
import { securityVersionOption, str, versionOption } from './args.ts';
import { loadSigningKey } from './runtime-commands.ts';
import type { CommandSpec } from './spec.ts';

const MAX_APP_FILES = 1024;

/**
 * Every regular file under `dir`, as package paths. Links and special files are refused: a
 * package has regular files only, and following a link could pack a file from outside the app.
 */
function collectFiles(dir: string): PackageFileInput[] {
  const out: PackageFileInput[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      const st = lstatSync(full);
      const rel = relative(dir, full).split(sep).join('/');
      if (st.isSymbolicLink())
        throw new HeptadError(
          'CLI_APP_DIR_INVALID',
          `${rel} is a symbolic link; packages hold regular files only`,
        );
      if (st.isDirectory()) walk(full);
      else if (st.isFile()) {
        out.push({ path: rel, mode: st.mode & 0o111 ? 0o755 : 0o644, content: readFileSync(full) });
        if (out.length > MAX_APP_FILES)
          throw new HeptadError('CLI_APP_DIR_INVALID', `more than ${MAX_APP_FILES} files`);
      } else throw new HeptadError('CLI_APP_DIR_INVALID', `${rel} is not a regular file`);
    }
  };
  walk(dir);
  return out;
}

/**
 * app_manifest.json, checked as the service and the device will check it (every problem at once,
 * APP_MANIFEST_INVALID), with EntryPoint among the folder's files.
 */
function readAppManifest(
  dir: string,
  files: readonly PackageFileInput[],
): { json: JsonObject; name: string; componentId: string; entryPoint: string } {
  const path = join(dir, 'app_manifest.json');
  let text: Buffer;
  try {
    text = readFileSync(path);
  } catch (cause) {
    throw new HeptadError('CLI_APP_DIR_INVALID', `${path} is missing`, { cause });
  }
  const m = parseAppManifestText(text, { files: files.map((f) => f.path) });
  return {
    json: JSON.parse(text.toString('utf8')) as JsonObject,
    name: m.name,
    componentId: m.componentId,
    entryPoint: m.entryPoint,
  };
}

const IMAGE_COLUMNS = [
  { header: 'ID', get: (r: Record<string, unknown>) => r['id'] },
  { header: 'NAME', get: (r: Record<string, unknown>) => r['name'] },
  { header: 'VERSION', get: (r: Record<string, unknown>) => r['version'] },
  { header: 'COMPONENT', get: (r: Record<string, unknown>) => r['componentId'] },
  { header: 'CREATED', get: (r: Record<string, unknown>) => r['createdAt'] },
];

export const IMAGE_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['image', 'pack'],
    summary:
      'Pack an application folder (with its app_manifest.json) into an image package signed by your key',
    description:
      'Every regular file under APP_DIR goes into the package (links and special files are refused). The ' +
      'package manifest takes Name, ComponentId and EntryPoint from app_manifest.json and carries the whole ' +
      'app manifest. A fresh image id is made for every build. Upload it with heptad image add; the service ' +
      'signs it with the tenant’s production key.',
    args: [{ name: 'APP_DIR', description: 'the application folder', required: true }],
    options: [
      {
        name: 'out',
        type: 'string',
        valueName: 'FILE',
        description: 'package file to write',
        required: true,
      },
      {
        name: 'key',
        type: 'string',
        valueName: 'FILE',
        description: 'your signing key (heptad key create)',
        required: true,
      },
      {
        name: 'version',
        type: 'string',
        valueName: 'X.Y.Z',
        description: 'semantic version',
        required: true,
      },
      {
        name: 'security-version',
        type: 'string',
        valueName: 'N',
        description: 'anti-rollback security version (default 0)',
      },
    ],
    service: false,
    examples: ['heptad image pack ./blink --out blink-1.0.0.hpkg --key dev.key --version 1.0.0'],
    async run(ctx) {
      const dir = resolve(ctx.io.cwd, String(str(ctx, 'APP_DIR')));
      const version = versionOption(ctx);
      const sv = securityVersionOption(ctx, '0');
      const key = loadSigningKey(ctx, String(str(ctx, 'key')));
      let isDir = false;
      try {
        isDir = lstatSync(dir).isDirectory();
      } catch {
        // reported below
      }
      if (!isDir) throw new HeptadError('CLI_APP_DIR_INVALID', `${dir} is not a folder`);
      const files = collectFiles(dir);
      const app = readAppManifest(dir, files);
      const pkg = buildPackage({
        manifest: {
          componentId: app.componentId,
          imageId: randomUUID(),
          name: app.name,
          version,
          securityVersion: sv,
          type: 'application',
          entryPoint: app.entryPoint,
          appManifest: app.json,
          createdAt: new Date().toISOString(),
        },
        files,
        signers: [{ privateKey: key }],
      });
      const v = verifyPackage(pkg, new Map([[keyIdOf(key), createPublicKey(key)]]));
      const out = resolve(ctx.io.cwd, String(str(ctx, 'out')));
      writeFileAtomic(out, pkg, 0o644);
      return {
        data: {
          file: out,
          imageId: v.manifest.imageId,
          componentId: app.componentId,
          digest: v.digest,
          size: pkg.length,
        },
        text: `${v.manifest.imageId}\n`,
        note: `Wrote ${out} (${pkg.length} bytes, ${v.files.length} files). Upload it: heptad image add ${out}`,
      };
    },
  },
  {
    path: ['image', 'add'],
    summary:
      'Upload an image package; the service validates it and signs it with the tenant’s production key',
    args: [{ name: 'FILE', description: 'image package (heptad image pack)', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const file = resolve(ctx.io.cwd, String(str(ctx, 'FILE')));
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (cause) {
        throw new HeptadError('CLI_FILE_UNREADABLE', `cannot read package ${file}`, { cause });
      }
      // A progress line on stderr while a large package travels (terminals only; logs stay clean).
      const tty = Boolean(process.stderr.isTTY);
      let shown = -1;
      const image = await (await ctx.client()).upload<Record<string, unknown>>(
        '/v1/images',
        bytes,
        (sent, total) => {
          const pct = Math.floor((sent / total) * 100);
          if (tty && pct !== shown && (pct % 5 === 0 || sent === total)) {
            shown = pct;
            const bar = '#'.repeat(Math.floor(pct / 5)).padEnd(20, '.');
            ctx.io.stderr(
              `\rUploading [${bar}] ${pct}% of ${(total / 1048576).toFixed(1)} MiB${sent === total ? '\n' : ''}`,
            );
          }
        },
      );
      return { data: image, table: { columns: IMAGE_COLUMNS, rows: [image] } };
    },
  },
  {
    path: ['image', 'list'],
    summary: "List the tenant's images, newest first",
    args: [],
    options: [
      { name: 'component', type: 'string', valueName: 'ID', description: 'only this component id' },
      { name: 'limit', type: 'string', valueName: 'N', description: '1–1000 (default 100)' },
      {
        name: 'after',
        type: 'string',
        valueName: 'ID',
        description: 'the last image id of the previous page',
      },
    ],
    service: true,
    async run(ctx) {
      const q = new URLSearchParams();
      for (const [opt, param] of [
        ['component', 'componentId'],
        ['limit', 'limit'],
        ['after', 'after'],
      ] as const) {
        const v = str(ctx, opt);
        if (v !== undefined) q.set(param, v);
      }
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        `/v1/images${q.size > 0 ? `?${q}` : ''}`,
      );
      return { data: { items }, table: { columns: IMAGE_COLUMNS, rows: items } };
    },
  },
  {
    path: ['image', 'show'],
    summary: 'Show an image and its app manifest',
    args: [{ name: 'ID', description: 'image id', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const id = encodeURIComponent(String(str(ctx, 'ID')));
      return { data: await (await ctx.client()).request<Record<string, unknown>>('GET', `/v1/images/${id}`) };
    },
  },
  {
    path: ['image', 'download'],
    summary: 'Download the production-signed image package',
    args: [{ name: 'ID', description: 'image id', required: true }],
    options: [
      { name: 'out', type: 'string', valueName: 'FILE', description: 'file to write', required: true },
    ],
    service: true,
    async run(ctx) {
      const id = encodeURIComponent(String(str(ctx, 'ID')));
      const bytes = await (await ctx.client()).download(`/v1/images/${id}/content`);
      const out = resolve(ctx.io.cwd, String(str(ctx, 'out')));
      writeFileSync(out, bytes, { mode: 0o644 });
      return { data: { file: out, size: bytes.length }, text: `Wrote ${out} (${bytes.length} bytes)\n` };
    },
  },
  {
    path: ['image', 'signing-key'],
    summary: "Print the tenant's production image-signing public key (PEM) and its key id",
    args: [],
    options: [],
    service: true,
    async run(ctx) {
      const k = await (await ctx.client()).request<{ keyId: string; publicKeyPem: string }>(
        'GET',
        '/v1/tenants/current/image-signing-key',
      );
      return { data: k, text: k.publicKeyPem };
    },
  },
];

const DEPLOYMENT_COLUMNS = [
  { header: 'ID', get: (r: Record<string, unknown>) => r['id'] },
  { header: 'GROUP', get: (r: Record<string, unknown>) => `${r['productName']}/${r['deviceGroupName']}` },
  { header: 'CURRENT', get: (r: Record<string, unknown>) => (r['current'] ? 'yes' : '') },
  {
    header: 'IMAGES',
    get: (r: Record<string, unknown>) =>
      (r['images'] as Array<Record<string, unknown>>).map((i) => `${i['name']} ${i['version']}`).join(', '),
  },
  { header: 'CREATED', get: (r: Record<string, unknown>) => r['createdAt'] },
];

export const DEPLOYMENT_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['deployment', 'create'],
    summary: "Deploy images to a device group (the newest deployment is what the group's devices must run)",
    args: [],
    options: [
      {
        name: 'device-group',
        type: 'string',
        valueName: 'GROUP',
        description: 'device group id or "Product/Group"',
        required: true,
      },
      {
        name: 'image',
        type: 'string',
        valueName: 'ID',
        description: 'image id; one per application (repeat for several)',
        required: true,
        multiple: true,
      },
    ],
    service: true,
    examples: ['heptad deployment create --device-group "DW100/Field Test" --image IMAGE_ID'],
    async run(ctx) {
      const images = ctx.options['image'];
      const body = {
        deviceGroup: String(ctx.options['device-group']),
        imageIds: Array.isArray(images) ? images : [String(images)],
      };
      const d = await (await ctx.client()).request<Record<string, unknown>>('POST', '/v1/deployments', body);
      return { data: d, table: { columns: DEPLOYMENT_COLUMNS, rows: [d] } };
    },
  },
  {
    path: ['deployment', 'list'],
    summary: "A device group's deployments, newest (current) first",
    args: [],
    options: [
      {
        name: 'device-group',
        type: 'string',
        valueName: 'GROUP',
        description: 'device group id or "Product/Group"',
        required: true,
      },
      { name: 'limit', type: 'string', valueName: 'N', description: '1–1000 (default 100)' },
    ],
    service: true,
    async run(ctx) {
      const q = new URLSearchParams({ deviceGroup: String(ctx.options['device-group']) });
      const limit = str(ctx, 'limit');
      if (limit !== undefined) q.set('limit', limit);
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        `/v1/deployments?${q}`,
      );
      return { data: { items }, table: { columns: DEPLOYMENT_COLUMNS, rows: items } };
    },
  },
  {
    path: ['deployment', 'show'],
    summary: "Show a deployment, its images and each device's progress (from the devices' update reports)",
    args: [{ name: 'ID', description: 'deployment id', required: true }],
    options: [
      { name: 'limit', type: 'string', valueName: 'N', description: 'devices shown, 1–1000 (default 100)' },
      {
        name: 'after',
        type: 'string',
        valueName: 'DEVICE_ID',
        description: 'devices after this id (paging)',
      },
    ],
    service: true,
    async run(ctx) {
      const id = encodeURIComponent(String(str(ctx, 'ID')));
      const client = await ctx.client();
      const d = await client.request<Record<string, unknown>>('GET', `/v1/deployments/${id}`);
      const q = new URLSearchParams();
      const limit = str(ctx, 'limit');
      const after = str(ctx, 'after');
      if (limit !== undefined) q.set('limit', limit);
      if (after !== undefined) q.set('after', after);
      const progress = await client.request<{
        summary: Record<string, number>;
        items: Array<Record<string, unknown>>;
      }>('GET', `/v1/deployments/${id}/progress${q.size > 0 ? `?${q}` : ''}`);
      const s = progress.summary;
      const names = new Map(
        (d['images'] as Array<Record<string, unknown>>).map((i) => [i['id'], `${i['name']} ${i['version']}`]),
      );
      return {
        data: { ...d, progress },
        table: {
          columns: [
            { header: 'DEVICE', get: (r) => r['deviceId'] },
            { header: 'STATE', get: (r) => r['state'] },
            {
              header: 'IMAGES',
              get: (r) =>
                (r['images'] as Array<Record<string, unknown>>)
                  .map(
                    (i) => `${names.get(i['imageId'])}: ${i['state']}${i['code'] ? ` (${i['code']})` : ''}`,
                  )
                  .join(', '),
            },
          ],
          rows: progress.items,
        },
        note: `deployment ${d['id']}${d['current'] ? ' (current)' : ''}: ${s['devices']} devices — ${s['installed']} installed, ${s['downloading']} downloading, ${s['pending']} pending, ${s['failed']} failed, ${s['rolledBack']} rolled back`,
      };
    },
  },
];

/** What a device reported about its updates. */
export const UPDATE_STATUS_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['device', 'update-status'],
    summary: 'What a device last reported about each component it updates (runtime and apps)',
    args: [{ name: 'ID', description: 'device id', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const id = encodeURIComponent(String(str(ctx, 'ID')));
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        `/v1/devices/${id}/update-status`,
      );
      return {
        data: { items },
        table: {
          columns: [
            { header: 'COMPONENT', get: (r) => r['componentId'] },
            { header: 'IMAGE', get: (r) => r['imageId'] },
            { header: 'STATE', get: (r) => r['state'] },
            { header: 'CODE', get: (r) => r['code'] ?? '' },
            { header: 'AT', get: (r) => r['at'] },
          ],
          rows: items,
        },
      };
    },
  },
];

/** Device capabilities (Administrator): appDevelopment, fieldServicing. */
export const CAPABILITY_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['device', 'capability', 'add'],
    summary:
      'Give a device a capability: appDevelopment (developer images, no cloud app updates) or fieldServicing',
    args: [
      { name: 'ID', description: 'device id', required: true },
      { name: 'CAPABILITY', description: 'appDevelopment or fieldServicing', required: true },
    ],
    options: [],
    service: true,
    async run(ctx) {
      const id = encodeURIComponent(String(str(ctx, 'ID')));
      const c = await (await ctx.client()).request<Record<string, unknown>>(
        'POST',
        `/v1/devices/${id}/capabilities`,
        {
          capability: String(str(ctx, 'CAPABILITY')),
        },
      );
      return { data: c };
    },
  },
  {
    path: ['device', 'capability', 'remove'],
    summary: 'Take a capability from a device',
    args: [
      { name: 'ID', description: 'device id', required: true },
      { name: 'CAPABILITY', description: 'appDevelopment or fieldServicing', required: true },
    ],
    options: [],
    service: true,
    async run(ctx) {
      const id = encodeURIComponent(String(str(ctx, 'ID')));
      const cap = encodeURIComponent(String(str(ctx, 'CAPABILITY')));
      await (await ctx.client()).request('DELETE', `/v1/devices/${id}/capabilities/${cap}`);
      return { data: { removed: str(ctx, 'CAPABILITY') }, text: `Removed ${str(ctx, 'CAPABILITY')}\n` };
    },
  },
  {
    path: ['device', 'capability', 'list'],
    summary: "List a device's capabilities",
    args: [{ name: 'ID', description: 'device id', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const id = encodeURIComponent(String(str(ctx, 'ID')));
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        `/v1/devices/${id}/capabilities`,
      );
      return {
        data: { items },
        table: {
          columns: [
            { header: 'CAPABILITY', get: (r) => r['capability'] },
            { header: 'ADDED', get: (r) => r['addedAt'] },
          ],
          rows: items,
        },
      };
    },
  },
];
