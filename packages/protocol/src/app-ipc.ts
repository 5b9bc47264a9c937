/**
 * The wire between an app (its `@heptad/sdk`) and the supervisor: Node's IPC channel, one JSON
 * message per request, answer or event (docs/apps.md §IPC). Shared by the supervisor (which
 * treats every message from an app as hostile input) and the SDK (which makes well-formed ones).
 * Binary data travels as base64. Sockets and servers travel as handles next to a message.
 */

/** Every operation an app may ask for. Anything else is APP_REQUEST_INVALID. */
export const APP_OPS = [
  'hello',
  'gpio.read',
  'gpio.write',
  'uart.write',
  'uart.read',
  'i2c.transfer',
  'spi.transfer',
  'pwm.set',
  'adc.read',
  'net.connect',
  'net.listen',
  'tls.connect',
  'storage.read',
  'storage.write',
  'storage.delete',
  'storage.list',
  'deviceAuth.certificate',
  'deviceAuth.sign',
  'events.defer',
  'apps.send',
  'mqtt.publish',
  'mqtt.subscribe',
  'mqtt.unsubscribe',
  'crash',
] as const;
export type AppOp = (typeof APP_OPS)[number];

/** One request: `id` is the app's own counter; the answer carries it back. */
export interface AppRequest {
  readonly t: 'req';
  readonly id: number;
  readonly op: AppOp;
  readonly args: Readonly<Record<string, unknown>>;
}

export type AppAnswer =
  | { readonly t: 'res'; readonly id: number; readonly ok: true; readonly value: unknown }
  | {
      readonly t: 'res';
      readonly id: number;
      readonly ok: false;
      readonly code: string;
      readonly message: string;
    };

/** Events the supervisor sends on its own. */
export type AppEvent =
  | {
      readonly t: 'event';
      readonly event: 'update-pending';
      /** identifies this notice; a deferral names it */
      readonly updateId: string;
      /** what is to be updated: the runtime or this app */
      readonly target: 'runtime' | 'app';
      /** the latest time a deferral may reach (ISO-8601) */
      readonly maxDeferUntil: string;
    }
  | { readonly t: 'event'; readonly event: 'shutdown'; readonly graceMs: number }
  | { readonly t: 'event'; readonly event: 'message'; readonly from: string; readonly data: string }
  | {
      readonly t: 'event';
      readonly event: 'mqtt-message';
      /** the topic after `devices/<this device id>/` */
      readonly topic: string;
      /** base64 */
      readonly payload: string;
      /** the app's own filters (as it subscribed them) that the topic matches */
      readonly filters: readonly string[];
    };

/** Bounds the supervisor enforces on every app (a hostile app sends garbage, huge messages, floods). */
export const APP_IPC_LIMITS = Object.freeze({
  /** binary payload of one request, before base64 */
  maxPayloadBytes: 64 * 1024,
  /** a string argument other than a payload (host, name, path) */
  maxStringLength: 1024,
  /** requests an app may have waiting for an answer */
  maxInFlight: 64,
  /**
   * Messages per second, in a one-second window; beyond it the app is restarted. High enough for
   * an app that waits for each answer (about 10–20 thousand round trips a second): a flood is
   * messages that do not wait, which maxRefusedPerSecond catches first.
   */
  maxRequestsPerSecond: 100_000,
  /** malformed or over-the-in-flight-limit messages per second before the app is restarted */
  maxRefusedPerSecond: 1000,
  /** bytes an app may write per second (IPC and output together, /proc/PID/io) before it is restarted */
  maxBytesPerSecond: 64 * 1024 * 1024,
  /** mutual-TLS connections the supervisor relays for one app at a time */
  maxTlsRelays: 16,
});

/** The environment variable that tells the SDK it runs inside a Heptad compartment. */
export const APP_ENV_COMPONENT = 'HEPTAD_APP_COMPONENT_ID';
