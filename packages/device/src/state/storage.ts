import { closeSync, fsyncSync, openSync, readFileSync, rmSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { HeptadError, writeFileAtomic } from '@heptad/protocol';

/**
 * The one storage layer every device state write goes through (DESIGN.md, rules: crash-safe
 * state). Paths are relative to the state root and use `/`. `write` is an atomic replace: after
 * a power cut the file holds the old or the new content, never a mix. Keeping it this small is
 * what lets tests cut power at every single write (FaultyStorage below).
 */
export interface Storage {
  /** The file's content, or undefined when there is none. */
  read(path: string): Buffer | undefined;
  /** Atomic replace: old or new content after a power cut, never a mix. */
  write(path: string, data: Uint8Array, mode?: number): void;
  /** Removes the file if present (atomic: an unlink). */
  remove(path: string): void;
}

/** Stops a relative state path from naming a file outside the root (`..`, absolute, `\`, NUL). */
function assertStatePath(path: string): void {
  const parts = path.split('/');
  if (
    path.length === 0 ||
    isAbsolute(path) ||
    /[\\\0]/.test(path) ||
    parts.some((p) => p === '' || p === '.' || p === '..')
  ) {
    throw new HeptadError('BOOT_STATE_PATH_INVALID', `state path ${JSON.stringify(path)} is not allowed`);
  }
}

/** Storage on a real file system: writeFileAtomic (tmp, fsync, rename, fsync folder). */
export class FsStorage implements Storage {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  private full(path: string): string {
    assertStatePath(path);
    const full = join(this.root, ...path.split('/'));
    // Belt and braces after the component check: the joined path must stay under the root.
    if (!full.startsWith(this.root + sep)) {
      throw new HeptadError('BOOT_STATE_PATH_INVALID', `state path ${JSON.stringify(path)} escapes the root`);
    }
    return full;
  }

  read(path: string): Buffer | undefined {
    try {
      return readFileSync(this.full(path));
    } catch (e) {
      // Only "no such file" means absent; any other I/O error is reported, not mistaken for empty.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  write(path: string, data: Uint8Array, mode = 0o600): void {
    writeFileAtomic(this.full(path), data, mode);
  }

  remove(path: string): void {
    const full = this.full(path);
    rmSync(full, { force: true });
    // fsync the folder so the unlink itself survives a power cut.
    try {
      const dir = openSync(dirname(full), 'r');
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

/** Thrown by FaultyStorage at and after the cut write: the "world" stops. */
export class PowerCut extends Error {
  constructor(write: number) {
    super(`power cut at write ${write}`);
    this.name = 'PowerCut';
  }
}

/**
 * How a cut write behaves:
 * - `clean`: the write is not applied (power failed before the rename);
 * - `torn`: half the data reaches a temporary file that is never renamed, so the target keeps
 *   its old content (the rename is writeFileAtomic's commit point);
 * - `nonAtomic`: a deliberately WEAKER model of a naive in-place writer: the target itself is
 *   left holding the first half of the new data. Used only to prove the harness catches it.
 */
export type CutMode = 'clean' | 'torn' | 'nonAtomic';

/**
 * In-memory storage for tests that models exactly what writeFileAtomic guarantees. It keeps the
 * DURABLE state (what survives a power cut) and counts writes (remove counts as a write: it is a
 * state change too). `crashAfter(k)` makes write k throw PowerCut, applying it per the cut mode,
 * and every later write throw too; `reboot()` returns a fresh view of what is durable.
 */
export class FaultyStorage implements Storage {
  private readonly files: Map<string, Buffer>;
  private cutAt = Number.POSITIVE_INFINITY;
  private cutMode: CutMode = 'clean';
  /** Writes attempted so far (including the cut one). */
  writes = 0;

  constructor(files: ReadonlyMap<string, Uint8Array> = new Map()) {
    this.files = new Map([...files].map(([k, v]) => [k, Buffer.from(v)]));
  }

  /** Makes the k-th write from now (1-based, counted on this view) the one that loses power. */
  crashAfter(k: number, mode: CutMode = 'clean'): this {
    this.cutAt = this.writes + k;
    this.cutMode = mode;
    return this;
  }

  get crashed(): boolean {
    return this.writes >= this.cutAt;
  }

  /** A fresh view of the durable state, as after power comes back. */
  reboot(): FaultyStorage {
    return new FaultyStorage(this.files);
  }

  /** A copy of the durable state (for assertions and for corrupting it on purpose). */
  snapshot(): Map<string, Buffer> {
    return new Map([...this.files].map(([k, v]) => [k, Buffer.from(v)]));
  }

  read(path: string): Buffer | undefined {
    assertStatePath(path);
    const v = this.files.get(path);
    return v === undefined ? undefined : Buffer.from(v);
  }

  private step(): boolean {
    if (this.writes >= this.cutAt) throw new PowerCut(++this.writes);
    this.writes++;
    return this.writes === this.cutAt;
  }

  write(path: string, data: Uint8Array, _mode?: number): void {
    assertStatePath(path);
    if (this.step()) {
      const half = Buffer.from(data.subarray(0, Math.floor(data.length / 2)));
      if (this.cutMode === 'torn') this.files.set(`${path}.tmp`, half);
      if (this.cutMode === 'nonAtomic') this.files.set(path, half);
      throw new PowerCut(this.writes);
    }
    this.files.set(path, Buffer.from(data));
    this.files.delete(`${path}.tmp`);
  }

  remove(path: string): void {
    assertStatePath(path);
    // An unlink is atomic in every mode: cut before it, nothing happens.
    if (this.step()) throw new PowerCut(this.writes);
    this.files.delete(path);
  }
}
