// Isolation as a non-root user (issue 6): when the tests run as root, the supervisor's tests run
// again as `nobody` (setpriv), where only the permission-model layer exists and must hold alone
// — and where the supervisor has no root privilege to lean on (e.g. to remove its read-only image
// folders; that broke once). As non-root already, supervisor.test.ts itself is this run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const FILE = fileURLToPath(new URL('./supervisor.test.ts', import.meta.url));
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'not root: supervisor.test.ts already runs without root';
  if (spawnSync('setpriv', ['--help']).status !== 0) return 'setpriv (util-linux) is not installed';
  // nobody must be able to read the checkout (a clone under a 0700 home is not).
  const probe = spawnSync('setpriv', [...NOBODY, 'test', '-r', FILE]);
  return probe.status === 0 ? false : `user nobody cannot read ${REPO}`;
}

test('the supervisor tests pass as user nobody: the permission model alone, no root privilege', {
  skip: skipReason(),
}, () => {
  const r = spawnSync(
    'setpriv',
    [
      ...NOBODY,
      'env',
      '-i',
      'HOME=/tmp',
      `PATH=${process.env['PATH'] ?? ''}`,
      process.execPath,
      '--test',
      FILE,
    ],
    { cwd: REPO, encoding: 'utf8', timeout: 240_000 },
  );
  const out = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.status, 0, out.slice(-4000));
  const pass = Number(/ℹ pass (\d+)/.exec(out)?.[1]);
  const skipped = Number(/ℹ skipped (\d+)/.exec(out)?.[1]);
  assert.ok(pass >= 7, `only ${pass} passed:\n${out.slice(-2000)}`);
  assert.equal(skipped, 1, 'exactly the root-only test is skipped');
  assert.match(out, /permission model holds alone/);
});
