// Packs example apps (or any app folder) into signed application packages for tests, the way
// `heptad image pack` does, and prepares a device state folder whose app store trusts the key.
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPackage, type JsonObject, type PackageFileInput } from '@heptad/protocol';

export const EXAMPLES = fileURLToPath(new URL('../../../../examples/', import.meta.url));

export const EXAMPLE_IDS = {
  blink: '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b',
  crasher: '0c3d5e7f-1a2b-4c3d-9e4f-5a6b7c8d9e0f',
  intruder: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
  telemetry: '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b',
} as const;

export const tenantKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
export const tenantPem = String(tenantKey.publicKey.export({ type: 'spki', format: 'pem' }));

function collect(dir: string): PackageFileInput[] {
  const out: PackageFileInput[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      if (e.isDirectory()) walk(full);
      else out.push({ path: relative(dir, full).split(sep).join('/'), content: readFileSync(full) });
    }
  };
  walk(dir);
  return out;
}

/**
 * Packs an app folder. `override` replaces files (path → content) and `manifest` patches the app
 * manifest's top level and Capabilities.
 */
export function packApp(
  dir: string,
  opts: {
    version?: string;
    override?: Record<string, string | Buffer>;
    capabilities?: JsonObject;
    cmdArgs?: string[];
    key?: KeyObject;
  } = {},
): Buffer {
  const files = collect(dir).filter((f) => opts.override?.[f.path] === undefined);
  for (const [path, content] of Object.entries(opts.override ?? {}))
    files.push({ path, content: Buffer.from(content) });
  const app = JSON.parse(readFileSync(join(dir, 'app_manifest.json'), 'utf8')) as JsonObject;
  if (opts.capabilities)
    app['Capabilities'] = { ...(app['Capabilities'] as JsonObject), ...opts.capabilities };
  if (opts.cmdArgs) app['CmdArgs'] = opts.cmdArgs;
  return buildPackage({
    manifest: {
      componentId: String(app['ComponentId']),
      imageId: randomUUID(),
      name: String(app['Name']),
      version: opts.version ?? '1.0.0',
      securityVersion: 0,
      type: 'application',
      entryPoint: String(app['EntryPoint']),
      appManifest: app,
      createdAt: new Date().toISOString(),
    },
    files,
    signers: [{ privateKey: opts.key ?? tenantKey.privateKey }],
  });
}

export const example = (name: keyof typeof EXAMPLE_IDS) => join(EXAMPLES, name);

export function ensureDir(d: string): string {
  mkdirSync(d, { recursive: true, mode: 0o700 });
  return d;
}

/** Packs an app from a manifest object and in-memory files (entry point main.ts unless given). */
export function packInline(
  manifest: {
    Name: string;
    ComponentId: string;
    Capabilities?: JsonObject;
    CmdArgs?: string[];
    EntryPoint?: string;
  },
  files: Record<string, string>,
  opts: { version?: string; key?: KeyObject } = {},
): Buffer {
  const app: JsonObject = {
    SchemaVersion: 1,
    EntryPoint: 'main.ts',
    Capabilities: {},
    ...manifest,
  } as JsonObject;
  return buildPackage({
    manifest: {
      componentId: manifest.ComponentId,
      imageId: randomUUID(),
      name: manifest.Name,
      version: opts.version ?? '1.0.0',
      securityVersion: 0,
      type: 'application',
      entryPoint: String(app['EntryPoint']),
      appManifest: app,
      createdAt: new Date().toISOString(),
    },
    files: Object.entries(files).map(([path, content]) => ({ path, content: Buffer.from(content) })),
    signers: [{ privateKey: opts.key ?? tenantKey.privateKey }],
  });
}
