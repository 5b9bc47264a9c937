/**
 * Device events waiting to be told to the service (DeviceReport.events): what the boot chain
 * and the runtime did since the last report the service accepted. One small file written
 * through the storage layer; the newest MAX_REPORT_EVENTS are kept, so a device that cannot
 * reach the service for a long time still reports its latest history.
 */
import {
  DEVICE_EVENT_KINDS,
  type DeviceEvent,
  type DeviceEventKind,
  MAX_REPORT_EVENTS,
} from '@heptad/protocol';
import type { Storage } from '../state/storage.ts';

export const EVENTS_PATH = 'events.json';

// The service's rules for a report (attestation routes): an event it would refuse is never kept,
// since one refused event would make every later attestation fail the same way.
const CODE = /^[A-Za-z0-9_.-]{1,64}$/;
const VERSION = /^[0-9A-Za-z.+-]{1,128}$/;
const DIGEST = /^[0-9a-f]{64}$/;

function isEvent(v: unknown): v is DeviceEvent {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.at === 'string' &&
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(e.at) &&
    !Number.isNaN(Date.parse(e.at)) &&
    DEVICE_EVENT_KINDS.includes(e.kind as DeviceEventKind) &&
    (e.slot === undefined || e.slot === 'A' || e.slot === 'B') &&
    (e.version === undefined || (typeof e.version === 'string' && VERSION.test(e.version))) &&
    (e.digest === undefined || (typeof e.digest === 'string' && DIGEST.test(e.digest))) &&
    (e.code === undefined || (typeof e.code === 'string' && CODE.test(e.code)))
  );
}

/** The pending events, oldest first. A damaged file is not a reason to stop: it reads as empty. */
export function readEvents(storage: Storage): DeviceEvent[] {
  const bytes = storage.read(EVENTS_PATH);
  if (bytes === undefined) return [];
  try {
    const v = JSON.parse(bytes.toString('utf8')) as unknown;
    return Array.isArray(v) ? v.filter(isEvent).slice(-MAX_REPORT_EVENTS) : [];
  } catch {
    return [];
  }
}

/** Appends events (dropping the oldest beyond the cap). Codes that do not fit the format are cut. */
export function appendEvents(storage: Storage, events: readonly Omit<DeviceEvent, 'at'>[], at: Date): void {
  if (events.length === 0) return;
  const stamped = events.map((e) => {
    const code = e.code === undefined ? undefined : e.code.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
    return { at: at.toISOString(), ...e, ...(code ? { code } : {}) } as DeviceEvent;
  });
  const next = [...readEvents(storage), ...stamped.filter(isEvent)].slice(-MAX_REPORT_EVENTS);
  storage.write(EVENTS_PATH, Buffer.from(`${JSON.stringify(next)}\n`), 0o600);
}

/** Removes the events the service has accepted (matched by value), keeping any added since. */
export function acknowledgeEvents(storage: Storage, sent: readonly DeviceEvent[]): void {
  if (sent.length === 0) return;
  const key = (e: DeviceEvent) => JSON.stringify([e.at, e.kind, e.slot, e.version, e.digest, e.code]);
  const done = new Set(sent.map(key));
  const rest = readEvents(storage).filter((e) => !done.has(key(e)));
  if (rest.length === 0) storage.remove(EVENTS_PATH);
  else storage.write(EVENTS_PATH, Buffer.from(`${JSON.stringify(rest)}\n`), 0o600);
}
