import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { buildPackage, type JsonObject } from '@heptad/protocol';

/** A developer's signing key: unknown to the service (it validates, then signs with the tenant key). */
export const devKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

export interface AppPackageOptions {
  componentId?: string;
  imageId?: string;
  name?: string;
  version?: string;
  securityVersion?: number;
  type?: 'application' | 'runtime';
  key?: KeyObject;
  files?: Array<{ path: string; content: Buffer }>;
  /** fields that replace the app manifest's own (to build bad ones) */
  appManifestPatch?: Record<string, unknown>;
}

/** An application image package as `heptad image pack` builds it, signed by the developer key. */
export function appPackage(o: AppPackageOptions = {}): Buffer {
  const type = o.type ?? 'application';
  const componentId = o.componentId ?? randomUUID();
  const name = o.name ?? 'blink';
  return buildPackage({
    manifest: {
      componentId,
      imageId: o.imageId ?? randomUUID(),
      name,
      version: o.version ?? '1.0.0',
      securityVersion: o.securityVersion ?? 1,
      type,
      entryPoint: 'main.js',
      createdAt: '2026-11-22T10:00:00.000Z',
      ...(type === 'application'
        ? {
            appManifest: {
              SchemaVersion: 1,
              Name: name,
              ComponentId: componentId,
              EntryPoint: 'main.js',
              Capabilities: { Gpio: ['LED1'] },
              ...o.appManifestPatch,
            } as JsonObject,
          }
        : {}),
    },
    files: o.files ?? [{ path: 'main.js', content: Buffer.from("console.log('blink');\n") }],
    signers: [{ privateKey: o.key ?? devKey.privateKey }],
  });
}

/** Where a package's signed region ends (image-package.md §2: 20 + M + P). */
export function signedRegionEnd(pkg: Buffer): number {
  return 20 + pkg.readUInt32BE(8) + Number(pkg.readBigUInt64BE(12));
}

export const octet = { 'content-type': 'application/octet-stream' };
