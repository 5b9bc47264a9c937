// The in-memory cache of target blobs devices download (images/blob-store.ts BlobCache): bytes
// are checked against their name before they are kept or served, the cache is bounded in bytes
// (least recently used out), and a blob too large to keep is left to the file stream.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BlobCache, FsBlobStore } from '../src/images/blob-store.ts';

describe('blob cache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'heptad-blobcache-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FsBlobStore(dir);
  const file = (sha: string) => join(dir, 'sha256', sha.slice(0, 2), sha);

  test('serves the stored bytes, then from memory (the file is no longer read)', () => {
    const bytes = randomBytes(1000);
    const sha = store.put(bytes);
    const cache = new BlobCache(store, 10_000);
    assert.deepEqual(cache.get(sha), bytes);
    rmSync(file(sha));
    assert.deepEqual(cache.get(sha), bytes, 'kept in memory');
  });

  test('a file altered on disk is never served: refused when read, not cached', () => {
    const sha = store.put(randomBytes(1000));
    writeFileSync(file(sha), randomBytes(1000));
    const cache = new BlobCache(store, 10_000);
    assert.throws(() => cache.get(sha), /does not match its name/);
  });

  test('bounded: the least recently used blob leaves first; a blob over a quarter of the bound is not kept', () => {
    const cache = new BlobCache(store, 4000);
    const a = store.put(randomBytes(900));
    const b = store.put(randomBytes(900));
    const c = store.put(randomBytes(900));
    const d = store.put(randomBytes(900));
    const e = store.put(randomBytes(900));
    for (const x of [a, b, c, d]) assert.ok(cache.get(x));
    assert.ok(cache.get(a)); // a is now the most recent: b is the oldest
    assert.ok(cache.get(e)); // 5 × 900 > 4000: b leaves
    rmSync(file(b));
    rmSync(file(a));
    assert.equal(cache.get(b), undefined, 'b was evicted and its file is gone');
    assert.ok(cache.get(a), 'a stayed in memory');
    const big = store.put(randomBytes(1001));
    assert.equal(cache.get(big), undefined, 'too large to keep: the caller streams it');
    assert.equal(cache.get('0'.repeat(64)), undefined);
  });
});
