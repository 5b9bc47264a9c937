/**
 * System events (`SystemEventNotifications`): an update is pending, the device shuts down. With
 * `SoftwareUpdateDeferral` the app may defer a pending update, up to the notice's maxDeferUntil
 * (24 h for the runtime, 168 h for an app, counted from the first notice).
 */
import type { AppEvent } from '@heptad/protocol';
import { call, onEvent } from './channel.ts';

export type UpdatePending = Extract<AppEvent, { event: 'update-pending' }>;

export const events = {
  onUpdatePending(fn: (e: UpdatePending) => void): () => void {
    return onEvent('update-pending', (e) => fn(e as UpdatePending));
  },
  /** The device is stopping: the app has `graceMs` before SIGKILL (SIGTERM comes too). */
  onShutdown(fn: (graceMs: number) => void): () => void {
    return onEvent('shutdown', (e) => fn((e as { graceMs: number }).graceMs));
  },
  /** Asks to defer the update until `until`; the answer is the time granted (capped). */
  async defer(updateId: string, until: Date): Promise<{ until: string }> {
    return call('events.defer', { updateId, until: until.toISOString() });
  },
};
