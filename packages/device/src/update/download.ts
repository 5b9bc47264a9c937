/**
 * Resumable download of one target into the device's crash-safe storage. The target is fetched
 * in fixed-size chunks with HTTP ranges; each chunk is stored as its own file through the storage
 * layer (an atomic write), so after a power cut or a dropped connection the download goes on at
 * the first chunk that is not on storage: at most the chunk that was in flight is fetched again.
 * Length and SHA-256 come from verified TUF metadata; the whole is checked before anyone uses it.
 */
import { createHash } from 'node:crypto';
import { HeptadError } from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';

export const DEFAULT_CHUNK_SIZE = 512 * 1024;

/** Where a target's bytes come from: `get(start, end)` returns exactly bytes start..end (inclusive). */
export interface RangeSource {
  get(start: number, end: number): Promise<Buffer>;
}

export interface DownloadTarget {
  readonly sha256: string;
  readonly length: number;
}

const dirOf = (sha256: string) => `update/download/${sha256}`;
const chunkPath = (sha256: string, i: number) => `${dirOf(sha256)}/${i}`;

export interface DownloadResult {
  readonly bytes: Buffer;
  /** bytes fetched over the network in this call (a resumed download fetches only the rest) */
  readonly fetched: number;
  /** chunks already on storage when this call started */
  readonly resumedChunks: number;
}

/**
 * Downloads `target` (or finishes a download a cut interrupted). `onChunk` runs after each chunk
 * is durable. Throws UPDATE_TARGET_CORRUPT (and forgets the chunks) when the whole does not have
 * the declared length and hash; errors of the source propagate with the chunks kept.
 */
export async function downloadTarget(
  storage: Storage,
  target: DownloadTarget,
  source: RangeSource,
  options: { chunkSize?: number; onChunk?: (stored: number, total: number) => void } = {},
): Promise<DownloadResult> {
  if (!/^[0-9a-f]{64}$/.test(target.sha256))
    throw new HeptadError('UPDATE_METADATA_INVALID', 'bad target hash');
  if (!Number.isSafeInteger(target.length) || target.length <= 0)
    throw new HeptadError('UPDATE_METADATA_INVALID', 'bad target length');
  const size = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const count = Math.ceil(target.length / size);
  const parts: Buffer[] = [];
  // Resume: the chunks already stored, in order, each of the size it must have.
  for (let i = 0; i < count; i++) {
    const want = Math.min(size, target.length - i * size);
    const got = storage.read(chunkPath(target.sha256, i));
    if (got === undefined || got.length !== want) break;
    parts.push(got);
  }
  const resumedChunks = parts.length;
  let fetched = 0;
  for (let i = parts.length; i < count; i++) {
    const start = i * size;
    const end = Math.min(target.length, start + size) - 1;
    const chunk = await source.get(start, end);
    if (chunk.length !== end - start + 1)
      throw new HeptadError('UPDATE_TARGET_LENGTH', `range ${start}-${end} answered ${chunk.length} bytes`);
    fetched += chunk.length;
    storage.write(chunkPath(target.sha256, i), chunk);
    parts.push(chunk);
    options.onChunk?.(i + 1, count);
  }
  const bytes = Buffer.concat(parts);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (bytes.length !== target.length || sha256 !== target.sha256) {
    forgetDownload(storage, target.sha256, count);
    throw new HeptadError('UPDATE_TARGET_CORRUPT', 'the download does not match its metadata', {
      detail: { expected: target.sha256, got: sha256, length: bytes.length },
    });
  }
  return { bytes, fetched, resumedChunks };
}

/** Removes a download's chunks (after install, or when it proved corrupt). */
export function forgetDownload(storage: Storage, sha256: string, count: number): void {
  for (let i = 0; i < count; i++) storage.remove(chunkPath(sha256, i));
}

/** Chunks a target of `length` bytes takes. */
export const chunkCount = (length: number, chunkSize = DEFAULT_CHUNK_SIZE) => Math.ceil(length / chunkSize);
