/**
 * Network through the supervisor. The app has no network of its own (on a root device its
 * compartment has an empty network namespace): it asks for host:port, the supervisor checks
 * `AllowedConnections`, resolves the name itself, connects to the address it resolved and hands
 * the connected socket over. `fetch` speaks HTTP/1.1 (and TLS, verified by the app) over it.
 */
import type { Server, Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { HeptadAppError, request } from './channel.ts';
import { deviceAuth } from './device-auth.ts';

export interface Connection {
  readonly socket: Socket;
  /** the address the supervisor resolved and connected to */
  readonly address: string;
}

export const net = {
  /** A connected TCP socket to host:port, if the manifest allows it (APP_CAPABILITY_DENIED otherwise). */
  async connect(host: string, port: number): Promise<Socket> {
    return (await this.connectWithAddress(host, port)).socket;
  },
  async connectWithAddress(host: string, port: number): Promise<Connection> {
    const { value, handle } = await request<{ address: string }>('net.connect', { host, port });
    if (handle === undefined || handle === null)
      throw new HeptadAppError('APP_CONNECT_FAILED', 'no socket came with the answer');
    return { socket: handle as Socket, address: value.address };
  },
  /** A listening TCP server on one of the manifest's `AllowedTcpServerPorts`. */
  async listen(port: number, onConnection?: (socket: Socket) => void): Promise<Server> {
    const { handle } = await request('net.listen', { port });
    if (handle === undefined || handle === null)
      throw new HeptadAppError('APP_CONNECT_FAILED', 'no server came with the answer');
    const server = handle as Server;
    if (onConnection) server.on('connection', onConnection);
    return server;
  },
};

export interface FetchInit {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string | Uint8Array;
  /** CA certificates (PEM) the server's certificate must chain to; default: Node's bundled roots */
  readonly ca?: string | readonly string[];
  /** present the device certificate (mutual TLS, done by the supervisor; needs DeviceAuthentication) */
  readonly deviceAuth?: boolean;
  /** give up after this many ms (default 30000) */
  readonly timeoutMs?: number;
}

const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/**
 * A small `fetch` over a brokered connection. `https:` is verified against `ca` (or Node's roots)
 * and the URL's host name. With `deviceAuth: true` the supervisor makes the TLS connection with
 * the device certificate (the key never enters the app) and the app talks HTTP over it.
 */
export async function fetch(url: string | URL, init: FetchInit = {}): Promise<Response> {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new HeptadAppError('APP_REQUEST_INVALID', `fetch supports http: and https:, not ${u.protocol}`);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const ca = init.ca === undefined ? undefined : typeof init.ca === 'string' ? [init.ca] : [...init.ca];
  let socket: Socket | TLSSocket;
  if (init.deviceAuth === true) {
    if (u.protocol !== 'https:') throw new HeptadAppError('APP_REQUEST_INVALID', 'deviceAuth needs https:');
    socket = await deviceAuth.connect(host, port, ca === undefined ? {} : { ca });
  } else {
    const raw = await net.connect(host, port);
    if (u.protocol === 'https:') {
      const isIp = /^[\d.]+$/.test(host) || host.includes(':');
      // An IP literal cannot be an SNI name, but the certificate must still match it (host).
      socket = tlsConnect({
        socket: raw,
        host,
        ...(isIp ? {} : { servername: host }),
        ...(ca ? { ca } : {}),
      });
      await new Promise<void>((resolve, reject) => {
        (socket as TLSSocket).once('secureConnect', resolve);
        socket.once('error', reject);
      });
    } else socket = raw;
  }
  const { request: httpRequest } = await import('node:http');
  const body = init.body === undefined ? undefined : Buffer.from(init.body);
  return await new Promise<Response>((resolve, reject) => {
    const req = httpRequest(
      {
        host,
        port,
        path: `${u.pathname}${u.search}`,
        method: init.method ?? 'GET',
        headers: {
          host: u.host,
          ...(body ? { 'content-length': String(body.length) } : {}),
          ...init.headers,
        },
        createConnection: () => socket,
        timeout: init.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES)
            req.destroy(new HeptadAppError('APP_REQUEST_INVALID', 'response too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          socket.destroy();
          const status = res.statusCode ?? 0;
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers))
            if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
          const noBody = status === 204 || status === 304 || (status >= 100 && status < 200);
          resolve(
            new Response(noBody ? null : Buffer.concat(chunks), {
              status,
              statusText: res.statusMessage ?? '',
              headers,
            }),
          );
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new HeptadAppError('APP_CONNECT_FAILED', 'timed out')));
    req.on('error', reject);
    req.end(body);
  });
}
