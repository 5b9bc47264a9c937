// Throwaway swtpm (TPM 2.0 simulator) instances for tests and benchmarks, and a runner for the
// tpm2-tools reference tools.
//
// startSwtpm() runs `swtpm socket --tpm2` in a fresh directory under os.tmpdir(), with its data
// and control sockets on two adjacent free ports (the tpm2-tools TCTI expects the control channel
// at data port + 1) bound to 127.0.0.1 only, and waits (bounded) until the control
// channel answers. swtpm serves one data connection at a time and has no resource manager: a
// client must flush what it loads, and close its connection before another client (a tpm2-tools
// process) can get through.
//
// Clean-up: stop() stops swtpm (SIGTERM, SIGKILL after a grace period) and removes the directory;
// safe to call twice. A process 'exit' hook does the same synchronously if stop() was never
// called. Only SIGKILL of the test process leaves an instance behind: each directory records the
// pid of its owner and of its swtpm, and the next startSwtpm() stops and removes instances whose
// owner is gone.
//
// Tests skip when swtpm (or tpm2-tools) is missing, unless HEPTAD_REQUIRE_SWTPM is set: then a
// missing tool is a failure. scripts/ensure-system-deps.sh (run by ./run-tests) installs both.
//
// The control-channel code here is deliberately independent of packages/device, so that a bug in
// the code under test cannot hide in the harness.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestSwtpm {
  /** Always 127.0.0.1. */
  readonly host: string;
  /** The TPM data socket (TPM 2.0 command bytes). */
  readonly port: number;
  /** The control channel (power, locality, …). */
  readonly ctrlPort: number;
  /** The TPM state directory (NV, seeds, persistent objects). */
  readonly stateDir: string;
  /** TCTI string for tpm2-tools: swtpm:host=127.0.0.1,port=PORT. */
  readonly tcti: string;
  /** Stops swtpm and removes its directory. Safe to call more than once. */
  stop(): Promise<void>;
  /**
   * A power cycle through the control channel (CMD_INIT): PCRs, loaded objects and sessions are
   * gone, persistent state stays. The next client sends TPM2_Startup, as firmware would.
   */
  powerCycle(): Promise<void>;
}

export interface StartSwtpmOptions {
  /** Receives one line per step. Silent when absent. */
  log?: (s: string) => void;
}

const HOST = '127.0.0.1';
const DIR_PREFIX = 'heptad-swtpm-';
const OWNER_FILE = 'owner.pid';
const SWTPM_PID_FILE = 'swtpm.pid';
/** Upper bound for swtpm to answer on its control channel after it was started. */
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const START_ATTEMPTS = 3;
const CTRL_TIMEOUT_MS = 5_000;
/** swtpm control commands (swtpm's tpm_ioctl.h). */
const CMD_GET_CAPABILITY = 1;
const CMD_INIT = 2;
const INSTALL_HINT =
  'install it with scripts/ensure-system-deps.sh (as root) or apt-get install swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0';

/** Why swtpm tests must skip here, or undefined when they can run (or must: HEPTAD_REQUIRE_SWTPM). */
export function swtpmSkipReason(): string | undefined {
  if (process.env['HEPTAD_REQUIRE_SWTPM']) return undefined;
  if (!findOnPath('swtpm'))
    return `swtpm is not installed; ${INSTALL_HINT} (HEPTAD_REQUIRE_SWTPM=1 makes this a failure)`;
  return undefined;
}

/** Why tests that run tpm2-tools must skip here, or undefined (see swtpmSkipReason). */
export function tpm2ToolsSkipReason(): string | undefined {
  const swtpm = swtpmSkipReason();
  if (swtpm || process.env['HEPTAD_REQUIRE_SWTPM']) return swtpm;
  if (!findOnPath('tpm2_quote') || !findOnPath('tpm2_checkquote')) {
    return `tpm2-tools is not installed; ${INSTALL_HINT} (HEPTAD_REQUIRE_SWTPM=1 makes this a failure)`;
  }
  return undefined;
}

export async function startSwtpm(options: StartSwtpmOptions = {}): Promise<TestSwtpm> {
  const log = options.log ?? (() => {});
  const swtpm = findOnPath('swtpm');
  if (!swtpm) throw new Error(`test swtpm: swtpm is not on PATH; ${INSTALL_HINT}`);
  sweepStale(log);

  const t0 = performance.now();
  const dir = await mkdtemp(path.join(os.tmpdir(), DIR_PREFIX));
  const stateDir = path.join(dir, 'state');
  await mkdir(stateDir, { mode: 0o700 });
  await writeFile(path.join(dir, OWNER_FILE), `${process.pid}\n`);

  let child: ChildProcess | undefined;
  let port = 0;
  let ctrlPort = 0;
  try {
    // A port found free can be taken before swtpm binds it: retry on new ports.
    for (let attempt = 1; ; attempt++) {
      [port, ctrlPort] = await freePortPair();
      const started = spawnSwtpm(swtpm, stateDir, port, ctrlPort);
      child = started.child;
      await writeFile(path.join(dir, SWTPM_PID_FILE), `${child.pid}\n`);
      const ready = await waitReady(started, ctrlPort);
      if (ready === true) break;
      await killAndWait(child);
      child = undefined;
      const portTaken = /address already in use|bind/i.test(ready);
      if (!portTaken || attempt >= START_ATTEMPTS) {
        throw new Error(`test swtpm: could not start (ports ${port}/${ctrlPort}): ${ready}`);
      }
      log(`test swtpm: ports ${port}/${ctrlPort} taken, retrying`);
    }
  } catch (e) {
    if (child) await killAndWait(child);
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const proc = child;
  log(
    `test swtpm: ${HOST}:${port} (ctrl ${ctrlPort}) in ${dir}, ready in ${Math.round(performance.now() - t0)} ms`,
  );

  const onExit = () => {
    try {
      proc.kill('SIGKILL');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  let stopping: Promise<void> | undefined;
  return {
    host: HOST,
    port,
    ctrlPort,
    stateDir,
    tcti: `swtpm:host=${HOST},port=${port}`,
    stop() {
      stopping ??= (async () => {
        process.removeListener('exit', onExit);
        await killAndWait(proc);
        await rm(dir, { recursive: true, force: true, maxRetries: 3 });
      })();
      return stopping;
    },
    async powerCycle() {
      const payload = Buffer.alloc(4); // init flags: none
      const result = await control(ctrlPort, CMD_INIT, payload, 4);
      const rc = result.readUInt32BE(0);
      if (rc !== 0) throw new Error(`test swtpm: CMD_INIT failed with 0x${rc.toString(16)}`);
    },
  };
}

export interface Tpm2Result {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs one tpm2-tools command against `tpm` (TPM2TOOLS_TCTI), bounded in time; rejects with the
 * command line and stderr when it fails.
 */
export function tpm2(
  tpm: Pick<TestSwtpm, 'tcti'>,
  tool: string,
  args: readonly string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<Tpm2Result> {
  return new Promise((resolve, reject) => {
    execFile(
      tool,
      [...args],
      {
        cwd: options.cwd,
        timeout: options.timeoutMs ?? 30_000,
        env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti },
        maxBuffer: 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`$ ${tool} ${args.join(' ')}\n${error.message}\n${stderr}`, { cause: error }));
        } else resolve({ stdout, stderr });
      },
    );
  });
}

/** tpm2-tools keeps nothing loaded between calls only if told so (no resource manager on swtpm). */
export async function flushContexts(tpm: Pick<TestSwtpm, 'tcti'>, cwd: string): Promise<void> {
  await tpm2(tpm, 'tpm2_flushcontext', ['-t'], { cwd });
  await tpm2(tpm, 'tpm2_flushcontext', ['-s'], { cwd });
}

/**
 * The reference attestation key, made by tpm2-tools itself: an ECC EK, then an ECDSA/SHA-256 AK
 * under it. Leaves `ak.ctx`, `ak.pub` (TPM2B_PUBLIC), `ak.name` and `ek.ctx` in `cwd`.
 */
export async function createReferenceAk(tpm: Pick<TestSwtpm, 'tcti'>, cwd: string): Promise<void> {
  await tpm2(tpm, 'tpm2_createek', ['-c', 'ek.ctx', '-G', 'ecc', '-u', 'ek.pub'], { cwd });
  await flushContexts(tpm, cwd);
  const ak = ['-C', 'ek.ctx', '-c', 'ak.ctx', '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', 'ak.pub'];
  await tpm2(tpm, 'tpm2_createak', [...ak, '-n', 'ak.name', '-f', 'tss'], { cwd });
  await flushContexts(tpm, cwd);
}

// ---------------------------------------------------------------------------------------------------

function spawnSwtpm(
  swtpm: string,
  stateDir: string,
  port: number,
  ctrlPort: number,
): { child: ChildProcess; output: () => string; exited: Promise<string> } {
  const child = spawn(
    swtpm,
    [
      'socket',
      '--tpm2',
      '--tpmstate',
      `dir=${stateDir}`,
      '--server',
      `type=tcp,port=${port},bindaddr=${HOST}`,
      '--ctrl',
      `type=tcp,port=${ctrlPort},bindaddr=${HOST}`,
      '--flags',
      'not-need-init,startup-clear',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString('utf8')).slice(-8192);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) =>
      resolve(`swtpm exited (${signal ?? `code ${code}`}): ${out.trim()}`),
    );
    child.once('error', (e) => resolve(`swtpm could not start: ${e.message}`));
  });
  return { child, output: () => out, exited };
}

/** true once the control channel answers CMD_GET_CAPABILITY; else why not. */
async function waitReady(started: { exited: Promise<string> }, ctrlPort: number): Promise<true | string> {
  let exitedWith: string | undefined;
  void started.exited.then((why) => {
    exitedWith = why;
  });
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (performance.now() < deadline) {
    if (exitedWith !== undefined) return exitedWith;
    try {
      await control(ctrlPort, CMD_GET_CAPABILITY, Buffer.alloc(0), 8, 1_000);
      return true;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return exitedWith ?? `no answer on the control channel within ${START_TIMEOUT_MS} ms`;
}

/** One control-channel request: UINT32 command code + payload; reads `responseSize` bytes. */
function control(
  ctrlPort: number,
  command: number,
  payload: Buffer,
  responseSize: number,
  timeoutMs = CTRL_TIMEOUT_MS,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port: ctrlPort });
    let data = Buffer.alloc(0);
    let settled = false;
    const done = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(data.subarray(0, responseSize));
    };
    const timer = setTimeout(() => done(new Error('control channel timeout')), timeoutMs);
    socket.on('connect', () => {
      const header = Buffer.alloc(4);
      header.writeUInt32BE(command);
      socket.write(Buffer.concat([header, payload]));
    });
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length >= responseSize) done();
    });
    socket.on('error', (e) => done(e));
    socket.on('close', () => done(new Error('control channel closed before the response')));
  });
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/** Stops and removes instances left by test processes that died without cleaning up. */
function sweepStale(log: (s: string) => void): void {
  const tmp = os.tmpdir();
  let entries: string[];
  try {
    entries = readdirSync(tmp).filter((e) => e.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = path.join(tmp, entry);
    const owner = readPid(path.join(dir, OWNER_FILE));
    if (owner === undefined || isAlive(owner)) continue;
    const swtpmPid = readPid(path.join(dir, SWTPM_PID_FILE));
    // Only a swtpm whose command line names this directory is ours to kill (pids are reused).
    if (swtpmPid !== undefined && isAlive(swtpmPid) && cmdlineOf(swtpmPid).includes(dir)) {
      try {
        process.kill(swtpmPid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    try {
      rmSync(dir, { recursive: true, force: true });
      log(`test swtpm: removed stale instance ${dir} (owner pid ${owner} is gone)`);
    } catch {
      // another user's directory: leave it
    }
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function findOnPath(command: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    const candidate = dir && path.join(dir, command);
    if (candidate && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/**
 * A free loopback port P whose neighbour P+1 is free too: the swtpm TCTI of tpm2-tools finds the
 * control channel at the data port + 1 (tss2 tcti-swtpm), so the two must be adjacent.
 */
async function freePortPair(): Promise<[number, number]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = await listen(0);
    const port = portOf(first);
    const second = port > 0 && port < 65535 ? await listen(port + 1).catch(() => undefined) : undefined;
    await Promise.all([first, second].map((s) => s && new Promise((resolve) => s.close(resolve))));
    if (second) return [port, port + 1];
  }
  throw new Error('test swtpm: could not find two adjacent free ports');
}

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(port, HOST, () => resolve(server));
  });
}

function portOf(server: net.Server): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}
