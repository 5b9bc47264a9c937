// The two README commands start from ./heptad: these tests drive the real launcher and the real
// `heptad serve` process, and a fresh copy of the repository to prove the first-use bootstrap.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';

const ROOT = join(import.meta.dirname, '..');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  cwd = ROOT,
  timeoutMs = 60_000,
) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      err += c;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out\n${err}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

/** Waits until the serve process has printed its JSON start record. */
function started(child: ChildProcess, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${err}`)), timeoutMs);
    child.stderr?.on('data', (c) => {
      err += c;
    });
    child.stdout?.on('data', (c) => {
      out += c;
      try {
        const info = JSON.parse(out) as Record<string, unknown>;
        clearTimeout(timer);
        resolve(info);
      } catch {
        // not complete yet
      }
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}:\n${err}`)));
  });
}

describe('the ./heptad launcher', () => {
  test('runs the CLI', async () => {
    const r = await run(join(ROOT, 'heptad'), ['--version']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^heptad \d+\.\d+\.\d+\n$/);
  });

  test('`npx heptad` (the package bin) runs on Node 24 and refuses an older Node with a coded line', async () => {
    const r = await run(process.execPath, [join(ROOT, 'packages/cli/bin/heptad.js'), '--version']);
    assert.equal(r.code, 0, r.err);
    const old = '/usr/bin/node';
    const oldMajor = existsSync(old)
      ? Number(execFileSync(old, ['-p', 'process.versions.node.split(".")[0]']).toString())
      : 24;
    if (oldMajor < 24) {
      const refused = await run(old, [join(ROOT, 'packages/cli/bin/heptad.js'), '--version']);
      assert.equal(refused.code, 1);
      assert.match(refused.err, /^heptad: NODE_TOO_OLD: /);
    }
  });

  test('`./heptad serve` starts on the embedded default, answers the CLI, and stops cleanly on Ctrl-C', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'heptad-launch-'));
    dirs.push(dir);
    const data = join(dir, 'data');
    const serve = spawn(
      join(ROOT, 'heptad'),
      [
        'serve',
        '--data',
        data,
        '--listen',
        '127.0.0.1:0',
        '--mqtt-listen',
        '127.0.0.1:0',
        '--output',
        'json',
      ],
      {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    serve.stderr.on('data', (c) => {
      stderr += c;
    });
    try {
      const info = await started(serve);
      assert.equal(info['store'], 'sqlite');
      assert.equal(info['firstStart'], true);
      const url = String(info['url']);
      assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const token = readFileSync(join(data, 'operator-token'), 'utf8').trim();
      const env = {
        ...process.env,
        HEPTAD_URL: url,
        HEPTAD_TOKEN: token,
        HEPTAD_CA: join(data, 'platform-ca.pem'),
      };
      const created = await run(
        join(ROOT, 'heptad'),
        ['tenant', 'create', 'Launch', '--output', 'json'],
        env,
        dir,
      );
      assert.equal(created.code, 0, created.err);
      assert.equal(JSON.parse(created.out).name, 'Launch');
      serve.kill('SIGINT');
      const code = await new Promise<number | null>((resolve) => serve.on('exit', resolve));
      assert.equal(code, 0, stderr);
      assert.ok(!stderr.includes(token), 'the service never logs the operator token');
      assert.match(stderr, /"msg":"heptad service listening"/);
    } finally {
      serve.kill('SIGKILL');
    }
  });

  test('on a machine with only an older Node, first use brings Node 24 and the dependencies, later uses go straight on', {
    timeout: 300_000,
  }, async () => {
    const copy = mkdtempSync(join(tmpdir(), 'heptad-clone-'));
    dirs.push(copy);
    // A clean clone: only the files git tracks (committed or staged), no .tools, no node_modules.
    const files = execFileSync('git', ['ls-files', '--cached'], { cwd: ROOT })
      .toString()
      .split('\n')
      .filter(Boolean);
    for (const f of files) {
      if (!existsSync(join(ROOT, f))) continue;
      mkdirSync(dirname(join(copy, f)), { recursive: true });
      cpSync(join(ROOT, f), join(copy, f));
    }
    // PATH without any Node 24: only the system's directories.
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    };
    delete env['HEPTAD_NODE'];
    const first = await run(join(copy, 'heptad'), ['--version'], env, copy, 280_000);
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /^heptad \d+\.\d+\.\d+\n$/);
    assert.ok(existsSync(join(copy, 'node_modules/.heptad-installed')), 'dependencies were installed');
    assert.equal(
      readFileSync(join(copy, 'package-lock.json'), 'utf8'),
      readFileSync(join(ROOT, 'package-lock.json'), 'utf8'),
      'installing leaves the lockfile as committed',
    );
    const second = await run(join(copy, 'heptad'), ['--version'], env, copy);
    assert.equal(second.code, 0);
    assert.doesNotMatch(
      second.err,
      /fetching Node|installing dependencies/,
      'the second use bootstraps nothing',
    );
  });
});
