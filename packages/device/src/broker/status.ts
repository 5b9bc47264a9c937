/**
 * `run/broker.json`: the runtime's broker session as it last changed, for `heptad device status`
 * (`broker: connected|connecting|refused CODE|off`). Informative only: nothing trusts it.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@heptad/protocol';
import { type BrokerSessionState, describeSession } from './session.ts';

export const BROKER_STATUS_PATH = join('run', 'broker.json');

export interface BrokerStatus {
  readonly schema: 1;
  /** connected, connecting, refused 5, off */
  readonly broker: string;
  readonly url: string | null;
  readonly session: BrokerSessionState;
  readonly at: string;
}

export function writeBrokerStatus(dir: string, url: string | null, s: BrokerSessionState, at: Date): void {
  try {
    mkdirSync(join(dir, 'run'), { recursive: true, mode: 0o700 });
    const status: BrokerStatus = {
      schema: 1,
      broker: describeSession(s),
      url,
      session: s,
      at: at.toISOString(),
    };
    writeFileAtomic(join(dir, BROKER_STATUS_PATH), `${JSON.stringify(status)}\n`, 0o644);
  } catch {
    // informative only
  }
}

export function readBrokerStatus(dir: string): BrokerStatus | undefined {
  try {
    const v = JSON.parse(readFileSync(join(dir, BROKER_STATUS_PATH), 'utf8')) as BrokerStatus;
    return typeof v === 'object' && v !== null && v.schema === 1 ? v : undefined;
  } catch {
    return undefined;
  }
}
