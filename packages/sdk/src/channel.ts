/**
 * The one channel to the supervisor: Node's IPC, one request → one answer (docs/apps.md §IPC).
 * Every capability the SDK offers is a request the supervisor checks against the app manifest;
 * a refusal comes back as a HeptadAppError with a stable code (APP_CAPABILITY_DENIED, …).
 */
import type { AppAnswer, AppEvent, AppOp } from '@heptad/protocol';

/** A refusal or failure answered by the supervisor. `code` is stable (docs/errors.md). */
export class HeptadAppError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'HeptadAppError';
    this.code = code;
  }
}

interface Pending {
  resolve: (r: { value: unknown; handle: unknown }) => void;
  reject: (e: Error) => void;
}

const pending = new Map<number, Pending>();
const listeners = new Map<string, Set<(e: AppEvent) => void>>();
let nextId = 1;
let attached = false;

/** The IPC channel keeps the app alive only while it waits for answers or listens to events. */
function refresh(): void {
  const ch = (process as { channel?: { ref(): void; unref(): void } }).channel;
  if (ch === undefined) return;
  if (pending.size > 0 || [...listeners.values()].some((s) => s.size > 0)) ch.ref();
  else ch.unref();
}

function attach(): void {
  if (attached) return;
  attached = true;
  process.on('message', (m: unknown, handle: unknown) => {
    if (typeof m !== 'object' || m === null) return;
    const msg = m as AppAnswer | AppEvent;
    if (msg.t === 'res') {
      const p = pending.get(msg.id);
      if (p === undefined) return;
      pending.delete(msg.id);
      refresh();
      if (msg.ok) p.resolve({ value: msg.value, handle });
      else p.reject(new HeptadAppError(msg.code, msg.message));
    } else if (msg.t === 'event') {
      for (const fn of listeners.get(msg.event) ?? []) fn(msg);
    }
  });
  refresh();
}

/** Whether this process runs under a Heptad supervisor. */
export const inCompartment = (): boolean => typeof process.send === 'function';

/** Sends one request and waits for its answer (and the socket or server handle that may come with it). */
export function request<T = unknown>(
  op: AppOp,
  args: Record<string, unknown> = {},
): Promise<{ value: T; handle: unknown }> {
  if (!inCompartment())
    return Promise.reject(new HeptadAppError('APP_NOT_RUNNING', 'not running under a Heptad supervisor'));
  attach();
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve: resolve as Pending['resolve'], reject });
    refresh();
    process.send?.({ t: 'req', id, op, args }, undefined, {}, (err: Error | null) => {
      if (err && pending.delete(id)) {
        refresh();
        reject(new HeptadAppError('APP_NOT_RUNNING', `the supervisor channel is closed: ${err.message}`));
      }
    });
  });
}

export async function call<T = unknown>(op: AppOp, args: Record<string, unknown> = {}): Promise<T> {
  return (await request<T>(op, args)).value;
}

/** Listens to supervisor events; returns a function that stops listening. */
export function onEvent(event: AppEvent['event'], fn: (e: AppEvent) => void): () => void {
  attach();
  const set = listeners.get(event) ?? new Set();
  listeners.set(event, set);
  set.add(fn);
  refresh();
  return () => {
    set.delete(fn);
    refresh();
  };
}

export const toBase64 = (data: Uint8Array | string): string =>
  (typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data)).toString('base64');
export const fromBase64 = (s: unknown): Uint8Array => Buffer.from(typeof s === 'string' ? s : '', 'base64');
