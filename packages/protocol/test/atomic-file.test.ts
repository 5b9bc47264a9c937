// writeFileAtomic: the new content and mode, no temporary file left behind, a planted file or
// link never receives the data, and a failed write leaves the old content and no leftovers.
import assert from 'node:assert/strict';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeFileAtomic } from '../src/atomic-file.ts';

describe('writeFileAtomic', () => {
  const dir = mkdtempSync(join(tmpdir(), 'heptad-atomic-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('replaces the file with the new content and mode, leaving no temporary file', () => {
    const path = join(dir, 'a', 'state.json');
    writeFileAtomic(path, 'one', 0o600);
    writeFileAtomic(path, Buffer.from('two'), 0o644);
    assert.equal(readFileSync(path, 'utf8'), 'two');
    assert.equal(statSync(path).mode & 0o777, 0o644);
    assert.deepEqual(readdirSync(join(dir, 'a')), ['state.json']);
  });

  test('a file or link planted at the old predictable temporary name never receives the data', () => {
    const path = join(dir, 'key.pem');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'untouched');
    // What the previous naming (path.tmp-PID) would have opened and followed:
    symlinkSync(victim, `${path}.tmp-${process.pid}`);
    writeFileAtomic(path, 'secret', 0o600);
    assert.equal(readFileSync(victim, 'utf8'), 'untouched');
    assert.equal(readFileSync(path, 'utf8'), 'secret');
    assert.ok(lstatSync(`${path}.tmp-${process.pid}`).isSymbolicLink(), 'the planted link is left alone');
  });

  test('a write that fails keeps the old content and leaves nothing behind', () => {
    if (process.getuid?.() === 0) {
      // root ignores folder permissions: make the rename fail instead (target is a folder).
      const path = join(dir, 'is-a-folder');
      mkdirSync(join(path, 'inside'), { recursive: true });
      assert.throws(() => writeFileAtomic(path, 'x'));
      assert.deepEqual(
        readdirSync(dir).filter((n) => n.startsWith('is-a-folder.tmp-')),
        [],
      );
      return;
    }
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    writeFileSync(join(ro, 'f'), 'old');
    chmodSync(ro, 0o500);
    assert.throws(() => writeFileAtomic(join(ro, 'f'), 'new'));
    chmodSync(ro, 0o700);
    assert.equal(readFileSync(join(ro, 'f'), 'utf8'), 'old');
    assert.deepEqual(readdirSync(ro), ['f']);
  });
});
