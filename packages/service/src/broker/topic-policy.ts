import { isDeviceId } from '@heptad/protocol';
import type { Role } from '../store/schema.ts';

/**
 * Who an MQTT session is, taken from what the service verified — the client certificate (a
 * device) or an API token (a tenant's cloud-side client) — never from the client-chosen clientId
 * or username.
 */
export type BrokerIdentity =
  | { readonly kind: 'device'; readonly tenantId: string; readonly deviceId: string; readonly serial: string }
  | { readonly kind: 'cloud'; readonly tenantId: string; readonly userId: string; readonly role: Role };

/** Topic names and filters longer than this are refused (the topic tree is two fixed levels + a tail). */
export const MAX_TOPIC_LENGTH = 512;
export const MAX_TOPIC_LEVELS = 16;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CLOUD_LABEL = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * What must still be true in the store for a topic check to pass (the pure check cannot know):
 * `device-in-tenant`: the device belongs to the caller's tenant; `group-in-tenant`: the group
 * does; `peer-group`: the calling device is in the group and the group allows peer messages.
 */
export type TopicNeed =
  | { readonly kind: 'device-in-tenant'; readonly deviceId: string }
  | { readonly kind: 'group-in-tenant'; readonly groupId: string }
  | { readonly kind: 'peer-group'; readonly groupId: string };

export type TopicCheck = { readonly ok: false } | { readonly ok: true; readonly need: TopicNeed | null };

const DENY: TopicCheck = { ok: false };
const ALLOW: TopicCheck = { ok: true, need: null };

/** Splits a topic (or filter) into its space, the device or group id, and the tail; null when outside the tree. */
function split(topic: string): { space: 'devices' | 'groups'; id: string; tail: string[] } | null {
  if (topic.length === 0 || topic.length > MAX_TOPIC_LENGTH || topic.includes('\u0000')) return null;
  const levels = topic.split('/');
  if (levels.length < 3 || levels.length > MAX_TOPIC_LEVELS) return null;
  const [space, id, ...tail] = levels as [string, string, ...string[]];
  if (space !== 'devices' && space !== 'groups') return null;
  return { space, id, tail };
}

/** MQTT 3.1.1 §4.7.1: '#' alone and last, '+' alone in its level; the tail may not be empty levels only. */
function isValidFilterTail(tail: readonly string[]): boolean {
  if (tail.length === 0 || tail.every((l) => l === '')) return false;
  return tail.every((l, i) => {
    if (l.includes('#')) return l === '#' && i === tail.length - 1;
    if (l.includes('+')) return l === '+';
    return true;
  });
}

const isId = (space: 'devices' | 'groups', id: string) =>
  space === 'devices' ? isDeviceId(id) : UUID.test(id);

/**
 * May this session subscribe to `filter`? A device: its own `devices/<id>/…`, and
 * `groups/<its group>/…` when the group allows peer messages. A cloud client: `devices/…` and
 * `groups/…` of its tenant, `+` allowed in the id level (delivery is then filtered per message by
 * tenant). `#` or `+` at the root, `$SYS`, shared subscriptions and anything outside the two
 * spaces are refused.
 */
export function checkSubscribe(who: BrokerIdentity, filter: string): TopicCheck {
  const t = split(filter);
  if (!t || !isValidFilterTail(t.tail)) return DENY;
  if (who.kind === 'device') {
    if (t.space === 'devices') return t.id === who.deviceId ? ALLOW : DENY;
    return UUID.test(t.id) ? { ok: true, need: { kind: 'peer-group', groupId: t.id } } : DENY;
  }
  if (t.id === '+') return ALLOW;
  if (!isId(t.space, t.id)) return DENY;
  return t.space === 'devices'
    ? { ok: true, need: { kind: 'device-in-tenant', deviceId: t.id } }
    : { ok: true, need: { kind: 'group-in-tenant', groupId: t.id } };
}

/**
 * May this session publish to `topic`? The same spaces as subscribing, without wildcards; a cloud
 * client needs the Contributor role or above (a Reader only listens).
 */
export function checkPublish(who: BrokerIdentity, topic: string): TopicCheck {
  const t = split(topic);
  if (!t || t.tail.some((l) => l.includes('+') || l.includes('#')) || t.tail.every((l) => l === ''))
    return DENY;
  if (!isId(t.space, t.id)) return DENY;
  if (who.kind === 'device') {
    if (t.space === 'devices') return t.id === who.deviceId ? ALLOW : DENY;
    return { ok: true, need: { kind: 'peer-group', groupId: t.id } };
  }
  if (who.role === 'Reader') return DENY;
  return t.space === 'devices'
    ? { ok: true, need: { kind: 'device-in-tenant', deviceId: t.id } }
    : { ok: true, need: { kind: 'group-in-tenant', groupId: t.id } };
}

/** The owner key of a topic for per-message tenant filtering: `devices/<id>` or `groups/<id>`. */
export function ownerKeyOf(topic: string): string | null {
  const first = topic.indexOf('/');
  if (first < 0) return null;
  const second = topic.indexOf('/', first + 1);
  if (second < 0) return null;
  return topic.slice(0, second);
}

/**
 * The clientId a session must use: a device its own id (so no one can take over another
 * device's session, which MQTT would otherwise allow by reusing its clientId); a cloud client
 * `<tenant id>/<label>` (label: 1–64 of A–Z a–z 0–9 . _ -), so cloud clients of one tenant can
 * never collide with devices or with another tenant's clients.
 */
export function isClientIdAllowed(who: BrokerIdentity, clientId: string): boolean {
  if (who.kind === 'device') return clientId === who.deviceId;
  const prefix = `${who.tenantId}/`;
  return clientId.startsWith(prefix) && CLOUD_LABEL.test(clientId.slice(prefix.length));
}
