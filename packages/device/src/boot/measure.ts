/**
 * Measured boot: power-on of the root of trust and the measurement log that must replay to the
 * register (DESIGN.md flow 3). The log entry is written BEFORE the register is extended, so a
 * power cut between the two leaves one entry too many, never one too few; reconcile() drops it.
 */
import { type MeasurementEntry, replayMeasurements } from '@heptad/protocol';
import type { RootOfTrust } from '../rot/root-of-trust.ts';
import { SoftRootOfTrust } from '../rot/soft/soft-root-of-trust.ts';
import type { RotSpec } from '../rot/spec.ts';
import { swtpmPowerCycle } from '../rot/tpm/swtpm-control.ts';

/** How the registers started this boot: reset by a power cycle, or carried over from earlier boots. */
export type PowerOn = 'reset' | 'carried-over';

/**
 * What a board does at power-on, for the roots of trust that can be told: the soft backend's
 * registers go back to zero, and a TCP TPM (swtpm, the simulator: control port = data port + 1)
 * is power-cycled. A TPM chip (/dev/tpm*) is reset only by the machine itself; its registers are
 * carried over and reconcile() keeps the log that matches them.
 */
export async function powerOn(spec: RotSpec, secretsDir: string): Promise<PowerOn> {
  if (spec.kind === 'soft') {
    new SoftRootOfTrust(secretsDir).reset();
    return 'reset';
  }
  if (spec.transport === 'tcp') {
    try {
      await swtpmPowerCycle({ host: spec.host, port: spec.port + 1, timeoutMs: 5_000 });
      return 'reset';
    } catch {
      // Not a simulator with a control channel: treat it like a chip.
      return 'carried-over';
    }
  }
  return 'carried-over';
}

/**
 * The longest prefix of `log` that replays to the register's current value: the entries that
 * really were extended since the register was last reset. Undefined when none does (something
 * else extended the register).
 */
export function reconcile(
  log: readonly MeasurementEntry[],
  register: Buffer,
): MeasurementEntry[] | undefined {
  for (let k = log.length; k >= 0; k--) {
    const prefix = log.slice(0, k);
    if (replayMeasurements(prefix.map((e) => Buffer.from(e.digest, 'hex'))).equals(register)) return prefix;
  }
  return undefined;
}

export interface MeasureOptions {
  readonly rot: RootOfTrust;
  readonly pcr: number;
  readonly readLog: () => MeasurementEntry[];
  readonly writeLog: (log: readonly MeasurementEntry[]) => void;
}

/**
 * Appends `entry` to the log (durably) and then extends the register with its digest. When the
 * existing log cannot be matched to the register (something else extended it), the runtime is
 * still measured — the register then commits to it and to the unknown values — but the log no
 * longer replays, so the device cannot attest until its next reset: `inSync` says which.
 */
export async function measure(
  options: MeasureOptions,
  entry: MeasurementEntry,
): Promise<{ log: MeasurementEntry[]; inSync: boolean }> {
  const { rot, pcr } = options;
  const register = (await rot.readRegisters([pcr])).get(pcr) ?? Buffer.alloc(32);
  let current: MeasurementEntry[];
  try {
    current = options.readLog();
  } catch {
    current = [];
  }
  const kept = reconcile(current, register);
  const log = [...(kept ?? []), entry];
  options.writeLog(log);
  await rot.extend(pcr, Buffer.from(entry.digest, 'hex'));
  return { log, inSync: kept !== undefined };
}
