/**
 * The SDK's `mqtt` on the supervisor's side (docs/apps.md §mqtt): every app with
 * `DeviceAuthentication` publishes and subscribes through the runtime's ONE broker session, only
 * under `devices/<this device id>/`. This multiplexes: subscriptions are counted per full filter
 * (the session holds each once), an incoming message goes only to the apps whose own filters match
 * it, and each app is bounded (subscriptions, publishes waiting for their PUBACK, messages waiting
 * to be handed over), so one app cannot take the session's subscription places or the runtime's
 * memory from the others.
 */
import { HeptadError } from '@heptad/protocol';
import { filterMatches, fromDeviceTopic, toDeviceTopic } from './topics.ts';

/** filters one app may hold */
export const MAX_APP_SUBSCRIPTIONS = 16;
/** distinct filters of all apps (the broker allows 100 per session) */
export const MAX_SESSION_FILTERS = 90;
/** QoS 1 publishes of one app waiting for their PUBACK */
export const MAX_APP_PUBLISHES_IN_FLIGHT = 16;
/** messages to one app not yet handed to its IPC channel; more are dropped (and counted) */
export const MAX_APP_DELIVERIES_PENDING = 256;

/** What this needs of the runtime's session (session.ts). */
export interface MqttSessionPort {
  readonly connected: boolean;
  /** e.g. `connecting`, `refused 5`, `off` */
  describe(): string;
  publish(topic: string, payload: Buffer, qos: 0 | 1): Promise<void>;
  subscribe(filter: string): Promise<void>;
  unsubscribe(filter: string): Promise<void>;
}

interface AppState {
  /** the app's filters as it gave them (subfilters) */
  readonly filters: Set<string>;
  publishing: number;
  pending: number;
  dropped: number;
}

export interface AppMqttOptions {
  readonly deviceId: string;
  readonly session: MqttSessionPort;
  /**
   * hands an event to a running app; calls `done` once it left (or failed). False when the app is
   * not running.
   */
  readonly deliver: (componentId: string, event: MqttMessageEvent, done: () => void) => boolean;
  readonly log?: (line: string) => void;
}

export interface MqttMessageEvent {
  readonly t: 'event';
  readonly event: 'mqtt-message';
  readonly topic: string;
  readonly payload: string;
  readonly filters: readonly string[];
}

const unavailable = (s: MqttSessionPort) =>
  new HeptadError('APP_MQTT_UNAVAILABLE', `the device's broker session is ${s.describe()}`);

export class AppMqtt {
  readonly #o: AppMqttOptions;
  readonly #apps = new Map<string, AppState>();
  /** full filter → the apps holding it */
  readonly #holders = new Map<string, Set<string>>();

  constructor(options: AppMqttOptions) {
    this.#o = options;
  }

  #app(componentId: string): AppState {
    let a = this.#apps.get(componentId);
    if (a === undefined) {
      a = { filters: new Set(), publishing: 0, pending: 0, dropped: 0 };
      this.#apps.set(componentId, a);
    }
    return a;
  }

  /** `sub` is checked (topics.ts) by the caller. */
  async publish(componentId: string, sub: string, payload: Buffer, qos: 0 | 1): Promise<void> {
    const s = this.#o.session;
    if (!s.connected) throw unavailable(s);
    const a = this.#app(componentId);
    if (a.publishing >= MAX_APP_PUBLISHES_IN_FLIGHT)
      throw new HeptadError('APP_RATE_LIMITED', 'too many MQTT publishes waiting for the broker');
    a.publishing++;
    try {
      await s.publish(toDeviceTopic(this.#o.deviceId, sub), payload, qos);
    } catch (e) {
      if (isHeptadErrorLike(e)) throw e;
      throw new HeptadError('APP_MQTT_UNAVAILABLE', `the publish was not acknowledged: ${String(e)}`, {
        cause: e,
      });
    } finally {
      a.publishing--;
    }
  }

  /** `subfilter` is checked (topics.ts) by the caller. Idempotent for a filter the app holds. */
  async subscribe(componentId: string, subfilter: string): Promise<void> {
    const s = this.#o.session;
    const a = this.#app(componentId);
    if (a.filters.has(subfilter)) return;
    if (!s.connected) throw unavailable(s);
    if (a.filters.size >= MAX_APP_SUBSCRIPTIONS)
      throw new HeptadError('APP_RATE_LIMITED', `an app holds at most ${MAX_APP_SUBSCRIPTIONS} MQTT filters`);
    const full = toDeviceTopic(this.#o.deviceId, subfilter);
    const holders = this.#holders.get(full);
    if (holders === undefined) {
      if (this.#holders.size >= MAX_SESSION_FILTERS)
        throw new HeptadError(
          'APP_RATE_LIMITED',
          `the device holds at most ${MAX_SESSION_FILTERS} MQTT filters`,
        );
      // Counted before the await: two apps subscribing at once must not both pass the bound.
      this.#holders.set(full, new Set([componentId]));
      try {
        await s.subscribe(full);
      } catch (e) {
        this.#holders.delete(full);
        throw new HeptadError('APP_MQTT_UNAVAILABLE', `the broker did not grant ${subfilter}: ${String(e)}`, {
          cause: e,
        });
      }
    } else holders.add(componentId);
    a.filters.add(subfilter);
  }

  async unsubscribe(componentId: string, subfilter: string): Promise<void> {
    const a = this.#apps.get(componentId);
    if (a === undefined || !a.filters.delete(subfilter)) return;
    await this.#release(componentId, toDeviceTopic(this.#o.deviceId, subfilter));
  }

  async #release(componentId: string, full: string): Promise<void> {
    const holders = this.#holders.get(full);
    if (holders === undefined) return;
    holders.delete(componentId);
    if (holders.size > 0) return;
    this.#holders.delete(full);
    try {
      await this.#o.session.unsubscribe(full);
    } catch {
      // the session is down: it subscribes again only to the filters still held
    }
  }

  /** The app stopped (exit, crash, removal): its filters are released. */
  forget(componentId: string): void {
    const a = this.#apps.get(componentId);
    if (a === undefined) return;
    this.#apps.delete(componentId);
    for (const f of a.filters) void this.#release(componentId, toDeviceTopic(this.#o.deviceId, f));
  }

  /** A message from the session: to every app (and only those) whose filters match it. */
  route(topic: string, payload: Buffer): void {
    const sub = fromDeviceTopic(this.#o.deviceId, topic);
    if (sub === undefined) return; // not this device's (a session holds nothing else)
    let encoded: string | undefined;
    for (const [id, a] of this.#apps) {
      const filters = [...a.filters].filter((f) => filterMatches(f, sub));
      if (filters.length === 0) continue;
      if (a.pending >= MAX_APP_DELIVERIES_PENDING) {
        if (a.dropped++ % 1000 === 0)
          this.#o.log?.(`supervisor: ${id} does not keep up with its MQTT messages; dropping`);
        continue;
      }
      encoded ??= payload.toString('base64');
      a.pending++;
      const sent = this.#o.deliver(
        id,
        { t: 'event', event: 'mqtt-message', topic: sub, payload: encoded, filters },
        () => {
          a.pending--;
        },
      );
      if (!sent) a.pending--;
    }
  }

  /** For tests and status: the full filters the session must hold. */
  get sessionFilters(): readonly string[] {
    return [...this.#holders.keys()];
  }
}

function isHeptadErrorLike(e: unknown): boolean {
  return e instanceof HeptadError;
}
