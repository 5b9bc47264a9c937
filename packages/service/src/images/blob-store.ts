import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { writeFileAtomic } from '@heptad/protocol';

/**
 * Content-addressed storage for image files: a blob is named by the SHA-256 of its bytes, so a
 * file is written once, never changed, and two uploads of the same bytes share it. The database
 * row that names a blob is written after the blob, so a crash leaves at worst an unreferenced
 * blob, never a row without its bytes.
 */
export interface BlobStore {
  /** stores the bytes (atomically) and returns their SHA-256 (hex) */
  put(bytes: Uint8Array): string;
  /** the bytes, or undefined when there is no such blob */
  get(sha256: string): Buffer | undefined;
  /** the size in bytes, or undefined */
  size(sha256: string): number | undefined;
  /**
   * The bytes `start`…`end` (inclusive; the whole blob without them) as a stream, without reading
   * the blob into memory or hashing it first: for downloads whose reader checks the hash itself
   * (a device checks every target against its TUF metadata).
   */
  stream(sha256: string, start?: number, end?: number): Readable;
}

const SHA256 = /^[0-9a-f]{64}$/;
/** Read size when streaming a blob: large reads keep a download's syscalls and TLS records few. */
const STREAM_CHUNK = 256 * 1024;
const sha256Of = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Blobs as files under DIR/sha256/ab/abcd… (the service's data folder by default). */
export class FsBlobStore implements BlobStore {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  #path(sha256: string): string {
    // The name comes from our own hash or the database; refuse anything else outright.
    if (!SHA256.test(sha256)) throw new Error(`not a blob name: ${sha256}`);
    return join(this.#dir, 'sha256', sha256.slice(0, 2), sha256);
  }

  put(bytes: Uint8Array): string {
    const sha = sha256Of(bytes);
    const path = this.#path(sha);
    if (!existsSync(path)) writeFileAtomic(path, bytes, 0o600);
    return sha;
  }

  get(sha256: string): Buffer | undefined {
    const path = this.#path(sha256);
    if (!existsSync(path)) return undefined;
    const bytes = readFileSync(path);
    // Bit rot or tampering on disk is not served as the image.
    if (sha256Of(bytes) !== sha256) throw new Error(`blob ${sha256} does not match its name`);
    return bytes;
  }

  size(sha256: string): number | undefined {
    const path = this.#path(sha256);
    return existsSync(path) ? statSync(path).size : undefined;
  }

  stream(sha256: string, start?: number, end?: number): Readable {
    return createReadStream(this.#path(sha256), {
      ...(start !== undefined ? { start } : {}),
      ...(end !== undefined ? { end } : {}),
      highWaterMark: STREAM_CHUNK,
    });
  }
}

/**
 * The blobs devices download, kept in memory once read and checked against their name (so a file
 * altered on disk is never served, and a download is one write of bytes already in memory instead
 * of a file stream). Least recently used first out, bounded in bytes. A blob larger than a quarter
 * of the bound is not kept: get() answers undefined and the caller streams it from the store.
 */
export class BlobCache {
  readonly #blobs: BlobStore;
  readonly #maxBytes: number;
  readonly #entries = new Map<string, Buffer>();
  #bytes = 0;

  constructor(blobs: BlobStore, maxBytes = 128 * 1024 * 1024) {
    this.#blobs = blobs;
    this.#maxBytes = maxBytes;
  }

  /** The blob's bytes, checked against its name; undefined when there is none or it is too large to keep. */
  get(sha256: string): Buffer | undefined {
    const hit = this.#entries.get(sha256);
    if (hit) {
      this.#entries.delete(sha256);
      this.#entries.set(sha256, hit);
      return hit;
    }
    const size = this.#blobs.size(sha256);
    if (size === undefined || size > this.#maxBytes / 4) return undefined;
    const bytes = this.#blobs.get(sha256);
    if (bytes === undefined) return undefined;
    this.#entries.set(sha256, bytes);
    this.#bytes += bytes.length;
    for (const [k, v] of this.#entries) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#entries.delete(k);
      this.#bytes -= v.length;
    }
    return bytes;
  }
}

/** In memory (tests and one-off apps built without a data folder). */
export class MemoryBlobStore implements BlobStore {
  readonly #blobs = new Map<string, Buffer>();

  put(bytes: Uint8Array): string {
    const sha = sha256Of(bytes);
    if (!this.#blobs.has(sha)) this.#blobs.set(sha, Buffer.from(bytes));
    return sha;
  }

  get(sha256: string): Buffer | undefined {
    return this.#blobs.get(sha256);
  }

  size(sha256: string): number | undefined {
    return this.#blobs.get(sha256)?.length;
  }

  stream(sha256: string, start = 0, end?: number): Readable {
    const b = this.#blobs.get(sha256);
    if (!b) throw new Error(`no blob ${sha256}`);
    return Readable.from([b.subarray(start, end === undefined ? b.length : end + 1)]);
  }
}
