// A copy of the working tree's code, taken when the benchmark starts, so that every service it
// starts runs the same code even while people edit packages/ meanwhile. node_modules is not
// copied: its entries are symlinked, except @heptad/*, which point into the copy.

import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface Tree {
  /** the copy's root: packages/, package.json, .node-version, node_modules/ */
  readonly root: string;
  /** e.g. "78133a5 + 16 changed, 9 untracked paths" */
  readonly describe: string;
}

/**
 * `from`: 'worktree' copies the files as they are now (with uncommitted edits); 'HEAD' (or any
 * commit) takes packages/ as committed, through git archive.
 */
export function snapshotTree(source: string, dest: string, from = 'worktree'): Tree {
  mkdirSync(dest, { recursive: true });
  if (from === 'worktree') {
    cpSync(join(source, 'packages'), join(dest, 'packages'), {
      recursive: true,
      filter: (src) => basename(src) !== 'node_modules',
    });
    for (const f of ['package.json', '.node-version']) cpSync(join(source, f), join(dest, f));
  } else {
    const tar = execFileSync(
      'git',
      ['-C', source, 'archive', '--format=tar', from, 'packages', 'package.json', '.node-version'],
      {
        maxBuffer: 256 * 1024 * 1024,
      },
    );
    execFileSync('tar', ['-x', '-C', dest], { input: tar });
  }
  const modules = join(dest, 'node_modules');
  mkdirSync(join(modules, '@heptad'), { recursive: true });
  for (const e of readdirSync(join(source, 'node_modules'))) {
    if (e !== '@heptad') symlinkSync(join(source, 'node_modules', e), join(modules, e));
  }
  for (const e of readdirSync(join(source, 'node_modules', '@heptad'))) {
    symlinkSync(join(dest, 'packages', e), join(modules, '@heptad', e));
  }
  return { root: dest, describe: describeGit(source, from) };
}

function describeGit(dir: string, from: string): string {
  try {
    if (from !== 'worktree') {
      const commit = execFileSync('git', ['-C', dir, 'rev-parse', '--short', from], {
        encoding: 'utf8',
      }).trim();
      return `${commit} (committed code only)`;
    }
    const head = execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
    }).trim();
    const status = execFileSync('git', ['-C', dir, 'status', '--porcelain', '--', 'packages'], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter(Boolean);
    const untracked = status.filter((l) => l.startsWith('??')).length;
    const changed = status.length - untracked;
    return status.length
      ? `${head} + uncommitted changes in packages/ (${changed} changed, ${untracked} untracked paths)`
      : head;
  } catch {
    return 'not a git checkout';
  }
}
