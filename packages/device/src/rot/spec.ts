import { HeptadError } from '@heptad/protocol';

/** Where a device's root of trust is: `soft`, `tpm:HOST:PORT` (swtpm), `tpm:/dev/tpmrm0` (a chip). */
export type RotSpec =
  | { readonly kind: 'soft' }
  | { readonly kind: 'tpm'; readonly transport: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'tpm'; readonly transport: 'device'; readonly path: string };

export const DEFAULT_TPM_DEVICE = '/dev/tpmrm0';

export function parseRotSpec(s: string): RotSpec {
  if (s === 'soft') return { kind: 'soft' };
  if (s === 'tpm') return { kind: 'tpm', transport: 'device', path: DEFAULT_TPM_DEVICE };
  if (s.startsWith('tpm:/')) {
    const path = s.slice(4);
    if (!/^\/dev\/[A-Za-z0-9_-]+$/.test(path))
      throw new HeptadError('DEVICE_ROT_SPEC_INVALID', `"${path}" is not a device path`);
    return { kind: 'tpm', transport: 'device', path };
  }
  const m = /^tpm:(?:\[([0-9a-fA-F:]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new HeptadError('DEVICE_ROT_SPEC_INVALID', `"${s}" is not soft, tpm:HOST:PORT or tpm:/dev/NAME`);
  }
  return { kind: 'tpm', transport: 'tcp', host, port };
}

export function formatRotSpec(r: RotSpec): string {
  if (r.kind === 'soft') return 'soft';
  return r.transport === 'tcp'
    ? `tpm:${r.host.includes(':') ? `[${r.host}]` : r.host}:${r.port}`
    : `tpm:${r.path}`;
}
