/**
 * Brokered capabilities (docs/apps.md §Capabilities): every request an app sends is checked
 * against its manifest before anything is done for it. The app is assumed hostile: every field is
 * validated and bounded, a refusal is an APP_CAPABILITY_DENIED answer AND a recorded violation
 * (app, capability, target), and nothing here throws past `handle` — an app cannot stop the
 * supervisor.
 */
import { randomBytes, sign } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, isIP, connect as netConnect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import {
  APP_IPC_LIMITS,
  type AppEvent,
  type AppManifest,
  type AppOp,
  type BoardPeripheral,
  connectionAllowed,
  HeptadError,
  type PeripheralType,
  writeFileAtomic,
} from '@heptad/protocol';
import type { AppMqtt } from '../broker/app-mqtt.ts';
import { MAX_MQTT_PAYLOAD_BYTES, subtopicProblem } from '../broker/topics.ts';
import type { Peripherals } from './peripherals.ts';

/** What the broker knows about the app asking. */
export interface BrokeredApp {
  readonly componentId: string;
  readonly name: string;
  readonly version: string;
  readonly manifest: AppManifest;
  /** the board peripherals its manifest grants, by name */
  readonly peripherals: ReadonlyMap<string, BoardPeripheral>;
  /** relays of mutual-TLS connections open for it now */
  tlsRelays: number;
}

export interface BrokerDeps {
  readonly peripherals: Peripherals;
  /** `<state>/app-data`: one folder per component id */
  readonly dataDir: string;
  /** a folder only the supervisor can reach (relay sockets) */
  readonly privateDir: string;
  readonly certificate: () => { keyPem: string; chainPem: string; notAfter: string } | undefined;
  readonly deviceId: string;
  readonly violation: (app: BrokeredApp, capability: string, target: string) => void;
  /** delivers an inter-app message; APP_NOT_RUNNING when the other app is not running */
  readonly deliver: (from: BrokeredApp, to: string, event: AppEvent) => void;
  /** the manifest of another installed app (for the both-sides check) */
  readonly manifestOf: (componentId: string) => AppManifest | undefined;
  readonly defer: (app: BrokeredApp, updateId: string, until: Date) => { until: string };
  /** the SDK's mqtt over the runtime's broker session; absent: APP_MQTT_UNAVAILABLE */
  readonly mqtt?: AppMqtt | undefined;
  /** the tenant the device's current certificate names (undefined before the first one) */
  readonly tenantId?: () => string | undefined;
  readonly connectTimeoutMs?: number;
}

export interface Answer {
  readonly value: unknown;
  readonly handle?: Socket | Server;
}

const invalid = (why: string) => new HeptadError('APP_REQUEST_INVALID', why);
const STORAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CAPABILITY_OF: Readonly<Record<PeripheralType, string>> = {
  gpio: 'Gpio',
  uart: 'Uart',
  i2c: 'I2cMaster',
  spi: 'SpiMaster',
  pwm: 'Pwm',
  adc: 'Adc',
};

function str(
  args: Readonly<Record<string, unknown>>,
  key: string,
  max: number = APP_IPC_LIMITS.maxStringLength,
): string {
  const v = args[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > max)
    throw invalid(`${key} must be a string of 1–${max} characters`);
  return v;
}

function int(args: Readonly<Record<string, unknown>>, key: string, min: number, max: number): number {
  const v = args[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw invalid(`${key} must be an integer ${min}–${max}`);
  return v;
}

/** A base64 payload, at most maxPayloadBytes once decoded (checked on the text first). */
function payload(args: Readonly<Record<string, unknown>>, key: string, optional = false): Buffer {
  const v = args[key];
  if (v === undefined && optional) return Buffer.alloc(0);
  const max = Math.ceil(APP_IPC_LIMITS.maxPayloadBytes / 3) * 4;
  if (typeof v !== 'string' || v.length > max || !/^[A-Za-z0-9+/]*={0,2}$/.test(v))
    throw invalid(`${key} must be base64 of at most ${APP_IPC_LIMITS.maxPayloadBytes} bytes`);
  return Buffer.from(v, 'base64');
}

export class CapabilityBroker {
  readonly #d: BrokerDeps;

  constructor(deps: BrokerDeps) {
    this.#d = deps;
  }

  /** Refuses: records the violation, then throws APP_CAPABILITY_DENIED for the answer. */
  #deny(app: BrokeredApp, capability: string, target: string): never {
    this.#d.violation(app, capability, target);
    throw new HeptadError('APP_CAPABILITY_DENIED', `${capability} does not grant ${target}`, {
      detail: { capability, target },
    });
  }

  #peripheral(
    app: BrokeredApp,
    type: PeripheralType,
    args: Readonly<Record<string, unknown>>,
  ): BoardPeripheral {
    const name = str(args, 'name', 64);
    const p = app.peripherals.get(name);
    if (p === undefined || p.type !== type) this.#deny(app, CAPABILITY_OF[type], name);
    return p;
  }

  async handle(app: BrokeredApp, op: AppOp, args: Readonly<Record<string, unknown>>): Promise<Answer> {
    const d = this.#d;
    const per = d.peripherals;
    switch (op) {
      case 'hello':
        return { value: { componentId: app.componentId, name: app.name, version: app.version } };
      case 'gpio.write': {
        const p = this.#peripheral(app, 'gpio', args);
        per.gpioWrite(p, int(args, 'value', 0, 1) as 0 | 1, app.name);
        return { value: null };
      }
      case 'gpio.read':
        return { value: per.gpioRead(this.#peripheral(app, 'gpio', args)) };
      case 'uart.write': {
        const p = this.#peripheral(app, 'uart', args);
        per.uartWrite(p, payload(args, 'data'), app.name);
        return { value: null };
      }
      case 'uart.read':
        return { value: per.uartRead(this.#peripheral(app, 'uart', args)).toString('base64') };
      case 'i2c.transfer': {
        const p = this.#peripheral(app, 'i2c', args);
        const out = per.i2cTransfer(
          p,
          int(args, 'address', 0, 127),
          payload(args, 'data', true),
          int(args, 'readLength', 0, 4096),
          app.name,
        );
        return { value: out.toString('base64') };
      }
      case 'spi.transfer': {
        const p = this.#peripheral(app, 'spi', args);
        return { value: per.spiTransfer(p, payload(args, 'data'), app.name).toString('base64') };
      }
      case 'pwm.set': {
        const p = this.#peripheral(app, 'pwm', args);
        const periodNs = int(args, 'periodNs', 1, 4_000_000_000);
        const dutyNs = int(args, 'dutyNs', 0, periodNs);
        if (typeof args['enabled'] !== 'boolean') throw invalid('enabled must be a boolean');
        per.pwmSet(p, { periodNs, dutyNs, enabled: args['enabled'] }, app.name);
        return { value: null };
      }
      case 'adc.read':
        return { value: per.adcRead(this.#peripheral(app, 'adc', args), app.name) };
      case 'net.connect': {
        const host = str(args, 'host', 255);
        const port = int(args, 'port', 1, 65535);
        if (!connectionAllowed(app.manifest, host, port))
          this.#deny(app, 'AllowedConnections', `${host}:${port}`);
        const socket = await this.#connect(host, port);
        return { value: { address: socket.remoteAddress ?? '' }, handle: socket };
      }
      case 'net.listen': {
        const port = int(args, 'port', 1, 65535);
        if (!app.manifest.capabilities.allowedTcpServerPorts.includes(port))
          this.#deny(app, 'AllowedTcpServerPorts', String(port));
        const server = createServer();
        await new Promise<void>((resolve, reject) => {
          server.once('error', (e) =>
            reject(new HeptadError('APP_CONNECT_FAILED', `cannot listen on ${port}`, { cause: e })),
          );
          server.listen({ port }, resolve);
        });
        return { value: { port }, handle: server };
      }
      case 'tls.connect':
        return await this.#tlsRelay(app, args);
      case 'storage.read': {
        const file = this.#storageFile(app, args);
        try {
          return { value: readFileSync(file).toString('base64') };
        } catch {
          throw new HeptadError(
            'APP_STORAGE_NOT_FOUND',
            `${String(args['name'])} is not in the app's storage`,
          );
        }
      }
      case 'storage.write': {
        const file = this.#storageFile(app, args);
        const data = payload(args, 'data');
        const quota = app.manifest.capabilities.mutableStorageKB * 1024;
        const { used, sizes } = this.#usage(app);
        const after = used - (sizes.get(String(args['name'])) ?? 0) + data.length;
        if (after > quota)
          throw new HeptadError(
            'APP_STORAGE_QUOTA',
            `the write needs ${after} bytes of a ${quota}-byte quota`,
            {
              detail: { usedBytes: used, quotaBytes: quota, writeBytes: data.length },
            },
          );
        writeFileAtomic(file, data, 0o600);
        return { value: null };
      }
      case 'storage.delete':
        rmSync(this.#storageFile(app, args), { force: true });
        return { value: null };
      case 'storage.list': {
        this.#storageGranted(app, '(list)');
        const { used, sizes } = this.#usage(app);
        return {
          value: {
            files: [...sizes].map(([name, size]) => ({ name, size })),
            usedBytes: used,
            quotaBytes: app.manifest.capabilities.mutableStorageKB * 1024,
          },
        };
      }
      case 'deviceAuth.certificate': {
        this.#deviceAuth(app, 'certificate');
        const c = d.certificate();
        if (c === undefined)
          throw new HeptadError('APP_CONNECT_FAILED', 'the device has no certificate yet (not attested)');
        return { value: { chainPem: c.chainPem, notAfter: c.notAfter, deviceId: d.deviceId } };
      }
      case 'deviceAuth.sign': {
        this.#deviceAuth(app, 'sign');
        const data = payload(args, 'data');
        const c = d.certificate();
        if (c === undefined)
          throw new HeptadError('APP_CONNECT_FAILED', 'the device has no certificate yet (not attested)');
        // Signed here, in the supervisor: the key itself never crosses into the app.
        return { value: sign('sha256', data, c.keyPem).toString('base64') };
      }
      case 'events.defer': {
        if (!app.manifest.capabilities.softwareUpdateDeferral)
          this.#deny(app, 'SoftwareUpdateDeferral', 'defer');
        const updateId = str(args, 'updateId', 200);
        const until = new Date(str(args, 'until', 40));
        if (Number.isNaN(until.getTime())) throw invalid('until must be an ISO-8601 time');
        return { value: d.defer(app, updateId, until) };
      }
      case 'apps.send': {
        const to = str(args, 'to', 36);
        const data = payload(args, 'data');
        if (!UUID.test(to)) throw invalid('to must be a component id');
        const other = d.manifestOf(to);
        // Both sides must list each other; an unknown target is refused the same way (no probing).
        const mutual =
          other !== undefined &&
          app.manifest.capabilities.allowedApplicationConnections.includes(to) &&
          other.capabilities.allowedApplicationConnections.includes(app.componentId);
        if (!mutual) this.#deny(app, 'AllowedApplicationConnections', to);
        d.deliver(app, to, {
          t: 'event',
          event: 'message',
          from: app.componentId,
          data: data.toString('base64'),
        });
        return { value: null };
      }
      case 'mqtt.publish': {
        const sub = this.#mqttTopic(app, args, 'topic', 'topic');
        const max = Math.ceil(MAX_MQTT_PAYLOAD_BYTES / 3) * 4;
        const raw = args['payload'];
        if (typeof raw === 'string' && raw.length > max)
          this.#deny(app, 'mqtt', `payload-too-large (${raw.length} base64 characters): ${sub}`);
        const data = payload(args, 'payload');
        const qos = args['qos'] === undefined ? 1 : (int(args, 'qos', 0, 1) as 0 | 1);
        await this.#mqtt().publish(app.componentId, sub, data, qos);
        return { value: null };
      }
      case 'mqtt.subscribe': {
        const sub = this.#mqttTopic(app, args, 'filter', 'filter');
        await this.#mqtt().subscribe(app.componentId, sub);
        return { value: null };
      }
      case 'mqtt.unsubscribe': {
        const sub = this.#mqttTopic(app, args, 'filter', 'filter');
        await this.#mqtt().unsubscribe(app.componentId, sub);
        return { value: null };
      }
      case 'crash':
        return { value: null }; // handled by the supervisor before it gets here
    }
  }

  #mqtt(): AppMqtt {
    const m = this.#d.mqtt;
    if (m === undefined) throw new HeptadError('APP_MQTT_UNAVAILABLE', 'this device keeps no broker session');
    return m;
  }

  /**
   * The app's part of a topic (or filter) under `devices/<this device>/`, after the grant: the
   * manifest's DeviceAuthentication must name the tenant of the device's certificate (an app built
   * for another tenant speaks for no device here). Every refusal is a recorded violation.
   */
  #mqttTopic(
    app: BrokeredApp,
    args: Readonly<Record<string, unknown>>,
    key: 'topic' | 'filter',
    kind: 'topic' | 'filter',
  ): string {
    const v = args[key];
    const shown = typeof v === 'string' ? JSON.stringify(v.slice(0, 200)) : typeof v;
    const granted = app.manifest.capabilities.deviceAuthentication;
    if (granted === null) this.#deny(app, 'DeviceAuthentication', `mqtt ${shown}`);
    const tenant = this.#d.tenantId?.();
    if (tenant === undefined)
      throw new HeptadError('APP_MQTT_UNAVAILABLE', 'the device has no certificate yet (not attested)');
    if (granted !== tenant) this.#deny(app, 'DeviceAuthentication', `mqtt for tenant ${granted}`);
    const problem = subtopicProblem(v, kind);
    if (problem !== null) this.#deny(app, 'mqtt', `${kind} ${problem}: ${shown}`);
    return v as string;
  }

  #deviceAuth(app: BrokeredApp, what: string): void {
    if (app.manifest.capabilities.deviceAuthentication === null)
      this.#deny(app, 'DeviceAuthentication', what);
  }

  #storageGranted(app: BrokeredApp, target: string): string {
    if (app.manifest.capabilities.mutableStorageKB === 0) this.#deny(app, 'MutableStorage', target);
    const dir = join(this.#d.dataDir, app.componentId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  /** A file of the app's own storage. A path (`../other-app/x`, `/etc/x`) is a violation, not a typo. */
  #storageFile(app: BrokeredApp, args: Readonly<Record<string, unknown>>): string {
    const name = str(args, 'name', 300);
    if (!STORAGE_NAME.test(name) || name.includes('..')) {
      if (/[/\\]|\.\./.test(name)) this.#deny(app, 'MutableStorage', name);
      throw invalid('a storage name is 1–100 of [A-Za-z0-9._-], starting with a letter or digit');
    }
    return join(this.#storageGranted(app, name), name);
  }

  #usage(app: BrokeredApp): { used: number; sizes: Map<string, number> } {
    const dir = join(this.#d.dataDir, app.componentId);
    const sizes = new Map<string, number>();
    let used = 0;
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      // no storage yet
    }
    for (const n of names) {
      if (n.includes('.tmp-')) continue; // a write torn by a power cut; not the app's
      try {
        const size = statSync(join(dir, n)).size;
        sizes.set(n, size);
        used += size;
      } catch {
        // removed meanwhile
      }
    }
    return { used, sizes };
  }

  /** Resolves the name here (never the app), then connects to one of the addresses resolved. */
  async #connect(host: string, port: number): Promise<Socket> {
    const bare = host.startsWith('[') ? host.slice(1, -1) : host;
    let addresses: string[];
    if (isIP(bare) !== 0) addresses = [bare];
    else {
      try {
        addresses = (await lookup(bare, { all: true })).map((a) => a.address);
      } catch (e) {
        throw new HeptadError('APP_CONNECT_FAILED', `${host} does not resolve`, { cause: e });
      }
    }
    let last: unknown;
    for (const address of addresses.slice(0, 4)) {
      try {
        return await new Promise<Socket>((resolve, reject) => {
          const s = netConnect({ host: address, port });
          const t = setTimeout(() => s.destroy(new Error('timed out')), this.#d.connectTimeoutMs ?? 10_000);
          s.once('connect', () => {
            clearTimeout(t);
            resolve(s);
          });
          s.once('error', (e) => {
            clearTimeout(t);
            reject(e);
          });
        });
      } catch (e) {
        last = e;
      }
    }
    throw new HeptadError('APP_CONNECT_FAILED', `cannot connect to ${host}:${port}`, { cause: last });
  }

  /**
   * Mutual TLS made by the supervisor with the device key; the app gets the plaintext end of a
   * local socket pair (a one-shot Unix socket in a folder only the supervisor can reach).
   */
  async #tlsRelay(app: BrokeredApp, args: Readonly<Record<string, unknown>>): Promise<Answer> {
    const host = str(args, 'host', 255);
    const port = int(args, 'port', 1, 65535);
    this.#deviceAuth(app, `tls ${host}:${port}`);
    if (!connectionAllowed(app.manifest, host, port))
      this.#deny(app, 'AllowedConnections', `${host}:${port}`);
    const ca = args['ca'] === undefined ? undefined : str(args, 'ca', APP_IPC_LIMITS.maxPayloadBytes);
    const servername = args['servername'] === undefined ? undefined : str(args, 'servername', 255);
    if (app.tlsRelays >= APP_IPC_LIMITS.maxTlsRelays)
      throw new HeptadError('APP_RATE_LIMITED', 'too many open TLS relays');
    const cert = this.#d.certificate();
    if (cert === undefined)
      throw new HeptadError('APP_CONNECT_FAILED', 'the device has no certificate yet (not attested)');
    const raw = await this.#connect(host, port);
    const sni = servername ?? (isIP(host) === 0 ? host : undefined);
    const tls = tlsConnect({
      socket: raw,
      // the name the server's certificate must match (an IP literal too, though it is not SNI)
      host,
      key: cert.keyPem,
      cert: cert.chainPem,
      ...(ca ? { ca } : {}),
      ...(sni ? { servername: sni } : {}),
    });
    try {
      await new Promise<void>((resolve, reject) => {
        tls.once('secureConnect', resolve);
        tls.once('error', reject);
      });
    } catch (e) {
      tls.destroy();
      throw new HeptadError('APP_CONNECT_FAILED', `TLS to ${host}:${port} failed: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const path = join(this.#d.privateDir, `relay-${randomBytes(8).toString('hex')}.sock`);
    const server = createServer();
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
    const client = netConnect(path);
    const inner = await accepted;
    server.close();
    rmSync(path, { force: true });
    app.tlsRelays++;
    const end = () => {
      inner.destroy();
      tls.destroy();
    };
    let counted = true;
    const release = () => {
      if (counted) app.tlsRelays--;
      counted = false;
      end();
    };
    inner.on('error', release).on('close', release);
    tls.on('error', release).on('close', release);
    inner.pipe(tls).pipe(inner);
    await new Promise<void>((resolve) =>
      client.connecting ? client.once('connect', () => resolve()) : resolve(),
    );
    return { value: { host, port }, handle: client };
  }
}
