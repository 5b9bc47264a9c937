/**
 * Wiring of the supervisor into the device runtime (one call from runtime.ts): measurements go
 * into the runtime's own log and register, reports into its queue, the device certificate is read
 * from the state folder. The optional `supervisor.json` of the state folder configures isolation
 * (`{ "disable": { "ownUser": true, … }, "memoryLimitMB": 256 }`), e.g. to prove that the
 * permission model holds alone.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { measure } from '../boot/measure.ts';
import type { MqttSessionPort } from '../broker/app-mqtt.ts';
import type { ReportEvent } from '../reports/report.ts';
import type { RootOfTrust } from '../rot/root-of-trust.ts';
import type { DeviceState } from '../state/device-state.ts';
import type { Storage } from '../state/storage.ts';
import type { IsolationOptions } from './isolation.ts';
import { AppSupervisor } from './supervisor.ts';

export const SUPERVISOR_CONFIG_PATH = 'supervisor.json';

function readConfig(stateDir: string, log: (l: string) => void): IsolationOptions {
  let raw: string;
  try {
    raw = readFileSync(join(stateDir, SUPERVISOR_CONFIG_PATH), 'utf8');
  } catch {
    return {};
  }
  try {
    const c = JSON.parse(raw) as { disable?: Record<string, unknown>; memoryLimitMB?: unknown };
    const d = c.disable ?? {};
    const mb = c.memoryLimitMB;
    return {
      disable: {
        ownUser: d['ownUser'] === true,
        networkNamespace: d['networkNamespace'] === true,
        memoryLimit: d['memoryLimit'] === true,
      },
      ...(typeof mb === 'number' && Number.isInteger(mb) && mb >= 32 && mb <= 65536
        ? { memoryLimitBytes: mb * 1024 * 1024 }
        : {}),
    };
  } catch {
    log(`supervisor: ${SUPERVISOR_CONFIG_PATH} is not JSON; using every layer available`);
    return {};
  }
}

export function startAppSupervisor(o: {
  readonly state: DeviceState;
  readonly storage: Storage;
  readonly rot: RootOfTrust;
  readonly pcr: number;
  readonly deviceId: string;
  readonly log: (line: string) => void;
  readonly report: (e: ReportEvent) => void;
  readonly mqtt?: MqttSessionPort;
}): AppSupervisor {
  const sup = new AppSupervisor({
    stateDir: o.state.dir,
    storage: o.storage,
    deviceId: o.deviceId,
    log: o.log,
    report: o.report,
    isolation: readConfig(o.state.dir, o.log),
    ...(o.mqtt ? { mqtt: o.mqtt } : {}),
    certificate: () => o.state.certificate(),
    measure: async (entry) => {
      await measure(
        {
          rot: o.rot,
          pcr: o.pcr,
          readLog: () => o.state.measurementLog(),
          writeLog: (log) => o.state.writeMeasurementLog(log),
        },
        entry,
      );
    },
  });
  sup.start().catch((e: unknown) => o.log(`supervisor failed to start: ${String(e)}`));
  return sup;
}
