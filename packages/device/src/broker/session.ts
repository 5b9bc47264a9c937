/**
 * The runtime's one broker session (docs/broker.md §The device's session): MQTT 3.1.1 over mutual
 * TLS with the device certificate, clean session, keepalive, clientId = the device id. The broker
 * URL comes from the attestation answer (null: the service runs no broker, and this does nothing).
 *
 * - reconnects with jittered exponential backoff, whatever ended the session: a broker that
 *   refuses (CONNACK 5: quarantined, revoked, unclaimed) or one that accepts and drops at once
 *   never makes the device spin; the backoff resets only after a session that lasted;
 * - reconnects at once with the NEW certificate after each attestation (the certificate is replaced
 *   about every 20 h, and the old one is not revoked, but a session must not outlive it);
 * - subscribes again after every connect (clean sessions: the broker keeps nothing).
 *
 * The mqtt client is loaded lazily (first connect): a device without a broker never loads it, and
 * esbuild keeps it lazy inside the runtime's single file.
 */
import type { IClientOptions, MqttClient } from 'mqtt';

export const DEFAULT_KEEPALIVE_S = 60;
export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 1_000, maxMs: 5 * 60_000 });
/** a session that lasted this long was healthy: the next failure starts the backoff again */
export const HEALTHY_SESSION_MS = 60_000;
export const CONNECT_TIMEOUT_MS = 15_000;

export type BrokerSessionState =
  | { readonly state: 'off' }
  | { readonly state: 'connecting'; readonly failures: number; readonly lastError?: string }
  | { readonly state: 'connected'; readonly since: string; readonly serial: string }
  /** the broker answered CONNACK with this return code (5: not authorized) */
  | { readonly state: 'refused'; readonly code: number; readonly failures: number };

export interface SessionCertificate {
  readonly keyPem: string;
  readonly chainPem: string;
  readonly serial: string;
}

export interface BrokerSessionOptions {
  readonly deviceId: string;
  /** the CA the broker's server certificate must chain to (the platform CA); absent: Node's roots */
  readonly caPem?: string | undefined;
  readonly log: (line: string) => void;
  /** every message of a filter this session holds */
  readonly onMessage: (topic: string, payload: Buffer) => void;
  readonly onState?: (s: BrokerSessionState) => void;
  readonly keepaliveS?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly random?: () => number;
}

/** Delay before the `failures`-th reconnect: exponential, full jitter in [½, 1] of the step. */
export function reconnectDelay(
  failures: number,
  backoff: { readonly initialMs: number; readonly maxMs: number } = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const step = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, failures - 1));
  return Math.round(step / 2 + (random() * step) / 2);
}

/** `mqtts://HOST:PORT` only (the attestation answer is trusted, but a device checks what it dials). */
export function parseBrokerUrl(raw: unknown): { host: string; port: number } | null {
  if (typeof raw !== 'string' || raw.length > 300) return null;
  try {
    const u = new URL(raw);
    const port = Number(u.port);
    if (u.protocol !== 'mqtts:' || u.hostname === '' || !Number.isInteger(port) || port < 1) return null;
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port };
  } catch {
    return null;
  }
}

export class BrokerSession {
  readonly #o: BrokerSessionOptions;
  #url: string | null = null;
  #cert: SessionCertificate | undefined;
  #client: MqttClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #connectedAt = 0;
  #state: BrokerSessionState = { state: 'off' };
  /** the filters this session must hold (subscribed again after each connect) */
  readonly #filters = new Set<string>();
  #stopped = false;
  /** bumped at each new attempt: events of an older client are ignored */
  #generation = 0;

  constructor(options: BrokerSessionOptions) {
    this.#o = options;
  }

  get state(): BrokerSessionState {
    return this.#state;
  }

  get connected(): boolean {
    return this.#state.state === 'connected';
  }

  #set(s: BrokerSessionState): void {
    this.#state = s;
    this.#o.onState?.(s);
  }

  /**
   * What the latest attestation said: the broker URL (null: none) and the certificate. A new
   * certificate or URL ends the current session and connects again at once with the new one.
   */
  configure(url: string | null, cert: SessionCertificate | undefined): void {
    if (this.#stopped) return;
    const target = url !== null && parseBrokerUrl(url) !== null ? url : null;
    if (url !== null && target === null)
      this.#o.log(`broker: "${url.slice(0, 100)}" is not mqtts://HOST:PORT`);
    if (target === this.#url && cert?.serial === this.#cert?.serial) return;
    const renewed = this.#cert !== undefined && cert !== undefined && cert.serial !== this.#cert.serial;
    this.#url = target;
    this.#cert = cert;
    this.#drop();
    if (target === null || cert === undefined) {
      this.#failures = 0;
      this.#set({ state: 'off' });
      return;
    }
    // A fresh certificate may cure a refusal (a released device attested again): try it now.
    this.#failures = 0;
    if (renewed) this.#o.log(`broker: new certificate ${cert.serial}; reconnecting with it`);
    this.#attempt();
  }

  #drop(): void {
    this.#generation++;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const c = this.#client;
    this.#client = undefined;
    c?.end(true);
  }

  #attempt(): void {
    if (this.#stopped || this.#url === null || this.#cert === undefined) return;
    const gen = ++this.#generation;
    const url = parseBrokerUrl(this.#url) as { host: string; port: number };
    const cert = this.#cert;
    this.#set({ state: 'connecting', failures: this.#failures });
    void (async () => {
      let mqtt: typeof import('mqtt');
      try {
        mqtt = await import('mqtt');
      } catch (e) {
        this.#o.log(`broker: mqtt client unavailable: ${String(e)}`);
        return;
      }
      if (gen !== this.#generation) return;
      const opts: IClientOptions = {
        host: url.host,
        port: url.port,
        protocol: 'mqtts',
        ...(this.#o.caPem !== undefined ? { ca: this.#o.caPem } : {}),
        key: cert.keyPem,
        cert: cert.chainPem,
        rejectUnauthorized: true,
        clientId: this.#o.deviceId,
        protocolVersion: 4,
        clean: true,
        keepalive: this.#o.keepaliveS ?? DEFAULT_KEEPALIVE_S,
        // Reconnects are ours (backoff, new certificates): mqtt.js's own are off.
        reconnectPeriod: 0,
        connectTimeout: CONNECT_TIMEOUT_MS,
        // Nothing is queued while offline: an app hears at once that the session is down.
        queueQoSZero: false,
      };
      const client = (mqtt.default?.connect ?? mqtt.connect)(opts);
      this.#client = client;
      let refused: number | undefined;
      let lastError: string | undefined;
      client.on('connect', () => {
        if (gen !== this.#generation) return;
        this.#connectedAt = Date.now();
        this.#set({ state: 'connected', since: new Date().toISOString(), serial: cert.serial });
        this.#o.log(`broker: connected to ${this.#url} as ${this.#o.deviceId} (certificate ${cert.serial})`);
        if (this.#filters.size > 0)
          client.subscribe([...this.#filters], { qos: 1 }, (err) => {
            if (err) this.#o.log(`broker: subscribing again failed: ${err.message}`);
          });
      });
      client.on('message', (topic, payload) => {
        if (gen === this.#generation) this.#o.onMessage(topic, payload);
      });
      client.on('error', (e: Error & { code?: string | number }) => {
        if (typeof e.code === 'number') refused = e.code;
        else lastError = String(e.code ?? e.message).slice(0, 100);
      });
      client.on('close', () => {
        if (gen !== this.#generation) return;
        this.#client = undefined;
        client.end(true);
        const lasted = this.#connectedAt > 0 && Date.now() - this.#connectedAt >= HEALTHY_SESSION_MS;
        this.#connectedAt = 0;
        this.#failures = lasted ? 1 : this.#failures + 1;
        const delay = reconnectDelay(this.#failures, this.#o.backoff, this.#o.random);
        if (refused !== undefined) {
          this.#set({ state: 'refused', code: refused, failures: this.#failures });
          this.#o.log(`broker: connection refused (CONNACK ${refused}); retrying in ${delay} ms`);
        } else {
          this.#set({
            state: 'connecting',
            failures: this.#failures,
            ...(lastError !== undefined ? { lastError } : {}),
          });
          this.#o.log(
            `broker: session closed${lastError ? ` (${lastError})` : ''}; reconnecting in ${delay} ms`,
          );
        }
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#attempt();
        }, delay);
      });
    })();
  }

  #live(): MqttClient {
    const c = this.#client;
    if (c === undefined || !this.connected) throw new SessionDown(this.#state);
    return c;
  }

  /** Publishes at once, or throws SessionDown (nothing is queued while offline). QoS 1 resolves on PUBACK. */
  publish(topic: string, payload: Buffer, qos: 0 | 1): Promise<void> {
    const c = this.#live();
    return new Promise((resolve, reject) =>
      c.publish(topic, payload, { qos, retain: false }, (err) => (err ? reject(err) : resolve())),
    );
  }

  /** Holds `filter` from now on (again after every reconnect); subscribes now when connected. */
  async subscribe(filter: string): Promise<void> {
    this.#filters.add(filter);
    const c = this.#client;
    if (c === undefined || !this.connected) return;
    await new Promise<void>((resolve, reject) =>
      c.subscribe(filter, { qos: 1 }, (err, granted) => {
        if (err) return reject(err);
        if (granted?.some((g) => g.qos === 128)) {
          this.#filters.delete(filter);
          return reject(new Error('the broker refused the subscription'));
        }
        resolve();
      }),
    );
  }

  async unsubscribe(filter: string): Promise<void> {
    if (!this.#filters.delete(filter)) return;
    const c = this.#client;
    if (c === undefined || !this.connected) return;
    await new Promise<void>((resolve) => c.unsubscribe(filter, () => resolve()));
  }

  stop(): void {
    this.#stopped = true;
    this.#drop();
    this.#set({ state: 'off' });
  }
}

/** The session is not up (no broker, connecting, refused): the app hears it at once. */
export class SessionDown extends Error {
  readonly state: BrokerSessionState;
  constructor(state: BrokerSessionState) {
    super(`the broker session is ${describeSession(state)}`);
    this.state = state;
  }
}

/** `connected`, `connecting`, `refused 5`, `off` — as `heptad device status` shows it. */
export function describeSession(s: BrokerSessionState): string {
  return s.state === 'refused' ? `refused ${s.code}` : s.state;
}
