import type { RootOfTrust } from './root-of-trust.ts';
import { SoftRootOfTrust } from './soft/soft-root-of-trust.ts';
import type { RotSpec } from './spec.ts';
import { openTpmRootOfTrust } from './tpm/spec.ts';

/** Opens the device's root of trust as its config names it; `secretsDir` holds the soft backend's files. */
export async function openRootOfTrust(spec: RotSpec, secretsDir: string): Promise<RootOfTrust> {
  if (spec.kind === 'soft') return new SoftRootOfTrust(secretsDir);
  return openTpmRootOfTrust(spec);
}
