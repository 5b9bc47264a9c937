/**
 * Starts a real Mosquitto (Debian's package, installed by scripts/ensure-system-deps.sh) from a
 * configuration file, on loopback, and stops it by its pid. Bounded in time: it must accept TCP
 * within START_TIMEOUT_MS, and stop() waits at most STOP_GRACE_MS before SIGKILL.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;

export interface TestMosquitto {
  readonly pid: number;
  /** stderr and stdout so far (its log when `log_dest stderr`) */
  output(): string;
  /** SIGHUP: Mosquitto re-reads its configuration, CRL and ACL. */
  reload(): void;
  stop(): Promise<void>;
}

export function findMosquitto(): string | undefined {
  for (const dir of [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
    const p = path.join(dir, 'mosquitto');
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

/** A free loopback TCP port (closed again, so a tiny race remains; callers retry on bind failure). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Mosquitto started as root drops to the `mosquitto` user: give it the folder it reads (this is
 * deployment, not configuration — the config file is used as written).
 */
export function handToMosquittoUser(dir: string): void {
  if (process.getuid?.() !== 0) return;
  let uid: number;
  let gid: number;
  try {
    uid = Number(execFileSync('id', ['-u', 'mosquitto']).toString().trim());
    gid = Number(execFileSync('id', ['-g', 'mosquitto']).toString().trim());
  } catch {
    return;
  }
  for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
    if (d === '/tmp' || d === path.dirname(d)) break;
    chmodSync(d, 0o755); // let it traverse the test's temporary folders
  }
  chownSync(dir, uid, gid);
  for (const f of readdirSync(dir)) chownSync(path.join(dir, f), uid, gid);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startMosquitto(configFile: string, port: number): Promise<TestMosquitto> {
  const bin = findMosquitto();
  if (!bin) throw new Error('mosquitto is not installed; run scripts/ensure-system-deps.sh as root');
  const child: ChildProcess = spawn(bin, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let dead = false;
  void exited.then(() => {
    dead = true;
  });
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);
  const until = Date.now() + START_TIMEOUT_MS;
  while (!(await canConnect(port))) {
    if (dead || Date.now() > until) {
      child.kill('SIGKILL');
      process.off('exit', onExit);
      throw new Error(`mosquitto did not start on 127.0.0.1:${port}: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid: child.pid as number,
    output: () => out,
    reload: () => {
      child.kill('SIGHUP');
    },
    async stop() {
      process.off('exit', onExit);
      if (dead) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}
