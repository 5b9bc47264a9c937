// The `--rot tpm:…` spec: which TPM the device uses.
//   tpm:/dev/tpmrm0        a TPM character device (absolute path)
//   tpm:HOST:PORT          swtpm's TCP data socket, e.g. tpm:127.0.0.1:2321
//   tpm:[IPV6]:PORT        the same with an IPv6 address

import { HeptadError } from '@heptad/protocol';
import type { TpmClientOptions } from './client.ts';
import { createTpmRootOfTrust, type TpmRootOfTrust } from './tpm-root-of-trust.ts';
import { DeviceTransport, SocketTransport, type TpmTransport, type TransportOptions } from './transport.ts';

/** The same shape as the `tpm` members of ../spec.ts RotSpec, so either parser's result fits. */
export type TpmRotSpec =
  | { readonly kind: 'tpm'; readonly transport: 'device'; readonly path: string }
  | { readonly kind: 'tpm'; readonly transport: 'tcp'; readonly host: string; readonly port: number };

const PREFIX = 'tpm:';
const HOST_PORT = /^([A-Za-z0-9.-]+):(\d{1,5})$/;
const IPV6_PORT = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/;

/** Parses a `tpm:…` root-of-trust spec; anything else is DEVICE_ROT_SPEC_INVALID. */
export function parseTpmRotSpec(spec: string): TpmRotSpec {
  const invalid = (why: string) =>
    new HeptadError('DEVICE_ROT_SPEC_INVALID', `"${spec}": ${why}`, {
      fields: [{ field: '--rot', problem: why }],
    });
  if (!spec.startsWith(PREFIX)) throw invalid('a TPM spec starts with "tpm:"');
  const rest = spec.slice(PREFIX.length);
  if (rest.startsWith('/')) {
    if (rest.includes('\0') || rest.endsWith('/')) throw invalid('not a device path');
    return { kind: 'tpm', transport: 'device', path: rest };
  }
  const m = HOST_PORT.exec(rest) ?? IPV6_PORT.exec(rest);
  if (!m?.[1] || !m[2]) throw invalid('expected tpm:/dev/tpmrm0 or tpm:HOST:PORT');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw invalid(`port ${m[2]} is not 1-65535`);
  return { kind: 'tpm', transport: 'tcp', host: m[1], port };
}

export function openTpmTransport(spec: TpmRotSpec, options: TransportOptions = {}): TpmTransport {
  return spec.transport === 'device'
    ? new DeviceTransport(spec.path, options)
    : new SocketTransport(spec.host, spec.port, options);
}

/** Parses `spec`, opens its transport and the root of trust on it. */
export function openTpmRootOfTrust(
  spec: string | TpmRotSpec,
  options: TransportOptions & TpmClientOptions = {},
): Promise<TpmRootOfTrust> {
  const parsed = typeof spec === 'string' ? parseTpmRotSpec(spec) : spec;
  return createTpmRootOfTrust({ ...options, transport: openTpmTransport(parsed, options) });
}
