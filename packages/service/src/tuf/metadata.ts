/**
 * TUF 1.0 metadata, signed: pure functions of keys, versions, expiry times and target lists that
 * return the exact bytes a device downloads. No I/O, no clock (times are arguments). Written with
 * @tufjs/models so that tuf-js (the device's client) reads exactly what it was made to read.
 */
import { createHash, type KeyObject, sign } from 'node:crypto';
import {
  Key,
  Metadata,
  MetaFile,
  Root,
  Signature,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from '@tufjs/models';
import type { TufRepositoryName, TufRoleName } from '../store/schema.ts';

export const TUF_ROLES: readonly TufRoleName[] = ['root', 'targets', 'snapshot', 'timestamp'];
export const TUF_REPOSITORIES: readonly TufRepositoryName[] = ['image', 'director'];

/** ECDSA P-256 keys, as tuf-js names them. */
export const KEY_TYPE = 'ecdsa';
export const KEY_SCHEME = 'ecdsa-sha2-nistp256';
/** The TUF specification version the files claim (the one @tufjs/models 5 implements). */
export const SPEC_VERSION = '1.0.31';

/** What a device learns about a target, beyond length and hash (docs/updates.md). */
export interface TargetCustom {
  readonly componentId: string;
  readonly imageId: string;
  readonly name: string;
  readonly version: string;
  readonly securityVersion: number;
  readonly type: 'application' | 'runtime';
}

export interface TargetEntry {
  /** `apps/<componentId>/<imageId>.hpkg` or `runtime/<imageId>.hpkg` */
  readonly path: string;
  readonly length: number;
  /** SHA-256 (hex) of the exact bytes served: the name of the file in the blob store */
  readonly sha256: string;
  readonly custom: TargetCustom;
}

export interface PublicTufKey {
  readonly keyId: string;
  readonly publicKeyPem: string;
}

export interface TufSigner extends PublicTufKey {
  readonly privateKey: KeyObject;
}

export interface SignedFile {
  readonly role: TufRoleName;
  readonly version: number;
  /** ISO-8601 UTC to the second, as TUF writes it */
  readonly expires: string;
  readonly bytes: Buffer;
}

/** Securesystemslib canonical JSON of a string: only `\` and `"` are escaped (not newlines). */
const canonicalString = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** TUF key id: SHA-256 of the key's canonical JSON (keytype, keyval, scheme in key order). */
export function tufKeyIdOf(publicKeyPem: string): string {
  const canonical = `{"keytype":${canonicalString(KEY_TYPE)},"keyval":{"public":${canonicalString(publicKeyPem)}},"scheme":${canonicalString(KEY_SCHEME)}}`;
  return createHash('sha256').update(canonical).digest('hex');
}

/** TUF expiry: UTC to the second, no fraction (what every TUF client parses). */
export const tufTime = (t: Date): string => `${t.toISOString().slice(0, 19)}Z`;

const sha256Hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function signAndSerialize(
  role: TufRoleName,
  signed: Root | Targets | Snapshot | Timestamp,
  signers: readonly TufSigner[],
): SignedFile {
  const md = new Metadata(signed);
  for (const s of signers) {
    md.sign(
      (data) => new Signature({ keyID: s.keyId, sig: sign('sha256', data, s.privateKey).toString('hex') }),
      true,
    );
  }
  return {
    role,
    version: signed.version,
    expires: signed.expires,
    bytes: Buffer.from(JSON.stringify(md.toJSON())),
  };
}

export interface RootInput {
  readonly version: number;
  readonly expires: Date;
  /** the keys each role trusts (threshold 1) */
  readonly keys: Readonly<Record<TufRoleName, readonly PublicTufKey[]>>;
  /** the root keys that sign: the previous root's and, after a root rotation, the new one's too */
  readonly signers: readonly TufSigner[];
}

/** Root with consistent snapshots on: versioned snapshot/targets names, hash-prefixed targets. */
export function signRoot(input: RootInput): SignedFile {
  const root = new Root({
    specVersion: SPEC_VERSION,
    version: input.version,
    expires: tufTime(input.expires),
    consistentSnapshot: true,
  });
  for (const role of TUF_ROLES) {
    for (const k of input.keys[role]) {
      root.addKey(
        new Key({
          keyID: k.keyId,
          keyType: KEY_TYPE,
          scheme: KEY_SCHEME,
          keyVal: { public: k.publicKeyPem },
        }),
        role,
      );
    }
  }
  return signAndSerialize('root', root, input.signers);
}

export function signTargets(input: {
  version: number;
  expires: Date;
  targets: readonly TargetEntry[];
  signer: TufSigner;
}): SignedFile {
  const files: Record<string, TargetFile> = {};
  for (const t of input.targets) {
    files[t.path] = new TargetFile({
      path: t.path,
      length: t.length,
      hashes: { sha256: t.sha256 },
      unrecognizedFields: { custom: { ...t.custom } },
    });
  }
  return signAndSerialize(
    'targets',
    new Targets({
      specVersion: SPEC_VERSION,
      version: input.version,
      expires: tufTime(input.expires),
      targets: files,
    }),
    [input.signer],
  );
}

/** A file's version, length and SHA-256, as snapshot and timestamp name it. */
export function metaFileOf(file: { version: number; bytes: Buffer }): MetaFile {
  return new MetaFile({
    version: file.version,
    length: file.bytes.length,
    hashes: { sha256: sha256Hex(file.bytes) },
  });
}

export function signSnapshot(input: {
  version: number;
  expires: Date;
  targets: { version: number; bytes: Buffer };
  signer: TufSigner;
}): SignedFile {
  return signAndSerialize(
    'snapshot',
    new Snapshot({
      specVersion: SPEC_VERSION,
      version: input.version,
      expires: tufTime(input.expires),
      meta: { 'targets.json': metaFileOf(input.targets) },
    }),
    [input.signer],
  );
}

export function signTimestamp(input: {
  version: number;
  expires: Date;
  snapshot: { version: number; bytes: Buffer };
  signer: TufSigner;
}): SignedFile {
  return signAndSerialize(
    'timestamp',
    new Timestamp({
      specVersion: SPEC_VERSION,
      version: input.version,
      expires: tufTime(input.expires),
      snapshotMeta: metaFileOf(input.snapshot),
    }),
    [input.signer],
  );
}

/**
 * A digest of a target set, independent of order: a set that did not change gets no new
 * targets version (and devices nothing new to fetch).
 */
export function targetSetDigest(targets: readonly TargetEntry[]): string {
  const sorted = [...targets].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return sha256Hex(Buffer.from(JSON.stringify(sorted)));
}

/** Target path of an image: apps by component, runtimes on their own. */
export function targetPathOf(custom: Pick<TargetCustom, 'type' | 'componentId' | 'imageId'>): string {
  return custom.type === 'runtime'
    ? `runtime/${custom.imageId}.hpkg`
    : `apps/${custom.componentId}/${custom.imageId}.hpkg`;
}
