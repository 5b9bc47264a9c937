// How TPM command bytes reach a TPM: swtpm's TCP data socket or a character device
// (/dev/tpmrm0, the kernel's resource-managed TPM). Both sit behind TpmTransport, which takes one
// marshalled command and returns the whole response. A TPM handles one command at a time, and on
// a stream socket a second command sent early would interleave responses, so each transport runs
// its commands strictly one after another.

import { type FileHandle, open } from 'node:fs/promises';
import net from 'node:net';
import { HeptadError } from '@heptad/protocol';

export interface TpmTransport {
  /** Sends one marshalled command and resolves with the complete response. Serialized. */
  transmit(command: Buffer): Promise<Buffer>;
  /** Closes the connection or device. Safe to call more than once. */
  close(): Promise<void>;
}

/** A response header is tag (2) + responseSize (4) + responseCode (4). */
export const RESPONSE_HEADER_SIZE = 10;
/** Larger than any TPM 2.0 response (MAX_RESPONSE_SIZE is 4096 on common TPMs). */
export const MAX_RESPONSE_SIZE = 64 * 1024;
/** Time for one command, connection included. RSA key generation on a slow chip takes seconds. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

export interface TransportOptions {
  readonly timeoutMs?: number;
}

/** Runs async tasks one at a time, in call order; a failed task does not stop the next. */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task, task);
    this.#tail = result.catch(() => {});
    return result;
  }
}

function transportFailed(message: string, cause?: unknown): HeptadError {
  return new HeptadError('TPM_TRANSPORT_FAILED', message, cause === undefined ? {} : { cause });
}

/** The responseSize field of a response header, checked against the sane range. */
function responseSize(header: Buffer, where: string): number {
  const size = header.readUInt32BE(2);
  if (size < RESPONSE_HEADER_SIZE || size > MAX_RESPONSE_SIZE) {
    throw transportFailed(`${where}: response size ${size} is not a TPM response`);
  }
  return size;
}

/**
 * swtpm's data socket (`swtpm socket --server type=tcp,port=P`): raw command bytes in, raw
 * response bytes out, on one connection kept open between commands and opened again after it
 * drops. swtpm serves one connection at a time: while this transport is open, another client of
 * the same swtpm waits.
 */
export class SocketTransport implements TpmTransport {
  readonly #host: string;
  readonly #port: number;
  readonly #timeoutMs: number;
  readonly #queue = new SerialQueue();
  #socket: net.Socket | undefined;
  #closed = false;

  constructor(host: string, port: number, options: TransportOptions = {}) {
    this.#host = host;
    this.#port = port;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  }

  get where(): string {
    return `swtpm ${this.#host}:${this.#port}`;
  }

  transmit(command: Buffer): Promise<Buffer> {
    return this.#queue.run(() => this.#transmit(command));
  }

  #transmit(command: Buffer): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new HeptadError('ROT_CLOSED', `${this.where}: transport closed`));
    return new Promise<Buffer>((resolve, reject) => {
      const socket = this.#socket ?? this.#connect();
      const chunks: Buffer[] = [];
      let received = 0;
      let expected = 0;
      const finish = (error: HeptadError | undefined, response?: Buffer) => {
        clearTimeout(timer);
        socket.off('data', onData).off('close', onClose).off('error', onError);
        if (error) {
          // After a timeout or a framing error the stream is out of step: start afresh next time.
          this.#drop(socket);
          reject(error);
        } else if (response) resolve(response);
      };
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        try {
          if (expected === 0 && received >= RESPONSE_HEADER_SIZE) {
            expected = responseSize(Buffer.concat(chunks), this.where);
          }
        } catch (e) {
          finish(e as HeptadError);
          return;
        }
        if (expected > 0 && received > expected) {
          finish(transportFailed(`${this.where}: ${received - expected} bytes after the response`));
        } else if (expected > 0 && received === expected) {
          finish(undefined, Buffer.concat(chunks, received));
        }
      };
      const onClose = () => finish(transportFailed(`${this.where}: connection closed before the response`));
      const onError = (e: Error) => finish(transportFailed(`${this.where}: ${e.message}`, e));
      const timer = setTimeout(
        () => finish(transportFailed(`${this.where}: no response within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      socket.on('data', onData).on('close', onClose).on('error', onError);
      socket.write(command);
    });
  }

  #connect(): net.Socket {
    const socket = net.connect({ host: this.#host, port: this.#port });
    socket.setNoDelay(true);
    // Between commands nobody listens; keep an error then from becoming an uncaught exception.
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.#socket === socket) this.#socket = undefined;
    });
    this.#socket = socket;
    return socket;
  }

  #drop(socket: net.Socket): void {
    if (this.#socket === socket) this.#socket = undefined;
    socket.destroy();
  }

  /** Lets commands already queued finish, then closes the connection. */
  close(): Promise<void> {
    return this.#queue.run(async () => {
      this.#closed = true;
      const socket = this.#socket;
      this.#socket = undefined;
      if (!socket || socket.destroyed) return;
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.end();
        // A peer that never closes its side must not hold us up.
        setTimeout(() => socket.destroy(), 1000).unref();
      });
    });
  }
}

/**
 * A TPM character device. /dev/tpmrm0 (kernel resource manager) is the one to use: it swaps
 * transient objects and sessions per open file, so this process's handles never collide with
 * another's. The kernel protocol is: write the whole command, then one read returns the whole
 * response.
 */
export class DeviceTransport implements TpmTransport {
  readonly #path: string;
  readonly #timeoutMs: number;
  readonly #queue = new SerialQueue();
  #file: FileHandle | undefined;
  #closed = false;

  constructor(path: string, options: TransportOptions = {}) {
    this.#path = path;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  }

  transmit(command: Buffer): Promise<Buffer> {
    return this.#queue.run(() => this.#withTimeout(this.#transmit(command)));
  }

  async #transmit(command: Buffer): Promise<Buffer> {
    if (this.#closed) throw new HeptadError('ROT_CLOSED', `${this.#path}: transport closed`);
    try {
      this.#file ??= await open(this.#path, 'r+');
    } catch (cause) {
      throw transportFailed(`${this.#path}: cannot open the TPM device`, cause);
    }
    const file = this.#file;
    try {
      const { bytesWritten } = await file.write(command, 0, command.length, null);
      if (bytesWritten !== command.length) throw new Error(`short write (${bytesWritten} bytes)`);
      const buf = Buffer.alloc(MAX_RESPONSE_SIZE);
      let received = 0;
      let expected = 0;
      while (expected === 0 || received < expected) {
        const { bytesRead } = await file.read(buf, received, buf.length - received, null);
        if (bytesRead === 0) throw new Error('end of file before the whole response');
        received += bytesRead;
        if (expected === 0 && received >= RESPONSE_HEADER_SIZE) {
          expected = responseSize(buf.subarray(0, RESPONSE_HEADER_SIZE), this.#path);
        }
      }
      if (received !== expected) throw new Error(`${received - expected} bytes after the response`);
      return Buffer.from(buf.subarray(0, received));
    } catch (cause) {
      if (cause instanceof HeptadError) throw cause;
      throw transportFailed(`${this.#path}: ${(cause as Error).message}`, cause);
    }
  }

  #withTimeout<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // The read cannot be cancelled; closing the file makes the device drop the command.
        const file = this.#file;
        this.#file = undefined;
        file?.close().catch(() => {});
        reject(transportFailed(`${this.#path}: no response within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  /** Lets commands already queued finish, then closes the device. */
  close(): Promise<void> {
    return this.#queue.run(async () => {
      this.#closed = true;
      const file = this.#file;
      this.#file = undefined;
      await file?.close();
    });
  }
}
