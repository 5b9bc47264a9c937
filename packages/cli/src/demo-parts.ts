// The moving parts `heptad demo` starts and must stop: device processes (`heptad device run`, each
// in its own process group, its output in a log file), swtpm on loopback, a loopback HTTPS server
// for the telemetry example. Each knows how to stop itself; the demo stops them all on success,
// failure and Ctrl-C.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdirSync, readFileSync, type WriteStream } from 'node:fs';
import { createServer, type Server } from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { HeptadError } from '@heptad/protocol';

export const HEPTAD_BIN = fileURLToPath(new URL('../bin/heptad.js', import.meta.url));

/** One `heptad device run` process: the bootloader and its measured runtime, in a process group. */
export class DemoDevice {
  readonly child: ChildProcess;
  out = '';
  readonly exited: Promise<void>;
  readonly #log: WriteStream;
  #waiters: Array<() => void> = [];

  readonly name: string;
  readonly state: string;
  readonly id: string;
  readonly logFile: string;

  constructor(name: string, state: string, id: string, logFile: string, extra: readonly string[]) {
    this.name = name;
    this.state = state;
    this.id = id;
    this.logFile = logFile;
    this.#log = createWriteStream(logFile, { flags: 'a' });
    this.child = spawn(process.execPath, [HEPTAD_BIN, 'device', 'run', '--state', state, ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: process.env,
    });
    const collect = (b: Buffer) => {
      // bounded: a long --keep-running session does not grow without end (the log file has it all)
      this.out = (this.out + b.toString()).slice(-1_000_000);
      this.#log.write(b);
      for (const w of this.#waiters.splice(0)) w();
    };
    this.child.stdout?.on('data', collect);
    this.child.stderr?.on('data', collect);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', () => {
        for (const w of this.#waiters.splice(0)) w();
        this.#log.end();
        resolve();
      }),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first match of `re` in the output after `from`, waiting up to `timeoutMs`. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.out.slice(from).match(re);
      if (m) return m;
      const left = deadline - Date.now();
      if (left <= 0 || !this.running)
        throw new HeptadError(
          'CLI_DEMO_STEP_FAILED',
          `${this.name}: ${this.running ? `no "${re.source}" within ${timeoutMs} ms` : 'the device process ended'} (log: ${this.logFile})`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Orderly power-off (SIGTERM to the bootloader, which stops its runtime and apps), then a power cut. */
  async stop(graceMs = 8_000): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    const t = setTimeout(() => this.#killGroup(), graceMs);
    await this.exited;
    clearTimeout(t);
    // Whatever is left in the group (a runtime whose bootloader went first) goes too, and is gone
    // before this returns (a signal is delivered, not waited for).
    this.#killGroup();
    const deadline = Date.now() + 5_000;
    while (this.#groupAlive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }

  #groupAlive(): boolean {
    if (this.child.pid === undefined) return false;
    try {
      process.kill(-this.child.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  #killGroup(): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // the group is gone
    }
  }
}

/** swtpm (a TPM 2.0 simulator) on two adjacent loopback ports, its state in `dir`. */
export class DemoSwtpm {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<void>;

  private constructor(child: ChildProcess, port: number, exited: Promise<void>) {
    this.child = child;
    this.port = port;
    this.exited = exited;
  }

  static async start(dir: string): Promise<DemoSwtpm> {
    mkdirSync(dir, { recursive: true });
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePortPair();
      const child = spawn(
        'swtpm',
        [
          'socket',
          '--tpm2',
          '--tpmstate',
          `dir=${dir}`,
          '--server',
          `type=tcp,port=${port},bindaddr=127.0.0.1`,
          '--ctrl',
          `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
          '--flags',
          'not-need-init,startup-clear',
        ],
        { stdio: 'ignore' },
      );
      const exited = new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.once('error', () => resolve());
      });
      let gone = false;
      void exited.then(() => {
        gone = true;
      });
      const deadline = Date.now() + 10_000;
      while (!gone && Date.now() < deadline) {
        // The control channel answers once swtpm is up (probing the data port would take its one connection).
        if (await canConnect(port + 1)) return new DemoSwtpm(child, port, exited);
        await new Promise((r) => setTimeout(r, 100));
      }
      child.kill('SIGKILL');
      await exited;
    }
    throw new HeptadError('CLI_DEMO_STEP_FAILED', 'swtpm did not start on loopback');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3_000);
    await this.exited;
    clearTimeout(t);
  }
}

async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function listenable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function freePortPair(): Promise<number> {
  for (;;) {
    const port = 20_000 + 2 * Math.floor(Math.random() * 20_000);
    if ((await listenable(port)) && (await listenable(port + 1))) return port;
  }
}

export function onPath(cmd: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((d) => {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** A telemetry POST the loopback server received: who sent it (client certificate subject) and what. */
export interface TelemetryPost {
  readonly subject: string;
  readonly body: string;
}

/**
 * The loopback HTTPS endpoint the telemetry example posts to (its manifest lists 127.0.0.1). It asks
 * for a client certificate and records the subject: the device certificate the supervisor presents.
 */
export class TelemetryServer {
  readonly posts: TelemetryPost[] = [];
  readonly server: Server;
  readonly port: number;
  readonly caPem: string;

  private constructor(server: Server, port: number, caPem: string) {
    this.server = server;
    this.port = port;
    this.caPem = caPem;
  }

  static async start(dir: string): Promise<TelemetryServer> {
    mkdirSync(dir, { recursive: true });
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-days',
          '2',
          '-subj',
          '/CN=telemetry.loopback',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          join(dir, 'server.key'),
          '-out',
          join(dir, 'server.pem'),
        ],
        { stdio: 'ignore' },
      );
    } catch (cause) {
      throw new HeptadError(
        'CLI_DEMO_STEP_FAILED',
        'openssl is needed to make the telemetry server certificate',
        {
          cause,
        },
      );
    }
    const caPem = readFileSync(join(dir, 'server.pem'), 'utf8');
    let self: TelemetryServer | undefined;
    const server = createServer(
      {
        key: readFileSync(join(dir, 'server.key')),
        cert: caPem,
        requestCert: true,
        rejectUnauthorized: false,
      },
      (req, res) => {
        let body = '';
        req.on('data', (c) => {
          if (body.length < 4096) body += c;
        });
        req.on('end', () => {
          const peer = (req.socket as TLSSocket).getPeerCertificate();
          self?.posts.push({ subject: String(peer?.subject?.CN ?? ''), body });
          res.end('stored');
        });
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self = new TelemetryServer(server, (server.address() as net.AddressInfo).port, caPem);
    return self;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
