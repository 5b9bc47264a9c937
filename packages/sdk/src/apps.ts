/**
 * Messages between apps that list each other in `AllowedApplicationConnections` (both sides must;
 * a one-sided listing grants nothing).
 */
import { call, fromBase64, onEvent, toBase64 } from './channel.ts';

export const apps = {
  async send(componentId: string, data: Uint8Array | string): Promise<void> {
    await call('apps.send', { to: componentId, data: toBase64(data) });
  },
  onMessage(fn: (from: string, data: Uint8Array) => void): () => void {
    return onEvent('message', (e) => {
      const m = e as { from: string; data: string };
      fn(m.from, fromBase64(m.data));
    });
  },
};
