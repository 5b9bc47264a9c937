/**
 * The update agent's view of the apps (agent.ts AppHost) over the app store (apps/store.ts) and
 * the supervisor: install into the inactive slot as a trial, restart only that app, watch it for
 * a health period, then commit or roll back (and restart it on the committed slot).
 */
import { isHeptadError } from '@heptad/protocol';
import { commitApp, installApp, listApps, loadBoard, removeApp, rollbackApp } from '../apps/store.ts';
import type { Storage } from '../state/storage.ts';
import type { AppSupervisor } from '../supervisor/supervisor.ts';
import type { AppHost } from './agent.ts';

export interface AppHostOptions {
  /** how long a restarted app must keep running, without a restart, to count as healthy (ms) */
  readonly healthMs?: number;
  /** how long to wait for it to start at all (ms) */
  readonly startMs?: number;
}

export const DEFAULT_APP_HEALTH_MS = 5_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function supervisorAppHost(
  storage: Storage,
  supervisor: () => AppSupervisor | undefined,
  o: AppHostOptions = {},
): AppHost {
  const healthMs = o.healthMs ?? DEFAULT_APP_HEALTH_MS;
  const startMs = o.startMs ?? 10_000;
  return {
    list: () =>
      listApps(storage).map((a) => ({
        componentId: a.componentId,
        // What runs when nothing is on trial: the committed image (an app on trial is unsettled).
        imageId: a.trial ? '' : a.imageId,
        devSigned: a.devSigned,
      })),
    install: (pkg) => {
      const r = installApp(storage, pkg, { board: loadBoard(storage) });
      return { componentId: r.componentId, digest: r.verified.pkg.digest };
    },
    activate: async (componentId) => {
      const sup = supervisor();
      if (!sup) return false;
      await sup.restartApp(componentId);
      const deadline = Date.now() + startMs + healthMs;
      let restarts: number | undefined;
      while (Date.now() < deadline) {
        const h = sup.health(componentId);
        if (h) {
          restarts ??= h.restarts;
          // Crashed or exited (restarted, or given up on) during the health period: unhealthy.
          if (h.restarts > restarts || h.state === 'failed' || h.state === 'stopped' || h.state === 'backoff')
            return false;
          if (h.state === 'running' && h.runningMs >= healthMs) return true;
        }
        await sleep(Math.min(250, healthMs / 4));
      }
      return false;
    },
    commit: (componentId) => {
      commitApp(storage, componentId);
    },
    rollback: async (componentId) => {
      try {
        rollbackApp(storage, componentId);
      } catch (e) {
        // The store may have rolled the trial back by itself (its starts ran out): nothing to undo.
        if (!isHeptadError(e)) throw e;
      }
      await supervisor()?.restartApp(componentId);
    },
    remove: async (componentId) => {
      await supervisor()?.stopApp(componentId);
      removeApp(storage, componentId);
    },
  };
}
