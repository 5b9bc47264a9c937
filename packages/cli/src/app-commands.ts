import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  APPS_STATUS_PATH,
  DeviceState,
  FsStorage,
  isAppDevelopment,
  listApps,
  loadBoard,
  removeApp,
  SIM_STATE_PATH,
} from '@heptad/device';
import { str } from './args.ts';
import type { CommandContext, CommandSpec } from './spec.ts';

const stateDir = (ctx: CommandContext): string => {
  const dir = resolve(ctx.io.cwd, String(str(ctx, 'state')));
  new DeviceState(dir).config(); // a device state folder, or DEVICE_STATE_INVALID
  return dir;
};

/** run/apps.json: what the supervisor of a running device last wrote (informative). */
export function readAppsStatus(dir: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, APPS_STATUS_PATH), 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

const STATE_OPTION = {
  name: 'state',
  type: 'string',
  valueName: 'DIR',
  description: 'device state folder',
  required: true,
} as const;

/** Commands on the apps of a device, acting on its state folder. */
export const APP_DEVICE_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['device', 'apps'],
    summary: 'List the apps installed on the device, and what the supervisor last reported about them',
    args: [],
    options: [STATE_OPTION],
    service: false,
    async run(ctx) {
      const dir = stateDir(ctx);
      const storage = new FsStorage(dir);
      const run = readAppsStatus(dir);
      const running = new Map(
        ((run?.['apps'] ?? []) as Array<Record<string, unknown>>).map((a) => [String(a['componentId']), a]),
      );
      const items = listApps(storage).map((a) => {
        const r = running.get(a.componentId);
        return {
          ...a,
          state: r?.['state'] ?? null,
          restarts: r?.['restarts'] ?? null,
          pid: r?.['pid'] ?? null,
        };
      });
      return {
        data: { items, appDevelopment: isAppDevelopment(storage), layers: run?.['layers'] ?? null },
        table: {
          columns: [
            { header: 'NAME', get: (r) => r['name'] },
            { header: 'VERSION', get: (r) => r['version'] },
            { header: 'COMPONENT', get: (r) => r['componentId'] },
            { header: 'SLOT', get: (r) => `${r['slot']}${r['trial'] ? ' (trial)' : ''}` },
            { header: 'SIGNED', get: (r) => (r['devSigned'] ? 'developer' : 'production') },
            { header: 'STATE', get: (r) => r['problem'] ?? r['state'] ?? '-' },
            { header: 'RESTARTS', get: (r) => r['restarts'] ?? '' },
          ],
          rows: items,
        },
      };
    },
  },
  {
    path: ['device', 'app-remove'],
    summary: 'Uninstall an app from the device (a running device stops it within a second)',
    args: [{ name: 'COMPONENT_ID', description: 'the app’s component id', required: true }],
    options: [STATE_OPTION],
    service: false,
    async run(ctx) {
      const id = String(str(ctx, 'COMPONENT_ID')).toLowerCase();
      removeApp(new FsStorage(stateDir(ctx)), id);
      return { data: { removed: id }, text: `Removed ${id}\n` };
    },
  },
  {
    path: ['device', 'peripherals'],
    summary: 'Show the device’s board and the simulated peripherals’ state (what apps drove, and how often)',
    description:
      'Reads DIR/peripherals/sim.json, written by the supervisor of a running device. Inputs of simulated ' +
      'peripherals (buttons, ADC samples, UART bytes) can be set in DIR/peripherals/sim-inputs.json.',
    args: [],
    options: [STATE_OPTION],
    service: false,
    async run(ctx) {
      const dir = stateDir(ctx);
      const board = loadBoard(new FsStorage(dir));
      let sim: Record<string, Record<string, Record<string, unknown>>> = {};
      try {
        sim = JSON.parse(readFileSync(join(dir, SIM_STATE_PATH), 'utf8'));
      } catch {
        // nothing driven yet
      }
      const rows = [...board.peripherals.values()].map((p) => {
        const s = sim[p.type]?.[p.name];
        const state =
          s === undefined
            ? ''
            : p.type === 'gpio'
              ? `value ${s['value']}, ${s['writes']} writes`
              : p.type === 'pwm'
                ? `period ${s['periodNs']} ns, duty ${s['dutyNs']} ns, ${s['enabled'] ? 'on' : 'off'}`
                : p.type === 'uart'
                  ? `${s['txBytes']} bytes sent`
                  : p.type === 'adc'
                    ? `${s['reads']} reads`
                    : `${s['transfers']} transfers`;
        return {
          name: p.name,
          type: p.type,
          backend: p.backend.spec,
          owner: s?.['owner'] ?? null,
          state,
          sim: s ?? null,
        };
      });
      return {
        data: { board: board.name, peripherals: rows, at: (sim as Record<string, unknown>)['at'] ?? null },
        table: {
          columns: [
            { header: 'NAME', get: (r) => r['name'] },
            { header: 'TYPE', get: (r) => r['type'] },
            { header: 'BACKEND', get: (r) => r['backend'] },
            { header: 'DRIVEN BY', get: (r) => r['owner'] ?? '' },
            { header: 'STATE', get: (r) => r['state'] },
          ],
          rows,
        },
      };
    },
  },
];
