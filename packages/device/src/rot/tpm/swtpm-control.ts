// swtpm's control channel (`--ctrl type=tcp,port=C`): the out-of-band commands a platform sends
// to its TPM, such as power-on initialization. A request is a UINT32 command code (the
// PTM_* ioctl numbers of swtpm's tpm_ioctl.h) and its fixed-size payload; the response starts
// with a UINT32 result, 0 for success. Used by tests and the simulator to cut a device's power.

import net from 'node:net';
import { HeptadError } from '@heptad/protocol';

/** Control commands used here (swtpm tpm_ioctl.h: CMD_GET_CAPABILITY = 1, CMD_INIT = 2, …). */
export const SWTPM_CTRL_CMD = { GET_CAPABILITY: 1, INIT: 2 } as const;
/** ptm_init flag: drop the volatile state saved by a previous orderly shutdown. */
export const SWTPM_INIT_DELETE_VOLATILE = 1;

export interface SwtpmControlAddress {
  readonly host: string;
  /** The control port, not the data port. */
  readonly port: number;
  readonly timeoutMs?: number;
}

const DEFAULT_CONTROL_TIMEOUT_MS = 10_000;

/**
 * Simulates a power cycle: CMD_INIT terminates the TPM and initializes it again, as a platform
 * reset does. Every PCR, loaded object and session is gone afterwards; persistent state (seeds,
 * NV, persistent handles) stays. The next client must send TPM2_Startup(CLEAR) (Part 3 §9.3),
 * as a platform's firmware would.
 */
export async function swtpmPowerCycle(address: SwtpmControlAddress, initFlags = 0): Promise<void> {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(initFlags);
  const result = await swtpmControl(address, SWTPM_CTRL_CMD.INIT, payload, 4);
  const rc = result.readUInt32BE(0);
  if (rc !== 0) {
    throw new HeptadError('TPM_COMMAND_FAILED', `swtpm CMD_INIT failed: result 0x${rc.toString(16)}`, {
      detail: { rc },
    });
  }
}

/** Sends one control command and reads a response of `responseSize` bytes. */
export function swtpmControl(
  address: SwtpmControlAddress,
  command: number,
  payload: Buffer,
  responseSize: number,
): Promise<Buffer> {
  const where = `swtpm control ${address.host}:${address.port}`;
  const timeoutMs = address.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS;
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const socket = net.connect({ host: address.host, port: address.port });
    const done = (error: Error | undefined, response?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else if (response) resolve(response);
    };
    const timer = setTimeout(
      () => done(new HeptadError('TPM_TRANSPORT_FAILED', `${where}: no response within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('connect', () => {
      const header = Buffer.alloc(4);
      header.writeUInt32BE(command);
      socket.write(Buffer.concat([header, payload]));
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= responseSize) done(undefined, Buffer.concat(chunks).subarray(0, responseSize));
    });
    socket.on('error', (e) =>
      done(new HeptadError('TPM_TRANSPORT_FAILED', `${where}: ${e.message}`, { cause: e })),
    );
    socket.on('close', () =>
      done(new HeptadError('TPM_TRANSPORT_FAILED', `${where}: closed before the response`)),
    );
  });
}
