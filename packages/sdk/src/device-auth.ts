/**
 * The device certificate, for apps whose manifest has `DeviceAuthentication`. The app gets the
 * certificate chain, signatures made by the supervisor, and mutual-TLS connections the supervisor
 * opens with the device key — never the private key itself.
 */
import type { Socket } from 'node:net';
import { call, fromBase64, HeptadAppError, request, toBase64 } from './channel.ts';

export interface DeviceCertificate {
  /** the 24 h device certificate and its issuing CA, PEM */
  readonly chainPem: string;
  readonly notAfter: string;
  readonly deviceId: string;
}

export const deviceAuth = {
  async certificate(): Promise<DeviceCertificate> {
    return call<DeviceCertificate>('deviceAuth.certificate');
  },
  /** ECDSA P-256 / SHA-256 signature (DER) of `data` by the device's TLS key. */
  async sign(data: Uint8Array | string): Promise<Uint8Array> {
    return fromBase64(await call('deviceAuth.sign', { data: toBase64(data) }));
  },
  /**
   * A mutual-TLS connection to host:port (checked against AllowedConnections), made by the
   * supervisor with the device certificate. The returned socket carries the plaintext.
   */
  async connect(
    host: string,
    port: number,
    opts: { ca?: readonly string[]; servername?: string } = {},
  ): Promise<Socket> {
    const { handle } = await request('tls.connect', {
      host,
      port,
      ...(opts.ca ? { ca: opts.ca.join('\n') } : {}),
      ...(opts.servername ? { servername: opts.servername } : {}),
    });
    if (handle === undefined || handle === null)
      throw new HeptadAppError('APP_CONNECT_FAILED', 'no socket came with the answer');
    return handle as Socket;
  },
};
