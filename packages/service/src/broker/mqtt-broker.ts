import { createHash, X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import type { TokenResolver } from '../http/auth.ts';
import type { Store } from '../store/store.ts';
import type { BrokerStore } from './broker-store.ts';
import {
  type BrokerIdentity,
  checkPublish,
  checkSubscribe,
  isClientIdAllowed,
  MAX_TOPIC_LEVELS,
  ownerKeyOf,
  type TopicCheck,
} from './topic-policy.ts';

/** Azure IoT Hub's limit; a packet announcing more is refused before its body is read. */
export const DEFAULT_MQTT_MAX_PACKET_SIZE = 256 * 1024;
export const MIN_MQTT_MAX_PACKET_SIZE = 1024;
export const MAX_MQTT_MAX_PACKET_SIZE = 16 * 1024 * 1024;
/** Every live session is re-checked this often (certificate expiry, revocation or quarantine seen by another instance, token expiry). */
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
/** A TLS connection must send CONNECT within this time. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** A TLS handshake must complete within this time. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** The largest keepalive a client may announce, in seconds (0, no keepalive, is refused too). */
export const KEEPALIVE_LIMIT_S = 1_800;
/** A client that reads nothing for this long while the broker has data for it is disconnected. */
export const DRAIN_TIMEOUT_MS = 10_000;
/** Subscriptions one session may hold; a SUBSCRIBE carrying more filters than this closes the connection. */
export const MAX_SUBSCRIPTIONS = 100;
/** Refused subscriptions one session may collect before it is disconnected. */
export const MAX_REFUSALS = 20;
/** A refusal of one device for one reason is written to the store at most this often (it is always logged). */
const REFUSAL_WRITE_INTERVAL_MS = 60_000;
/** Device → tenant/group and group → tenant/policy answers are reused this long. */
const LOOKUP_TTL_MS = 5_000;
const LOOKUP_CACHE_MAX = 100_000;
const OWNER_CACHE_MAX = 200_000;

/** MQTT 3.1.1 CONNACK return codes (§3.2.2.3). */
const RC_IDENTIFIER_REJECTED = 2;
const RC_BAD_CREDENTIALS = 4;
const RC_NOT_AUTHORIZED = 5;

export interface MqttBrokerOptions {
  readonly host: string;
  readonly port: number;
  /** the service's TLS server certificate (chain) and key */
  readonly tls: { readonly key: string; readonly cert: string };
  readonly maxPacketSize?: number;
  readonly sweepIntervalMs?: number;
}

export interface MqttBrokerDeps {
  readonly store: Store;
  readonly clock: () => Date;
  readonly tokens: TokenResolver;
  readonly logger?: Logger | undefined;
}

/** What the rest of the service calls when a device must lose its live sessions (quarantine, revocation, unclaim). */
export interface DeviceSessions {
  /** Ends every live broker session of the device at once; returns how many. */
  endDeviceSessions(deviceId: string, reason: string): number;
  /** live sessions (devices and cloud clients), for /metrics */
  readonly sessionCount: number;
}

export const NO_SESSIONS: DeviceSessions = { endDeviceSessions: () => 0, sessionCount: 0 };

interface Session {
  readonly identity: BrokerIdentity;
  /** cloud clients: the token's hash, re-resolved by the sweep */
  readonly tokenHash?: string;
  /** the filters it holds (granted), at most MAX_SUBSCRIPTIONS */
  readonly filters: Set<string>;
  /** refused subscriptions so far; at MAX_REFUSALS the session ends */
  refusals: number;
}

/** A tenant issuing CA as the broker checks device certificates against it. */
interface IssuingCa {
  readonly id: string;
  readonly cert: X509Certificate;
  readonly notAfter: string;
}

interface Cached<T> {
  readonly value: T | undefined;
  readonly until: number;
}

function refusal(returnCode: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/** `urn:heptad:device:<id>` and `urn:heptad:tenant:<id>` from the certificate's subjectAltName. */
function sanIdentity(subjectaltname: string | undefined): { deviceId?: string; tenantId?: string } {
  const out: { deviceId?: string; tenantId?: string } = {};
  for (const part of (subjectaltname ?? '').split(', ')) {
    const m = /^URI:urn:heptad:(device|tenant):([0-9a-f-]{1,64})$/.exec(part);
    if (m?.[1] === 'device') out.deviceId = m[2] as string;
    if (m?.[1] === 'tenant') out.tenantId = m[2] as string;
  }
  return out;
}

/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1) behind the service's TLS listener. A device
 * proves itself with its 24 h certificate: it must chain to a tenant CA of this service, be one
 * the service issued (serial on record), unexpired, unrevoked, for a device still claimed by that
 * tenant and not quarantined — checked against the store at every connect and again by a
 * periodic sweep. A tenant's cloud-side client proves itself with an API token as the MQTT
 * password. Topic access is decided by topic-policy.ts; messages are forwarded only to sessions
 * of the tenant that owns the topic.
 */
export class MqttBroker implements DeviceSessions {
  readonly #options: MqttBrokerOptions;
  readonly #store: BrokerStore;
  readonly #clock: () => Date;
  readonly #tokens: TokenResolver;
  readonly #log: Logger | undefined;
  readonly #maxPacketSize: number;
  #aedes: Aedes | undefined;
  #server: tls.Server | undefined;
  #sweep: NodeJS.Timeout | undefined;
  readonly #sessions = new Map<Client, Session>();
  readonly #byDevice = new Map<string, Set<Client>>();
  /** deviceId → generation of its last endDeviceSessions, so a connect racing a quarantine loses */
  readonly #ended = new Map<string, number>();
  #generation = 0;
  /** `devices/<id>` | `groups/<id>` → the tenant that owns it, learnt when a publish to it was authorized */
  readonly #owners = new Map<string, string>();
  readonly #devices = new Map<string, Cached<{ tenantId: string | null; deviceGroupId: string | null }>>();
  readonly #groups = new Map<string, Cached<{ tenantId: string; allowPeerMessages: boolean }>>();
  /** a live cloud client's clientId → its session and user: another user may not take it over */
  readonly #cloudIds = new Map<string, { client: Client; userId: string }>();
  /** `<device id> <reason>` → when a refusal of it was last written to the store */
  readonly #refusalWrites = new Map<string, number>();
  /** tenantId → its issuing CAs */
  readonly #cas = new Map<string, Cached<IssuingCa[]>>();
  /** a device's TLS connection → the leaf and the id of the tenant issuing CA that verified it (#accept) */
  readonly #verified = new WeakMap<tls.TLSSocket, { leaf: X509Certificate; caId: string }>();

  constructor(options: MqttBrokerOptions, deps: MqttBrokerDeps) {
    this.#options = options;
    this.#store = deps.store.broker();
    this.#clock = deps.clock;
    this.#tokens = deps.tokens;
    this.#log = deps.logger?.child({ component: 'broker' });
    this.#maxPacketSize = options.maxPacketSize ?? DEFAULT_MQTT_MAX_PACKET_SIZE;
  }

  /** The port it listens on (after start). */
  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? 0;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  async start(): Promise<void> {
    const aedes = await Aedes.createBroker({
      connectTimeout: CONNECT_TIMEOUT_MS,
      keepaliveLimit: KEEPALIVE_LIMIT_S,
      drainTimeout: DRAIN_TIMEOUT_MS,
      maxTopicLevels: MAX_TOPIC_LEVELS,
      heartbeatInterval: 3_600_000,
      authenticate: (client, _username, password, done) => {
        this.#authenticate(client, password).then(
          () => done(null, true),
          (e: AuthenticateError) => done(e, false),
        );
      },
      authorizePublish: (client, packet, done) => {
        // The broker's own messages: only $SYS (no session can subscribe to it).
        if (!client)
          return packet.topic.startsWith('$SYS/')
            ? done(null)
            : done(Object.assign(new Error('BROKER_TOPIC_DENIED'), { code: 'BROKER_TOPIC_DENIED' }));
        // The hot path — a device publishing under its own topic — needs no store: decided synchronously.
        if (this.#authorizeOwnPublish(client, packet)) return done(null);
        this.#authorizePublish(client, packet).then(
          () => done(null),
          (e: Error) => done(e),
        );
      },
      authorizeSubscribe: (client, sub, done) => {
        this.#authorizeSubscribe(client, sub.topic).then(
          (ok) => done(null, ok ? sub : null),
          () => done(null, null),
        );
      },
      authorizeForward: (client, packet) => this.#authorizeForward(client, packet),
    });
    aedes.on('unsubscribe', (filters: string[], client: Client) => {
      const s = this.#sessions.get(client);
      for (const f of filters) s?.filters.delete(f);
    });
    this.#aedes = aedes;
    const server = tls.createServer({
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      key: this.#options.tls.key,
      cert: this.#options.tls.cert,
      // Devices present a certificate; cloud clients may not (they send a token). No `ca`: the
      // CertificateRequest names no CA (a list of every tenant's CA would disclose every tenant
      // id), and a client certificate is verified in #accept against the CAs of the one tenant
      // its SAN names — never against another tenant's CA.
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      // MQTT acks are small writes: without this, Nagle waits for the peer's delayed ACK (~40 ms)
      // and QoS 1 runs at a few hundred round trips a second (measured: 1,140 msg/s flat).
      noDelay: true,
    });
    server.on('secureConnection', (socket) => this.#accept(socket));
    server.on('tlsClientError', (e) => this.#log?.debug({ err: e.message }, 'mqtt TLS handshake failed'));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#options.port, this.#options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const every = this.#options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.#sweep = setInterval(() => {
      this.sweep().catch((e: unknown) => this.#log?.error({ err: e }, 'broker sweep failed'));
    }, every);
    this.#sweep.unref();
    this.#log?.info({ host: this.#options.host, port: this.port }, 'mqtt broker listening (TLS)');
  }

  async stop(): Promise<void> {
    if (this.#sweep) clearInterval(this.#sweep);
    const server = this.#server;
    const aedes = this.#aedes;
    this.#server = undefined;
    this.#aedes = undefined;
    for (const client of this.#sessions.keys()) client.conn.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }

  /** Forgets the tenant CAs read so far (after a tenant CA is created or rotated): re-read at the next connect. */
  async reloadTrust(): Promise<void> {
    this.#cas.clear();
  }

  endDeviceSessions(deviceId: string, reason: string): number {
    this.#ended.set(deviceId, ++this.#generation);
    if (this.#ended.size > LOOKUP_CACHE_MAX) this.#ended.delete(this.#ended.keys().next().value as string);
    this.#devices.delete(deviceId);
    const clients = this.#byDevice.get(deviceId);
    if (!clients) return 0;
    for (const c of clients) {
      this.#log?.info({ deviceId, reason }, 'mqtt session ended');
      // A device cut off (quarantine, unclaim) says nothing more: its will is dropped, not published.
      (c as unknown as { will: unknown }).will = null;
      c.conn.destroy();
    }
    return clients.size;
  }

  /**
   * Re-checks every live session against the store: a certificate that expired, was revoked or
   * whose device was quarantined or unclaimed (possibly by another service instance), or a token
   * that expired, ends its session. Also re-reads the trusted CAs.
   */
  async sweep(): Promise<number> {
    await this.reloadTrust();
    let ended = 0;
    for (const [client, s] of [...this.#sessions]) {
      let ok: boolean;
      if (s.identity.kind === 'device') {
        const c = await this.#store.certificate(s.identity.serial);
        ok =
          c !== undefined && this.#certificateRefusal(c, s.identity.tenantId, s.identity.deviceId) === null;
      } else {
        const found = s.tokenHash ? await this.#tokens.resolveHash(s.tokenHash) : undefined;
        ok =
          found !== undefined &&
          found.principal.tenantId === s.identity.tenantId &&
          (found.expiresAt === null || found.expiresAt > this.#clock().toISOString());
      }
      if (!ok) {
        ended += 1;
        this.#log?.info({ clientId: client.id }, 'mqtt session ended by the sweep');
        // Its credential is no longer good: like a quarantined device, it says nothing more.
        (client as unknown as { will: unknown }).will = null;
        client.conn.destroy();
      }
    }
    return ended;
  }

  #accept(socket: tls.TLSSocket): void {
    const leaf = socket.getPeerX509Certificate();
    if (!leaf) {
      this.#handle(socket);
      return;
    }
    // Not read until verified: the socket buffers what the client sends meanwhile. aedes listens
    // for socket errors only once it handles the socket: a reset before then must not go unheard.
    socket.on('error', (e) => this.#log?.debug({ err: e.message }, 'mqtt socket error'));
    this.#verifyChain(leaf).then(
      (caId) => {
        if (caId === null) {
          // Another CA (or another tenant's), expired, not yet valid: closed before any MQTT is read — no CONNACK.
          this.#log?.info({ serial: leaf.serialNumber }, 'mqtt client certificate refused');
          socket.destroy();
          return;
        }
        this.#verified.set(socket, { leaf, caId });
        this.#handle(socket);
      },
      (e: unknown) => {
        this.#log?.error({ err: e }, 'mqtt client certificate check failed');
        socket.destroy();
      },
    );
  }

  /**
   * The id of the issuing CA of the tenant the leaf's SAN names that signed it, when both are
   * valid now; null otherwise. Only that tenant's CAs are tried: holding another tenant's CA key
   * never makes a certificate naming this tenant acceptable.
   */
  async #verifyChain(leaf: X509Certificate): Promise<string | null> {
    const san = sanIdentity(leaf.subjectAltName);
    if (!san.tenantId || !san.deviceId) return null;
    const now = this.#clock();
    if (!(Date.parse(leaf.validFrom) <= now.getTime() && now.getTime() < Date.parse(leaf.validTo)))
      return null;
    const cas = (await this.#tenantCas(san.tenantId)) ?? [];
    const nowIso = now.toISOString();
    for (const ca of cas) {
      if (ca.notAfter <= nowIso || !leaf.checkIssued(ca.cert)) continue;
      if (leaf.verify(ca.cert.publicKey)) return ca.id;
    }
    return null;
  }

  #tenantCas(tenantId: string) {
    return this.#cached(this.#cas, tenantId, async () =>
      (await this.#store.issuingCas(tenantId)).map((r) => ({
        id: r.id,
        cert: new X509Certificate(r.certPem),
        notAfter: r.notAfter,
      })),
    );
  }

  #handle(socket: tls.TLSSocket): void {
    if (socket.destroyed) return;
    const aedes = this.#aedes;
    if (!aedes) {
      socket.destroy();
      return;
    }
    const client = aedes.handle(socket);
    this.#limitPacketSize(client);
    this.#limitSubscribe(client);
    // Forgotten on the next turn, after aedes has published the session's will (authorized here).
    socket.once('close', () => setImmediate(() => this.#forget(client)));
  }

  #forget(client: Client): void {
    const s = this.#sessions.get(client);
    this.#sessions.delete(client);
    if (this.#cloudIds.get(client.id)?.client === client) this.#cloudIds.delete(client.id);
    if (s?.identity.kind === 'device') {
      const set = this.#byDevice.get(s.identity.deviceId);
      set?.delete(client);
      if (set?.size === 0) this.#byDevice.delete(s.identity.deviceId);
    }
  }

  /**
   * mqtt-packet buffers a whole packet before parsing it and has no size limit of its own: stop
   * at the length header, so a client announcing a huge packet is disconnected before it is read.
   */
  #limitPacketSize(client: Client): void {
    const parser = (client as unknown as { _parser?: Record<string, unknown> })._parser;
    const original = parser?.['_parseLength'];
    if (!parser || typeof original !== 'function')
      throw new Error('aedes parser has changed: cannot limit packet size');
    const max = this.#maxPacketSize;
    const log = this.#log;
    parser['_parseLength'] = function parseLength(this: {
      packet: { length: number };
      _emitError(e: Error): void;
    }) {
      const done = (original as (this: unknown) => boolean).call(this);
      if (done && this.packet.length > max) {
        log?.info({ length: this.packet.length, max }, 'mqtt packet too large: connection closed');
        this._emitError(
          Object.assign(new Error('BROKER_PACKET_TOO_LARGE'), { code: 'BROKER_PACKET_TOO_LARGE' }),
        );
        return false;
      }
      return done;
    };
  }

  /**
   * A SUBSCRIBE carrying more filters than a session may hold closes the connection before any
   * filter is looked at (each would cost an authorization, perhaps a store read).
   */
  #limitSubscribe(client: Client): void {
    const parser = (
      client as unknown as { _parser?: { emit: (event: string, ...args: unknown[]) => boolean } }
    )._parser;
    if (!parser) throw new Error('aedes parser has changed: cannot limit SUBSCRIBE');
    const emit = parser.emit;
    parser.emit = (event: string, ...args: unknown[]) => {
      const packet = args[0] as { cmd?: string; subscriptions?: unknown[] } | undefined;
      if (
        event === 'packet' &&
        packet?.cmd === 'subscribe' &&
        (packet.subscriptions?.length ?? 0) > MAX_SUBSCRIPTIONS
      ) {
        const s = this.#sessions.get(client);
        this.#log?.info(
          { filters: packet.subscriptions?.length },
          'mqtt SUBSCRIBE with too many filters: connection closed',
        );
        if (s?.identity.kind === 'device')
          this.#refused(s.identity.tenantId, s.identity.deviceId, 'BROKER_SUBSCRIPTION_LIMIT').catch(
            () => undefined,
          );
        client.conn.destroy();
        return false;
      }
      return emit.call(parser, event, ...args);
    };
  }

  #certificateRefusal(
    c: NonNullable<Awaited<ReturnType<BrokerStore['certificate']>>>,
    tenantId: string,
    deviceId: string,
  ): string | null {
    if (c.deviceId !== deviceId || c.tenantId !== tenantId) return 'BROKER_CERTIFICATE_UNKNOWN';
    if (c.notAfter <= this.#clock().toISOString()) return 'BROKER_CERTIFICATE_EXPIRED';
    if (c.revokedAt !== null) return 'BROKER_CERTIFICATE_REVOKED';
    if (c.quarantinedAt !== null) return 'BROKER_DEVICE_QUARANTINED';
    if (c.deviceTenantId !== tenantId) return 'BROKER_DEVICE_NOT_CLAIMED';
    return null;
  }

  async #authenticate(client: Client, password: Buffer | undefined): Promise<void> {
    const started = this.#generation;
    // A persistent session would have aedes queue every matching QoS 1 message for it while it is
    // offline, in memory and unbounded, before any forward check: refused before anything is read.
    if (!client.clean) throw refusal(RC_NOT_AUTHORIZED, 'BROKER_PERSISTENT_SESSION_REFUSED');
    const socket = client.conn as tls.TLSSocket;
    const verified = this.#verified.get(socket);
    let session: Session;
    if (verified) {
      const { leaf, caId } = verified;
      const san = sanIdentity(leaf.subjectAltName);
      const serial = leaf.serialNumber.toLowerCase();
      if (!san.deviceId || !san.tenantId) throw refusal(RC_NOT_AUTHORIZED, 'BROKER_CERTIFICATE_UNKNOWN');
      const cert = await this.#store.certificate(serial);
      // The record of that serial must be this very certificate: same key, same issuing CA (the
      // one #accept verified it with, of the SAN's tenant), same device and tenant.
      const spki = createHash('sha256')
        .update(leaf.publicKey.export({ format: 'der', type: 'spki' }))
        .digest('hex');
      const reason =
        cert && cert.spkiSha256 === spki && cert.issuingCaId === caId
          ? this.#certificateRefusal(cert, san.tenantId, san.deviceId)
          : 'BROKER_CERTIFICATE_UNKNOWN';
      if (reason !== null) {
        await this.#refused(san.tenantId, san.deviceId, reason);
        throw refusal(RC_NOT_AUTHORIZED, reason);
      }
      // Ended while this connect was being checked (after `started` was read): the connect loses the
      // race. An end before it started is already reflected in what the store answered above.
      const ended = this.#ended.get(san.deviceId);
      if (ended !== undefined && ended > started)
        throw refusal(RC_NOT_AUTHORIZED, 'BROKER_DEVICE_QUARANTINED');
      session = {
        identity: { kind: 'device', tenantId: san.tenantId, deviceId: san.deviceId, serial },
        filters: new Set(),
        refusals: 0,
      };
    } else {
      const token = password?.toString('utf8') ?? '';
      const found = await this.#tokens.resolveToken(token);
      if (!found) throw refusal(RC_BAD_CREDENTIALS, 'BROKER_CREDENTIALS_INVALID');
      const p = found.principal;
      const expired = found.expiresAt !== null && found.expiresAt <= this.#clock().toISOString();
      if (expired || p.tenantId === null || p.role === 'Operator')
        throw refusal(RC_NOT_AUTHORIZED, 'BROKER_CREDENTIALS_INVALID');
      session = {
        identity: { kind: 'cloud', tenantId: p.tenantId, userId: p.userId, role: p.role },
        tokenHash: found.hash,
        filters: new Set(),
        refusals: 0,
      };
    }
    if (!isClientIdAllowed(session.identity, client.id)) {
      throw refusal(RC_IDENTIFIER_REJECTED, 'BROKER_CLIENT_ID_INVALID');
    }
    // MQTT lets a new connection with a live clientId take over its session: among cloud clients
    // of a tenant, only the same user may (its own reconnect), not any other token of the tenant.
    const holder = this.#cloudIds.get(client.id);
    if (session.identity.kind === 'cloud' && holder && holder.userId !== session.identity.userId) {
      throw refusal(RC_IDENTIFIER_REJECTED, 'BROKER_CLIENT_ID_INVALID');
    }
    if (socket.destroyed) throw refusal(RC_NOT_AUTHORIZED, 'connection closed');
    this.#sessions.set(client, session);
    if (session.identity.kind === 'cloud')
      this.#cloudIds.set(client.id, { client, userId: session.identity.userId });
    if (session.identity.kind === 'device') {
      const id = session.identity.deviceId;
      const set = this.#byDevice.get(id) ?? new Set<Client>();
      set.add(client);
      this.#byDevice.set(id, set);
    }
  }

  /**
   * Logs a refusal of a known device and records it as a security event — at most once per device
   * and reason per minute (the store folds them into one row per minute anyway): a client sending
   * refusal after refusal costs no store write per refusal.
   */
  async #refused(tenantId: string | null, deviceId: string, reason: string): Promise<void> {
    this.#log?.info({ tenantId, deviceId, reason }, 'mqtt refused');
    const key = `${deviceId} ${reason}`;
    const now = this.#clock().getTime();
    const last = this.#refusalWrites.get(key);
    if (last !== undefined && now - last < REFUSAL_WRITE_INTERVAL_MS) return;
    this.#refusalWrites.delete(key);
    if (this.#refusalWrites.size >= LOOKUP_CACHE_MAX)
      this.#refusalWrites.delete(this.#refusalWrites.keys().next().value as string);
    this.#refusalWrites.set(key, now);
    try {
      await this.#store.recordRefusal({ tenantId, deviceId, reason, at: this.#clock().toISOString() });
    } catch (e) {
      this.#log?.error({ err: e }, 'cannot record broker refusal');
    }
  }

  async #cached<T>(map: Map<string, Cached<T>>, key: string, load: () => Promise<T | undefined>) {
    const now = this.#clock().getTime();
    const hit = map.get(key);
    if (hit && hit.until > now) return hit.value;
    const value = await load();
    if (map.size >= LOOKUP_CACHE_MAX) map.delete(map.keys().next().value as string);
    map.set(key, { value, until: now + LOOKUP_TTL_MS });
    return value;
  }

  #device(id: string) {
    return this.#cached(this.#devices, id, () => this.#store.device(id));
  }

  #group(id: string) {
    return this.#cached(this.#groups, id, () => this.#store.group(id));
  }

  /** Resolves what the pure topic check could not know, against the (briefly cached) store. */
  async #allowed(who: BrokerIdentity, check: TopicCheck): Promise<boolean> {
    if (!check.ok) return false;
    const need = check.need;
    if (need === null) return true;
    if (need.kind === 'device-in-tenant')
      return (await this.#device(need.deviceId))?.tenantId === who.tenantId;
    const group = await this.#group(need.groupId);
    if (group?.tenantId !== who.tenantId) return false;
    if (need.kind === 'group-in-tenant') return true;
    if (who.kind !== 'device' || !group.allowPeerMessages) return false;
    return (await this.#device(who.deviceId))?.deviceGroupId === need.groupId;
  }

  /** true when the pure check alone allows it (and the packet is then prepared); false: take the full path */
  #authorizeOwnPublish(client: Client, packet: { topic: string; retain: boolean }): boolean {
    const s = this.#sessions.get(client);
    if (!s) return false;
    const check = checkPublish(s.identity, packet.topic);
    if (!check.ok || check.need !== null) return false;
    this.#accepted(s, packet);
    return true;
  }

  #accepted(s: Session, packet: { topic: string; retain: boolean }): void {
    // Retained messages would outlive the device's tenant (unclaim, claim elsewhere): not kept.
    packet.retain = false;
    const key = ownerKeyOf(packet.topic);
    if (key !== null && this.#owners.get(key) !== s.identity.tenantId) {
      if (this.#owners.size >= OWNER_CACHE_MAX && !this.#owners.has(key))
        this.#owners.delete(this.#owners.keys().next().value as string);
      this.#owners.set(key, s.identity.tenantId);
    }
  }

  async #authorizePublish(client: Client, packet: { topic: string; retain: boolean }): Promise<void> {
    const s = this.#sessions.get(client);
    if (!s || !(await this.#allowed(s.identity, checkPublish(s.identity, packet.topic)))) {
      if (s?.identity.kind === 'device')
        await this.#refused(s.identity.tenantId, s.identity.deviceId, 'BROKER_TOPIC_DENIED');
      throw Object.assign(new Error('BROKER_TOPIC_DENIED'), { code: 'BROKER_TOPIC_DENIED' });
    }
    this.#accepted(s, packet);
  }

  async #authorizeSubscribe(client: Client, filter: string): Promise<boolean> {
    const s = this.#sessions.get(client);
    if (!s || s.refusals >= MAX_REFUSALS) return false;
    const full = () => !s.filters.has(filter) && s.filters.size >= MAX_SUBSCRIPTIONS;
    let reason = 'BROKER_SUBSCRIPTION_LIMIT';
    if (!full()) {
      if (await this.#allowed(s.identity, checkSubscribe(s.identity, filter))) {
        if (!full()) {
          s.filters.add(filter);
          return true;
        }
      } else reason = 'BROKER_TOPIC_DENIED';
    }
    s.refusals += 1;
    if (s.refusals === MAX_REFUSALS) {
      this.#log?.info(
        { clientId: client.id, refusals: s.refusals },
        'mqtt too many refused subscriptions: connection closed',
      );
      client.conn.destroy();
    }
    if (s.identity.kind === 'device') await this.#refused(s.identity.tenantId, s.identity.deviceId, reason);
    return false;
  }

  /** Per message, per receiver: only sessions of the tenant that owns the topic get it. */
  #authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const s = this.#sessions.get(client);
    const key = ownerKeyOf(packet.topic);
    if (!s || key === null || this.#owners.get(key) !== s.identity.tenantId) return null;
    const who = s.identity;
    if (who.kind === 'device' && key.startsWith('groups/')) {
      // A group's peer policy or a device's group may change while subscribed: re-checked here
      // from the cache (refreshed in the background), failing closed when nothing is cached.
      const groupId = key.slice('groups/'.length);
      const group = this.#groups.get(groupId)?.value;
      const device = this.#devices.get(who.deviceId)?.value;
      this.#group(groupId).catch(() => undefined);
      this.#device(who.deviceId).catch(() => undefined);
      if (!group?.allowPeerMessages || device?.deviceGroupId !== groupId) return null;
    }
    return packet;
  }
}
