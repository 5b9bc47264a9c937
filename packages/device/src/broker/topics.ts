/**
 * Topic rules of the app SDK's `mqtt` (docs/apps.md §mqtt): an app names only the part after
 * `devices/<this device id>/`; the supervisor prefixes it. Prefixing alone keeps an app inside its
 * device's topics (MQTT has no `..`: a level is a string), so these rules only refuse what MQTT
 * forbids or what would make the broker end the device's one session for every app:
 *
 * - 1–MAX_SUBTOPIC_BYTES bytes of UTF-8, at most MAX_SUBTOPIC_LEVELS levels (the broker refuses
 *   filters over 512 characters or 16 levels; the prefix is 2 levels and 73 characters);
 * - no empty level (`a//b`, a leading or trailing `/`): MQTT allows them, but `devices/D//x` is a
 *   different topic from `devices/D/x` that no one means, and an empty first level would make the
 *   app's topic look like the prefix itself;
 * - no NUL (MQTT 3.1.1 §1.5.3: a receiver closes the connection), no other control character, no
 *   lone surrogate (not encodable as UTF-8);
 * - a topic to publish has no `+` or `#` (§4.7.1.1); a filter has `+` only as a whole level and `#`
 *   only as the whole last level (§4.7.1.2–3).
 */
import { HeptadError } from '@heptad/protocol';

export const MAX_SUBTOPIC_BYTES = 256;
export const MAX_SUBTOPIC_LEVELS = 12;
/** a message payload, as the app's IPC allows (APP_IPC_LIMITS.maxPayloadBytes) */
export const MAX_MQTT_PAYLOAD_BYTES = 64 * 1024;

// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why a subtopic or subfilter is refused (a stable word for the violation report), or null. */
export function subtopicProblem(sub: unknown, kind: 'topic' | 'filter'): string | null {
  if (typeof sub !== 'string') return 'not-a-string';
  if (sub.length === 0) return 'empty';
  if (Buffer.byteLength(sub, 'utf8') > MAX_SUBTOPIC_BYTES) return 'too-long';
  if (sub.includes('\u0000')) return 'nul';
  if (CONTROL.test(sub)) return 'control-character';
  if (LONE_SURROGATE.test(sub)) return 'lone-surrogate';
  const levels = sub.split('/');
  if (levels.length > MAX_SUBTOPIC_LEVELS) return 'too-deep';
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i] as string;
    if (l.length === 0) return 'empty-level';
    if (kind === 'topic') {
      if (l.includes('+') || l.includes('#')) return 'wildcard-in-topic';
    } else {
      if (l.includes('+') && l !== '+') return 'wildcard-inside-level';
      if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return 'wildcard-inside-level';
    }
  }
  return null;
}

export const devicePrefix = (deviceId: string): string => `devices/${deviceId}/`;

/** The full topic or filter for an app's subtopic; throws APP_CAPABILITY_DENIED-worthy problems as values. */
export function toDeviceTopic(deviceId: string, sub: string): string {
  return `${devicePrefix(deviceId)}${sub}`;
}

/** The app's part of a full topic of this device, or undefined when it is not under the prefix. */
export function fromDeviceTopic(deviceId: string, topic: string): string | undefined {
  const p = devicePrefix(deviceId);
  return topic.startsWith(p) ? topic.slice(p.length) : undefined;
}

/** MQTT filter matching (§4.7): `+` one level, `#` the rest (including its parent level). */
export function filterMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const fl = f[i];
    if (fl === '#') return true;
    if (i >= t.length) return false;
    if (fl !== '+' && fl !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Throws APP_REQUEST_INVALID for a payload over the limit (checked before anything is sent). */
export function assertPayloadSize(bytes: number): void {
  if (bytes > MAX_MQTT_PAYLOAD_BYTES)
    throw new HeptadError(
      'APP_REQUEST_INVALID',
      `an MQTT payload is at most ${MAX_MQTT_PAYLOAD_BYTES} bytes`,
    );
}
