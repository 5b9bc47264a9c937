/**
 * The app's private mutable storage (`MutableStorage.SizeKB`). Files are flat names
 * (`[A-Za-z0-9._-]`, up to 100 characters); each write is atomic; a write that would pass the
 * quota fails with APP_STORAGE_QUOTA and changes nothing. The supervisor keeps the files.
 */
import { call, fromBase64, toBase64 } from './channel.ts';

export const storage = {
  async read(name: string): Promise<Uint8Array> {
    return fromBase64(await call('storage.read', { name }));
  },
  async readText(name: string): Promise<string> {
    return Buffer.from(await this.read(name)).toString('utf8');
  },
  /** Reads a file, or undefined when there is none. */
  async readTextIfExists(name: string): Promise<string | undefined> {
    try {
      return await this.readText(name);
    } catch (e) {
      if ((e as { code?: string }).code === 'APP_STORAGE_NOT_FOUND') return undefined;
      throw e;
    }
  },
  async write(name: string, data: Uint8Array | string): Promise<void> {
    await call('storage.write', { name, data: toBase64(data) });
  },
  async delete(name: string): Promise<void> {
    await call('storage.delete', { name });
  },
  /** The files and the bytes used of the quota. */
  async list(): Promise<{
    files: Array<{ name: string; size: number }>;
    usedBytes: number;
    quotaBytes: number;
  }> {
    return call('storage.list');
  },
};
