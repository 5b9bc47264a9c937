// Throwaway PostgreSQL clusters for tests.
//
// startPostgres() runs initdb + pg_ctl from the newest /usr/lib/postgresql/N/bin (Debian layout;
// falls back to an initdb found on PATH) in a fresh directory under os.tmpdir(), on a free loopback
// port, with durability switched off (fsync, synchronous_commit, full_page_writes) because the data
// is thrown away — unless `durable` is asked for (benchmarks that must count a durable commit). PostgreSQL refuses to run as root, so as root the directory is handed to the
// `postgres` system user and every server command runs through `runuser -u postgres --`
// (scripts/ensure-system-deps.sh makes sure both exist).
//
// Clean-up: stop() stops the server and removes the directory; a process 'exit' hook does the same
// synchronously if stop() was never called. node --test runs globalTeardown on SIGINT/SIGTERM too.
// Only SIGKILL (or a crash of the machine) can leave a cluster behind: each cluster directory records
// the pid of the process that owns it, and the next startPostgres() stops and removes clusters whose
// owner is gone.
//
// createDatabase() makes one fresh database per test file, so test files can run in parallel
// against the one cluster.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface StartPostgresOptions {
  /** Receives one line per step (directory, port, timings). Silent when absent. */
  log?: (s: string) => void;
  /**
   * Keep PostgreSQL's own durability defaults (fsync, synchronous_commit, full_page_writes on):
   * for benchmarks whose figure must include a durable commit. Tests leave it off.
   */
  durable?: boolean;
}

export interface TestPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres — trust authentication, no password. */
  url: string;
  /** Stops the server (immediate mode) and removes its directory. Safe to call more than once. */
  stop(): Promise<void>;
}

/** Upper bound for each step (initdb, start, stop). */
const STEP_TIMEOUT_MS = 60_000;
const DIR_PREFIX = 'heptad-pg-';
const OWNER_FILE = 'owner.pid';
const LOG_FILE = 'server.log';
const START_ATTEMPTS = 3;

export async function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  const log = options.log ?? (() => {});
  const t0 = performance.now();
  const bin = findPostgresBin();
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser() : undefined;

  sweepStaleClusters(bin, owner, log);

  const dir = await mkdtemp(path.join(os.tmpdir(), DIR_PREFIX));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, LOG_FILE);
  await writeFile(path.join(dir, OWNER_FILE), `${process.pid}\n`);
  await mkdir(dataDir, { mode: 0o700 });
  await writeFile(logFile, '');
  if (owner) {
    for (const p of [dir, dataDir, logFile]) await chown(p, owner.uid, owner.gid);
  }

  const exec = (command: string, args: string[], timeoutMs = STEP_TIMEOUT_MS) =>
    run(...asUser(owner, path.join(bin, command), args), { cwd: dir, timeoutMs });

  let started = false;
  const removeDir = () => rm(dir, { recursive: true, force: true, maxRetries: 3 });
  const fail = async (what: string, detail: string): Promise<never> => {
    const tail = await logTail(logFile);
    if (started) await exec('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '10'], 15_000);
    await removeDir();
    const hint =
      owner && /permission denied/i.test(detail + tail)
        ? `\n(as root the server runs as user postgres, which must be able to reach ${dir}: check os.tmpdir()/TMPDIR)`
        : '';
    throw new Error(
      `test PostgreSQL: ${what} failed (bin ${bin}${owner ? ', as user postgres' : ''}).${hint}\n${detail.trim()}` +
        (tail ? `\n--- tail of ${LOG_FILE} ---\n${tail}` : ''),
    );
  };

  log(`test postgres: ${bin}, directory ${dir}${owner ? ', running as user postgres' : ''}`);
  const tInit = performance.now();
  const init = await exec('initdb', [
    '-D',
    dataDir,
    '-A',
    'trust',
    '-U',
    'postgres',
    '--no-sync',
    '-E',
    'UTF8',
    // A fixed locale, so results never depend on the host's LANG (C.UTF-8 is built into glibc).
    ...(process.platform === 'linux' ? ['--locale=C.UTF-8'] : ['--no-locale']),
  ]);
  if (!init.ok) await fail('initdb', init.describe());
  log(`test postgres: initdb ${seconds(tInit)}`);

  // A port found free can be taken by someone else before the server binds it: retry on a new port.
  let port = 0;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    if (attempt > 1) await writeFile(logFile, ''); // judge each attempt by its own log
    const serverOptions = [
      `-p ${port}`,
      `-k ${shellQuote(dir)}`,
      '-c listen_addresses=127.0.0.1',
      ...(options.durable ? [] : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
      '-c max_connections=200',
    ].join(' ');
    const tStart = performance.now();
    const start = await exec(
      'pg_ctl',
      [
        'start',
        '-D',
        dataDir,
        '-l',
        logFile,
        '-w',
        '-t',
        String(STEP_TIMEOUT_MS / 1000),
        '-o',
        serverOptions,
      ],
      STEP_TIMEOUT_MS + 5_000,
    );
    if (start.ok) {
      log(`test postgres: started on 127.0.0.1:${port} in ${seconds(tStart)}`);
      break;
    }
    // pg_ctl may have given up waiting while the server still runs: make sure it is down.
    started = true;
    const portTaken = /could not bind|address already in use/i.test(await logTail(logFile));
    if (!portTaken || attempt >= START_ATTEMPTS) await fail(`pg_ctl start (port ${port})`, start.describe());
    await exec('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '10'], 15_000);
    started = false;
    log(`test postgres: port ${port} was taken, retrying`);
  }
  started = true;

  // If the owner exits without calling stop() (an uncaught error, process.exit), still clean up.
  const onExit = () => {
    try {
      execFileSync(
        ...asUser(owner, path.join(bin, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w']),
        {
          cwd: dir,
          stdio: 'ignore',
          timeout: 15_000,
        },
      );
    } catch {
      // best effort: the next startPostgres() sweeps what is left
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  log(`test postgres: ready in ${seconds(t0)}`);

  let stopping: Promise<void> | undefined;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop() {
      stopping ??= (async () => {
        process.removeListener('exit', onExit);
        const tStop = performance.now();
        const stop = await exec('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '60']);
        const tail = stop.ok ? '' : await logTail(logFile);
        await removeDir();
        if (!stop.ok) {
          throw new Error(
            `test PostgreSQL: pg_ctl stop failed.\n${stop.describe().trim()}` +
              (tail ? `\n--- tail of ${LOG_FILE} ---\n${tail}` : ''),
          );
        }
        log(`test postgres: stopped and removed in ${seconds(tStop)}`);
      })();
      return stopping;
    },
  };
}

/**
 * Creates a fresh database `name` (dropping a leftover one of that name) on the server at `url`
 * and returns the URL of the new database. `name`: lower-case letters, digits and underscores.
 */
export async function createDatabase(url: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
    throw new Error(
      `createDatabase: invalid database name ${JSON.stringify(name)} (use [a-z_][a-z0-9_]*, ≤ 63)`,
    );
  }
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  const dbUrl = new URL(url);
  dbUrl.pathname = `/${name}`;
  return dbUrl.toString();
}

// ---------------------------------------------------------------------------------------------------

/** The newest /usr/lib/postgresql/N/bin holding initdb, else the directory of an initdb on PATH. */
function findPostgresBin(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => /^\d+(\.\d+)?$/.test(v))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  for (const v of versions) {
    const bin = path.join(base, v, 'bin');
    if (existsSync(path.join(bin, 'initdb')) && existsSync(path.join(bin, 'pg_ctl'))) return bin;
  }
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  throw new Error(
    'test PostgreSQL: no PostgreSQL server binaries (looked for /usr/lib/postgresql/*/bin/initdb and initdb on PATH). ' +
      "Install the Debian package 'postgresql' (scripts/ensure-system-deps.sh does it as root), " +
      'or set HEPTAD_TEST_PG_URL to an existing server, or HEPTAD_TEST_PG=off.',
  );
}

function postgresUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error(
      "test PostgreSQL: running as root, but there is no 'postgres' user to run the server as " +
        '(PostgreSQL refuses to run as root). Run scripts/ensure-system-deps.sh, or run the tests as a normal user.',
    );
  }
}

/** Stops and removes clusters left by processes that died without cleaning up (e.g. SIGKILL). */
function sweepStaleClusters(bin: string, owner: { uid: number } | undefined, log: (s: string) => void): void {
  const tmp = os.tmpdir();
  let entries: string[];
  try {
    entries = readdirSync(tmp).filter((e) => e.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = path.join(tmp, entry);
    let ownerPid: number;
    try {
      ownerPid = Number(readFileSync(path.join(dir, OWNER_FILE), 'utf8').trim());
    } catch {
      continue; // not ours, or still being created
    }
    if (!Number.isInteger(ownerPid) || ownerPid <= 0 || isAlive(ownerPid)) continue;
    const dataDir = path.join(dir, 'data');
    if (existsSync(path.join(dataDir, 'postmaster.pid'))) {
      try {
        execFileSync(
          ...asUser(owner, path.join(bin, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w']),
          {
            cwd: tmp,
            stdio: 'ignore',
            timeout: 15_000,
          },
        );
      } catch {
        // already down, or not ours to stop
      }
    }
    try {
      rmSync(dir, { recursive: true, force: true });
      log(`test postgres: removed stale cluster ${dir} (owner pid ${ownerPid} is gone)`);
    } catch {
      // another user's directory: leave it
    }
  }
}

/** [file, args] running `file args` directly, or as the postgres user through runuser when root. */
function asUser(owner: object | undefined, file: string, args: string[]): [string, string[]] {
  if (!owner) return [file, args];
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser'].find((p) => existsSync(p)) ?? 'runuser';
  return [runuser, ['-u', 'postgres', '--', file, ...args]];
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed process whose parent has not reaped it yet (a zombie) still answers signal 0.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() =>
        port ? resolve(port) : reject(new Error('test PostgreSQL: could not find a free port')),
      );
    });
  });
}

interface RunResult {
  ok: boolean;
  describe(): string;
}

/** Runs a command with a time limit, capturing its output; never throws. */
function run(command: string, args: string[], opts: { cwd: string; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolve) => {
    let out = '';
    let timedOut = false;
    const child = spawn(command, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    const line = [command, ...args].join(' ');
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, describe: () => `$ ${line}\ncould not run: ${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const status = timedOut
        ? `timed out after ${opts.timeoutMs / 1000} s`
        : signal
          ? `killed by ${signal}`
          : `exit code ${code}`;
      resolve({
        ok: !timedOut && code === 0,
        describe: () => `$ ${line}\n${status}\n${tail(out, 20)}`,
      });
    });
  });
}

async function logTail(file: string): Promise<string> {
  try {
    return tail(await readFile(file, 'utf8'), 30);
  } catch {
    return '';
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(2)} s`;
}
