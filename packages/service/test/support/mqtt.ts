import { createHash, type KeyObject } from 'node:crypto';
import tls from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { TestService } from './service.ts';
import { createSoftDevice, type SoftDevice, wire } from './soft-device.ts';

export const TEST_RUNTIME = createHash('sha256').update('heptad-runtime-broker-test').digest('hex');

/** A soft device that attested and holds its 24 h certificate: chain (leaf + issuing CA), TLS key, tenant root. */
export interface AttestedDevice {
  readonly device: SoftDevice;
  readonly id: string;
  readonly chainPem: string;
  readonly keyPem: string;
  readonly rootPem: string;
  readonly serial: string;
}

/** Makes the runtime image known to attestation (once per service). */
export async function allowTestRuntime(svc: TestService): Promise<void> {
  const r = await svc.call('POST', '/v1/runtime-images', {
    token: svc.operatorToken,
    body: { digest: TEST_RUNTIME, version: '1.0.0', securityVersion: 1 },
  });
  if (r.status !== 201) throw new Error(`runtime image: ${r.status} ${r.body}`);
}

export async function attestDevice(
  svc: TestService,
  claimToken: string,
  deviceGroup?: string,
): Promise<AttestedDevice> {
  const device = await createSoftDevice(svc, { claimToken, ...(deviceGroup ? { deviceGroup } : {}) });
  await device.measure({ kind: 'runtime', digest: TEST_RUNTIME, name: 'heptad-runtime', version: '1.0.0' });
  return reattest(svc, device);
}

/** The device attests (again) and gets a new certificate. */
export async function reattest(svc: TestService, device: SoftDevice): Promise<AttestedDevice> {
  const e = await device.evidence(await device.challenge());
  const r = await svc.call('POST', '/v1/attestation/evidence', { body: wire(e) });
  if (r.status !== 201) throw new Error(`attest: ${r.status} ${r.body}`);
  const cert = r.json['certificate'] as Record<string, string>;
  return {
    device,
    id: device.id,
    chainPem: String(cert['chainPem']),
    keyPem: (e.tlsKey as KeyObject).export({ format: 'pem', type: 'pkcs8' }).toString(),
    rootPem: String(cert['rootPem']),
    serial: String(cert['serial']),
  };
}

export interface Connected {
  readonly client: MqttClient;
  /** resolves when the connection closes */
  readonly closed: Promise<void>;
  /** messages received so far, in order */
  readonly received: Array<{ topic: string; payload: string }>;
  end(): Promise<void>;
}

/**
 * Connects with mqtt.js (no reconnect). Resolves on CONNACK 0; rejects with `no CONNACK` when the
 * connection is closed or refused first (TLS 1.3: a refused client certificate shows as a close,
 * not a TLS error, so tests assert this and not an error text).
 */
export function connect(
  port: number,
  caPem: string,
  options: {
    device?: AttestedDevice;
    key?: string;
    cert?: string;
    clientId?: string;
    password?: string;
    protocolVersion?: 4 | 5;
    /** false asks for a persistent session */
    clean?: boolean;
    /** seconds; mqtt.js's default is 60 */
    keepalive?: number;
    will?: { topic: string; payload: string };
  },
): Promise<Connected> {
  const opts: IClientOptions = {
    host: '127.0.0.1',
    port,
    protocol: 'mqtts',
    ca: caPem,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    protocolVersion: options.protocolVersion ?? 4,
    clean: options.clean ?? true,
    ...(options.keepalive !== undefined ? { keepalive: options.keepalive } : {}),
    clientId: options.clientId ?? options.device?.id ?? 'anonymous',
    ...(options.device ? { cert: options.device.chainPem, key: options.device.keyPem } : {}),
    ...(options.cert ? { cert: options.cert } : {}),
    ...(options.key ? { key: options.key } : {}),
    ...(options.will
      ? {
          will: {
            topic: options.will.topic,
            payload: Buffer.from(options.will.payload),
            qos: 0,
            retain: false,
          },
        }
      : {}),
    ...(options.password !== undefined ? { username: 'token', password: options.password } : {}),
  };
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(opts);
    const received: Connected['received'] = [];
    let done = false;
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    client.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
    client.once('connect', () => {
      done = true;
      resolve({ client, closed, received, end: () => client.endAsync() });
    });
    const fail = (why: string) => {
      if (done) return;
      done = true;
      client.end(true);
      reject(Object.assign(new Error(`no CONNACK (${why})`), { code: 'NO_CONNACK' }));
    };
    client.once('error', (e) => fail(e.message));
    client.once('close', () => fail('closed'));
  });
}

/** Waits until `check` is true (polling), or fails after `ms`. */
export async function eventually(check: () => boolean, ms = 5_000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A raw TLS connection as a device (no MQTT library): for malformed and oversized packets.
 * Resolves with everything the broker sent and whether it closed within `ms`.
 */
export function rawSession(
  port: number,
  caPem: string,
  device: AttestedDevice,
  frames: Buffer[],
  ms = 3_000,
): Promise<{ received: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca: caPem,
      cert: device.chainPem,
      key: device.keyPem,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), closed: false });
    }, ms);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), closed: true });
    });
    socket.once('secureConnect', async () => {
      for (const f of frames) {
        socket.write(f);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
  });
}

/** An MQTT 3.1.1 CONNECT frame (clean session, keepalive 60) for `clientId`. */
export function connectFrame(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60]);
  const payload = Buffer.concat([Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  const body = Buffer.concat([variable, payload]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

export function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** Subscribes and returns the granted QoS from SUBACK (128: refused), without throwing on a refusal. */
export function granted(client: MqttClient, filter: string, qos: 0 | 1 = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    client.subscribe(filter, { qos }, (err, g) => {
      const fromErr = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted?.[0];
      if (fromErr !== undefined) return resolve(fromErr);
      if (err) return reject(err);
      resolve(g?.[0]?.qos ?? -1);
    });
  });
}
