/**
 * MQTT through the device's one broker session (docs/apps.md §mqtt), for apps whose manifest has
 * `DeviceAuthentication` naming the device's tenant. Topics are always under
 * `devices/<this device id>/`: the app gives only the part after it (`telemetry`,
 * `commands/+`, `#`), and the supervisor adds the prefix, so no topic of another device can be
 * named. The runtime holds the session (mutual TLS with the device certificate): the app never
 * sees the key, and nothing is queued while the session is down (APP_MQTT_UNAVAILABLE).
 */
import type { AppEvent } from '@heptad/protocol';
import { call, fromBase64, onEvent, toBase64 } from './channel.ts';

type MqttEvent = Extract<AppEvent, { event: 'mqtt-message' }>;
export type MqttHandler = (topic: string, payload: Uint8Array) => void;

const handlers = new Map<string, Set<MqttHandler>>();
let stopListening: (() => void) | undefined;

function listen(): void {
  if (stopListening !== undefined) return;
  stopListening = onEvent('mqtt-message', (e) => {
    const m = e as MqttEvent;
    const payload = fromBase64(m.payload);
    const seen = new Set<MqttHandler>();
    for (const f of Array.isArray(m.filters) ? m.filters : [])
      for (const fn of handlers.get(f) ?? []) {
        if (seen.has(fn)) continue;
        seen.add(fn);
        fn(m.topic, payload);
      }
  });
}

export const mqtt = {
  /**
   * Publishes to `devices/<this device>/<subtopic>`. QoS 1 (default) resolves once the broker
   * acknowledged it; QoS 0 once it was sent. Payloads are at most 64 KiB.
   */
  async publish(subtopic: string, payload: Uint8Array | string, opts: { qos?: 0 | 1 } = {}): Promise<void> {
    await call('mqtt.publish', { topic: subtopic, payload: toBase64(payload), qos: opts.qos ?? 1 });
  },
  /**
   * Subscribes to `devices/<this device>/<subfilter>` (`+` and `#` as MQTT allows them); `handler`
   * gets the topic after the prefix. Returns a function that unsubscribes this handler.
   */
  async subscribe(subfilter: string, handler: MqttHandler): Promise<() => Promise<void>> {
    listen();
    const set = handlers.get(subfilter) ?? new Set<MqttHandler>();
    const first = set.size === 0;
    set.add(handler);
    handlers.set(subfilter, set);
    if (first) {
      try {
        await call('mqtt.subscribe', { filter: subfilter });
      } catch (e) {
        set.delete(handler);
        if (set.size === 0) handlers.delete(subfilter);
        throw e;
      }
    }
    return async () => {
      set.delete(handler);
      if (set.size === 0 && handlers.get(subfilter) === set) await mqtt.unsubscribe(subfilter);
    };
  },
  /** Drops every handler of `subfilter` and the subscription. */
  async unsubscribe(subfilter: string): Promise<void> {
    handlers.delete(subfilter);
    if (handlers.size === 0) {
      stopListening?.();
      stopListening = undefined;
    }
    await call('mqtt.unsubscribe', { filter: subfilter });
  },
};
