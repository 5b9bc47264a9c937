/**
 * `run/status.json`: what `heptad device run` is doing now, for `heptad device status`. Written
 * atomically by the bootloader process on every transition; informative only (nothing trusts it).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@heptad/protocol';

export interface RunStatus {
  readonly schema: 1;
  /** halted: no slot verifies (code says why); stopped: powered off on request */
  readonly phase: 'starting' | 'running' | 'stopped' | 'halted';
  readonly supervisorPid: number;
  readonly runtimePid?: number;
  readonly slot?: 'A' | 'B';
  readonly version?: string;
  readonly digest?: string;
  readonly trial?: boolean;
  readonly readyAt?: string;
  readonly lastAttestation?: string;
  readonly code?: string;
  readonly at: string;
}

export const RUN_STATUS_PATH = join('run', 'status.json');

export function writeRunStatus(dir: string, s: RunStatus): void {
  mkdirSync(join(dir, 'run'), { recursive: true, mode: 0o700 });
  writeFileAtomic(join(dir, RUN_STATUS_PATH), `${JSON.stringify(s)}\n`, 0o644);
}

export function readRunStatus(dir: string): RunStatus | undefined {
  try {
    const v = JSON.parse(readFileSync(join(dir, RUN_STATUS_PATH), 'utf8')) as RunStatus;
    return typeof v === 'object' && v !== null && v.schema === 1 ? v : undefined;
  } catch {
    return undefined;
  }
}
