import { HeptadError } from '@heptad/protocol';
import { str } from './args.ts';
import type { CommandContext, CommandSpec } from './spec.ts';

const ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
const REPOSITORIES = ['image', 'director'] as const;

/** A choice among `allowed`, refused here with the list (the service refuses it too). */
function choice<T extends string>(ctx: CommandContext, name: string, allowed: readonly T[]): T | undefined {
  const v = str(ctx, name);
  if (v !== undefined && !(allowed as readonly string[]).includes(v))
    throw new HeptadError('REQUEST_INVALID', `--${name} must be one of ${allowed.join(', ')}`);
  return v as T | undefined;
}

interface SignedFile {
  signed: { version: number; expires: string; meta?: Record<string, { version: number }> };
}

/** Update metadata (TUF, docs/updates.md): key rotation and a look at what devices get. */
export const TUF_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['tenant', 'keys', 'rotate'],
    summary: "Rotate one of the tenant's TUF signing keys (Administrator); devices follow the root chain",
    description:
      'A new root version lists the new key. Rotating root signs the new root with the old and the new ' +
      'root key; rotating targets, snapshot or timestamp also signs that metadata again with the new key. ' +
      'Without --repository, both repositories rotate.',
    args: [],
    options: [
      {
        name: 'role',
        type: 'string',
        valueName: 'root|targets|snapshot|timestamp',
        description: 'the role whose key is replaced',
        required: true,
      },
      {
        name: 'repository',
        type: 'string',
        valueName: 'image|director',
        description: 'only this repository',
      },
    ],
    service: true,
    examples: [
      'heptad tenant keys rotate --role timestamp',
      'heptad tenant keys rotate --role root --repository director',
    ],
    async run(ctx) {
      const role = choice(ctx, 'role', ROLES);
      const repository = choice(ctx, 'repository', REPOSITORIES);
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'POST',
        '/v1/tenants/current/tuf-keys/rotate',
        { role, ...(repository ? { repository } : {}) },
      );
      return {
        data: items,
        table: {
          columns: [
            { header: 'REPOSITORY', get: (r) => r['repository'] },
            { header: 'ROLE', get: (r) => r['role'] },
            { header: 'KEY ID', get: (r) => r['keyId'] },
            { header: 'ROOT VERSION', get: (r) => r['rootVersion'] },
          ],
          rows: items,
        },
      };
    },
  },
  {
    path: ['tuf', 'show'],
    summary: 'Show the TUF metadata devices get: the image repository, or a device group’s director',
    args: [],
    options: [
      {
        name: 'repository',
        type: 'string',
        valueName: 'image|director',
        description: 'which repository',
        required: true,
      },
      {
        name: 'device-group',
        type: 'string',
        valueName: 'GROUP',
        description: 'the device group (director; id or "Product/Group")',
      },
      {
        name: 'role',
        type: 'string',
        valueName: 'root|targets|snapshot|timestamp',
        description: 'which file, the current one (default timestamp)',
      },
    ],
    service: true,
    examples: ['heptad tuf show --repository director --device-group "DW100/Field Test" --role targets'],
    async run(ctx) {
      const repository = choice(ctx, 'repository', REPOSITORIES);
      const role = choice(ctx, 'role', ROLES) ?? 'timestamp';
      const group = str(ctx, 'device-group');
      if ((repository === 'director') !== (group !== undefined))
        throw new HeptadError(
          'REQUEST_INVALID',
          '--device-group goes with --repository director (and only there)',
        );
      const base =
        repository === 'image'
          ? '/v1/tuf/image/metadata'
          : `/v1/tuf/director/${encodeURIComponent(String(group))}/metadata`;
      const c = await ctx.client();
      const get = (file: string) => c.request<SignedFile>('GET', `${base}/${file}`);
      let file: SignedFile;
      if (role === 'timestamp' || role === 'root') file = await get(`${role}.json`);
      else {
        const timestamp = await get('timestamp.json');
        const snapshotVersion = timestamp.signed.meta?.['snapshot.json']?.version;
        const snapshot = await get(`${snapshotVersion}.snapshot.json`);
        file =
          role === 'snapshot'
            ? snapshot
            : await get(`${snapshot.signed.meta?.['targets.json']?.version}.targets.json`);
      }
      return { data: file, text: `${JSON.stringify(file, null, 2)}\n` };
    },
  },
];
