/**
 * What a device may ask for, parsed strictly: metadata file names, consistent-snapshot target
 * names and byte ranges. Pure; anything that does not match is refused before any lookup, so a
 * path such as `../x` or `%2e%2e/x` never reaches the store or the blob store.
 */
import { HeptadError } from '@heptad/protocol';
import type { TufRoleName } from '../store/schema.ts';

export type MetadataRequest =
  | { readonly role: 'timestamp'; readonly version: null }
  /** `root.json`: the newest root (bootstrap) */
  | { readonly role: 'root'; readonly version: null }
  | { readonly role: Exclude<TufRoleName, 'timestamp'>; readonly version: number };

/** The largest version a file name may carry (versions are counters; far below 2^53). */
export const MAX_METADATA_VERSION = 2 ** 31 - 1;

const VERSIONED = /^([1-9][0-9]{0,9})\.(root|targets|snapshot)\.json$/;

/** `timestamp.json`, `root.json`, `N.root.json`, `N.snapshot.json`, `N.targets.json` (N ≥ 1). */
export function parseMetadataFile(file: string): MetadataRequest {
  if (file === 'timestamp.json') return { role: 'timestamp', version: null };
  if (file === 'root.json') return { role: 'root', version: null };
  const m = VERSIONED.exec(file);
  const version = m ? Number(m[1]) : 0;
  if (!m || version > MAX_METADATA_VERSION)
    throw new HeptadError('TUF_METADATA_NOT_FOUND', 'no such metadata file');
  return { role: m[2] as 'root' | 'targets' | 'snapshot', version };
}

const HEX64 = '[0-9a-f]{64}';
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const APP_TARGET = new RegExp(`^apps/(${UUID})/(${HEX64})\\.(${UUID})\\.hpkg$`);
const RUNTIME_TARGET = new RegExp(`^runtime/(${HEX64})\\.(${UUID})\\.hpkg$`);

export interface TargetRequest {
  /** the target path in targets metadata */
  readonly path: string;
  /** the hash prefix of the consistent-snapshot name: SHA-256 of the file */
  readonly sha256: string;
}

/**
 * `apps/<componentId>/<sha256>.<imageId>.hpkg` or `runtime/<sha256>.<imageId>.hpkg` (TUF
 * consistent snapshots: the file's SHA-256 before its base name).
 */
export function parseTargetName(name: string): TargetRequest {
  const app = APP_TARGET.exec(name);
  if (app) return { path: `apps/${app[1]}/${app[3]}.hpkg`, sha256: app[2] as string };
  const rt = RUNTIME_TARGET.exec(name);
  if (rt) return { path: `runtime/${rt[2]}.hpkg`, sha256: rt[1] as string };
  throw new HeptadError('TUF_TARGET_NOT_FOUND', 'no such target');
}

export interface ByteRange {
  readonly start: number;
  /** inclusive */
  readonly end: number;
}

/**
 * One byte range of a file of `size` bytes (RFC 9110 §14.1.2): `bytes=a-b`, `bytes=a-` or
 * `bytes=-n`; `end` past the file is cut to its last byte. Anything else — several ranges, a
 * malformed header, a start at or past the end — is refused with TUF_RANGE_NOT_SATISFIABLE rather
 * than answered with the whole file: an agent resuming a download must never get bytes it did
 * not ask for. undefined: no Range header.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(?:([0-9]{1,15})-([0-9]{0,15})|-([0-9]{1,15}))$/.exec(header.trim());
  const refuse = () =>
    new HeptadError('TUF_RANGE_NOT_SATISFIABLE', `the range "${header.slice(0, 64)}" cannot be served`, {
      detail: { size },
    });
  if (!m) throw refuse();
  if (m[3] !== undefined) {
    const n = Number(m[3]);
    if (n === 0 || size === 0) throw refuse();
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  if (start >= size || end < start) throw refuse();
  return { start, end: Math.min(end, size - 1) };
}
