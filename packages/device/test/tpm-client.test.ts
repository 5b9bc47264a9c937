// The TPM command client and its transports, without a TPM: command framing byte for byte,
// response-code decoding, the retry policy for TPM_RC_RETRY/_YIELDED/_TESTING, one command in
// flight per transport, and transport failures (refused connection, silence, bad framing).
// The same client against a real swtpm is in tpm-root-of-trust.test.ts.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { type ErrorCode, HeptadError } from '@heptad/protocol';
import {
  DeviceTransport,
  decodeResponseCode,
  parseTpmRotSpec,
  SerialQueue,
  SocketTransport,
  TPM_RC,
  TpmClient,
  type TpmTransport,
} from '../src/index.ts';

const hex = (s: string) => Buffer.from(s, 'hex');

/** A response header: tag, size, rc, then `body`. */
function response(rc: number, body: Buffer = Buffer.alloc(0), tag = 0x8001): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt16BE(tag, 0);
  b.writeUInt32BE(10 + body.length, 2);
  b.writeUInt32BE(rc, 6);
  return Buffer.concat([b, body]);
}

/** A transport answering from a script, recording every command. */
class ScriptedTransport implements TpmTransport {
  readonly sent: Buffer[] = [];
  readonly #answers: Buffer[];
  constructor(answers: Buffer[]) {
    this.#answers = answers;
  }
  async transmit(command: Buffer): Promise<Buffer> {
    this.sent.push(command);
    const next = this.#answers.shift();
    if (!next) throw new Error('no scripted answer left');
    return next;
  }
  async close(): Promise<void> {}
}

async function assertRejectsCode(p: Promise<unknown>, code: ErrorCode): Promise<HeptadError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => {
    caught = e;
    assert.ok(e instanceof HeptadError, `expected a HeptadError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
  return caught as HeptadError;
}

const noSleep = { sleep: async () => {} };

describe('command framing', () => {
  test('TPM2_Startup(CLEAR) is tag 0x8001, size 12, cc 0x144, SU_CLEAR', async () => {
    const t = new ScriptedTransport([response(0)]);
    assert.equal(await new TpmClient(t).startup(), true);
    assert.equal(t.sent[0]?.toString('hex'), '80010000000c000001440000');
  });

  test('TPM2_Startup tolerates TPM_RC_INITIALIZE (already started)', async () => {
    const t = new ScriptedTransport([response(TPM_RC.INITIALIZE)]);
    assert.equal(await new TpmClient(t).startup(), false);
  });

  test('TPM2_Quote carries the key handle, one empty password session, the nonce, a NULL scheme and the selection', async () => {
    const attest = hex('ff544347');
    const signature = hex('0010');
    const params = Buffer.concat([hex('0004'), attest, signature]);
    const size = Buffer.alloc(4);
    size.writeUInt32BE(params.length);
    const auth = hex('0000010000'); // nonceTPM empty, attributes continueSession, hmac empty
    const t = new ScriptedTransport([response(0, Buffer.concat([size, params, auth]), 0x8002)]);
    const q = await new TpmClient(t).quote(0x80000001, hex('abcd'), [16, 0]);
    assert.deepEqual(q, { attest, signature });
    assert.equal(
      t.sent[0]?.toString('hex'),
      [
        '8002',
        '0000002b',
        '00000158', // tag, size 43, TPM_CC_Quote
        '80000001', // signHandle
        '00000009',
        '40000009',
        '0000',
        '00',
        '0000', // auth area: TPM_RS_PW, no nonce, no attrs, empty password
        '0002abcd', // qualifyingData
        '0010', // inScheme TPM_ALG_NULL
        '00000001',
        '000b',
        '03',
        '010001', // TPML_PCR_SELECTION: sha256, PCRs 0 and 16
      ].join(''),
    );
  });

  test('TPM2_PCR_Extend sends one sha256 TPMT_HA for the PCR handle', async () => {
    const t = new ScriptedTransport([response(0, hex('000000000000010000'), 0x8002)]);
    await new TpmClient(t).pcrExtend(16, Buffer.alloc(32, 0xee));
    assert.equal(
      t.sent[0]?.toString('hex'),
      [
        '8002',
        '00000041',
        '00000182', // tag, size 65, TPM_CC_PCR_Extend
        '00000010', // pcrHandle 16
        '00000009',
        '40000009',
        '0000',
        '00',
        '0000', // empty password session
        '00000001',
        '000b',
        'ee'.repeat(32), // TPML_DIGEST_VALUES: one sha256 digest
      ].join(''),
    );
  });
});

describe('response codes', () => {
  const names: [number, string][] = [
    [0x922, 'TPM_RC_RETRY'],
    [0x908, 'TPM_RC_YIELDED'],
    [0x90a, 'TPM_RC_TESTING'],
    [0x902, 'TPM_RC_OBJECT_MEMORY'],
    [0x921, 'TPM_RC_LOCKOUT'],
    [0x100, 'TPM_RC_INITIALIZE'],
    [0x101, 'TPM_RC_FAILURE'],
    [0x98e, 'TPM_RC_AUTH_FAIL (session 1)'],
    [0x18b, 'TPM_RC_HANDLE (handle 1)'],
    [0x1c4, 'TPM_RC_VALUE (parameter 1)'],
    [0x2d5, 'TPM_RC_SIZE (parameter 2)'],
    [0x9a2, 'TPM_RC_BAD_AUTH (session 1)'],
  ];
  for (const [rc, name] of names) {
    test(`0x${rc.toString(16)} decodes as ${name}`, () => assert.equal(decodeResponseCode(rc).name, name));
  }

  test('a failed command is TPM_COMMAND_FAILED with the rc and its base code in the detail', async () => {
    const t = new ScriptedTransport([response(0x18b)]);
    const e = await assertRejectsCode(new TpmClient(t).flushContext(0x80000000), 'TPM_COMMAND_FAILED');
    assert.equal(e.detail['rc'], 0x18b);
    assert.equal(e.detail['base'], 0x08b);
    assert.equal(e.detail['command'], 'TPM2_FlushContext');
    assert.equal(t.sent.length, 1, 'not retried');
  });
});

describe('retries', () => {
  for (const rc of [0x922, 0x908, 0x90a]) {
    test(`a command answered with 0x${rc.toString(16)} is sent again and then succeeds`, async () => {
      const delays: number[] = [];
      const t = new ScriptedTransport([response(rc), response(rc), response(0)]);
      const client = new TpmClient(t, { retryDelayMs: 10, sleep: async (ms) => void delays.push(ms) });
      await client.startup();
      assert.equal(t.sent.length, 3);
      assert.deepEqual(delays, [10, 20]);
    });
  }

  test('gives up after the configured retries with TPM_COMMAND_FAILED', async () => {
    const t = new ScriptedTransport(Array.from({ length: 4 }, () => response(0x922)));
    const e = await assertRejectsCode(
      new TpmClient(t, { ...noSleep, retries: 3 }).startup(),
      'TPM_COMMAND_FAILED',
    );
    assert.equal(e.detail['rc'], 0x922);
    assert.equal(t.sent.length, 4);
  });
});

describe('malformed responses', () => {
  test('TPM_STRUCTURE_INVALID/a responseSize that is not the length', async () => {
    const bad = response(0);
    bad.writeUInt32BE(11, 2);
    await assertRejectsCode(new TpmClient(new ScriptedTransport([bad])).startup(), 'TPM_STRUCTURE_INVALID');
  });

  test('TPM_STRUCTURE_INVALID/a session response to a command sent without sessions', async () => {
    const t = new ScriptedTransport([response(0, Buffer.alloc(0), 0x8002)]);
    await assertRejectsCode(new TpmClient(t).startup(), 'TPM_STRUCTURE_INVALID');
  });

  test('TPM_STRUCTURE_INVALID/a quote response cut short', async () => {
    const t = new ScriptedTransport([response(0, hex('0000000a0004ff'), 0x8002)]);
    await assertRejectsCode(
      new TpmClient(t).quote(0x80000001, Buffer.alloc(0), [0]),
      'TPM_STRUCTURE_INVALID',
    );
  });
});

describe('SerialQueue', () => {
  test('runs one task at a time in call order, and a failure does not stop the next', async () => {
    const q = new SerialQueue();
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const task = (i: number) => async () => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 2));
      order.push(i);
      running--;
      if (i === 3) throw new Error('boom');
      return i;
    };
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => q.run(task(i))));
    assert.equal(most, 1);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(results.filter((r) => r.status === 'rejected').length, 1);
  });
});

/** A loopback server standing in for swtpm's data socket; `onCommand` answers each command. */
async function fakeTpmServer(
  onCommand: (command: Buffer, socket: net.Socket) => void,
): Promise<{ port: number; close(): Promise<void>; connections: () => number }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 6 && buf.length >= buf.readUInt32BE(2)) {
        const size = buf.readUInt32BE(2);
        onCommand(buf.subarray(0, size), socket);
        buf = buf.subarray(size);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('SocketTransport', () => {
  const servers: { close(): Promise<void> }[] = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  test('reassembles a response that arrives in pieces', async () => {
    const server = await fakeTpmServer((_, socket) => {
      const r = response(0, Buffer.alloc(100, 7));
      socket.write(r.subarray(0, 3));
      setTimeout(() => socket.write(r.subarray(3, 50)), 5);
      setTimeout(() => socket.write(r.subarray(50)), 10);
    });
    servers.push(server);
    const t = new SocketTransport('127.0.0.1', server.port);
    const r = await t.transmit(hex('80010000000c000001440000'));
    assert.equal(r.length, 110);
    await t.close();
  });

  test('keeps one command in flight: concurrent commands never overlap on the socket', async () => {
    let busy = false;
    let overlapped = false;
    const server = await fakeTpmServer((command, socket) => {
      if (busy) overlapped = true;
      busy = true;
      setTimeout(() => {
        busy = false;
        socket.write(response(0, command.subarray(10)));
      }, 2);
    });
    servers.push(server);
    const t = new SocketTransport('127.0.0.1', server.port);
    const commands = Array.from({ length: 20 }, (_, i) =>
      Buffer.concat([hex('80010000000e00000144'), Buffer.of(0, 0, 0, i)]),
    );
    const responses = await Promise.all(commands.map((c) => t.transmit(c)));
    assert.equal(overlapped, false);
    for (const [i, r] of responses.entries())
      assert.equal(r.readUInt32BE(10), i, 'each response matches its command');
    assert.equal(server.connections(), 1);
    await t.close();
  });

  test('connects again after the TPM side closed the connection', async () => {
    let first = true;
    const server = await fakeTpmServer((_, socket) => {
      socket.write(response(0));
      if (first) socket.end();
      first = false;
    });
    servers.push(server);
    const t = new SocketTransport('127.0.0.1', server.port);
    await t.transmit(hex('80010000000c000001440000'));
    await new Promise((r) => setTimeout(r, 20));
    await t.transmit(hex('80010000000c000001440000'));
    assert.equal(server.connections(), 2);
    await t.close();
  });

  test('TPM_TRANSPORT_FAILED/nothing listens on the port', async () => {
    const server = await fakeTpmServer(() => {});
    const port = server.port;
    await server.close();
    const t = new SocketTransport('127.0.0.1', port);
    await assertRejectsCode(t.transmit(hex('80010000000c000001440000')), 'TPM_TRANSPORT_FAILED');
    await t.close();
  });

  test('TPM_TRANSPORT_FAILED/no answer within the timeout', async () => {
    const server = await fakeTpmServer(() => {});
    servers.push(server);
    const t = new SocketTransport('127.0.0.1', server.port, { timeoutMs: 100 });
    await assertRejectsCode(t.transmit(hex('80010000000c000001440000')), 'TPM_TRANSPORT_FAILED');
    await t.close();
  });

  test('TPM_TRANSPORT_FAILED/a response size field below the header size', async () => {
    const server = await fakeTpmServer((_, socket) => socket.write(hex('80010000000500000000')));
    servers.push(server);
    const t = new SocketTransport('127.0.0.1', server.port);
    await assertRejectsCode(t.transmit(hex('80010000000c000001440000')), 'TPM_TRANSPORT_FAILED');
    await t.close();
  });

  test('TPM_TRANSPORT_FAILED/bytes after the response', async () => {
    const server = await fakeTpmServer((_, socket) => socket.write(Buffer.concat([response(0), hex('00')])));
    servers.push(server);
    const t = new SocketTransport('127.0.0.1', server.port);
    await assertRejectsCode(t.transmit(hex('80010000000c000001440000')), 'TPM_TRANSPORT_FAILED');
    await t.close();
  });

  test('ROT_CLOSED/a command after close()', async () => {
    const t = new SocketTransport('127.0.0.1', 1);
    await t.close();
    await t.close();
    await assertRejectsCode(t.transmit(hex('80010000000c000001440000')), 'ROT_CLOSED');
  });
});

describe('DeviceTransport', () => {
  test('TPM_TRANSPORT_FAILED/the device does not exist', async () => {
    const t = new DeviceTransport('/dev/heptad-no-such-tpm');
    await assertRejectsCode(t.transmit(hex('80010000000c000001440000')), 'TPM_TRANSPORT_FAILED');
    await t.close();
  });
});

describe('parseTpmRotSpec', () => {
  const good: [string, unknown][] = [
    ['tpm:/dev/tpmrm0', { kind: 'tpm', transport: 'device', path: '/dev/tpmrm0' }],
    ['tpm:127.0.0.1:2321', { kind: 'tpm', transport: 'tcp', host: '127.0.0.1', port: 2321 }],
    ['tpm:localhost:65535', { kind: 'tpm', transport: 'tcp', host: 'localhost', port: 65535 }],
    ['tpm:[::1]:2321', { kind: 'tpm', transport: 'tcp', host: '::1', port: 2321 }],
  ];
  for (const [spec, parsed] of good) {
    test(`parses ${spec}`, () => assert.deepEqual(parseTpmRotSpec(spec), parsed));
  }
  for (const spec of [
    'soft',
    'tpm',
    'tpm:',
    'tpm:host',
    'tpm:host:0',
    'tpm:host:65536',
    'tpm:host:12a',
    'tpm::2321',
    'tpm:dev/tpmrm0',
    'tpm:/dev/',
    'TPM:/dev/tpm0',
    'tpm:a b:1',
  ]) {
    test(`DEVICE_ROT_SPEC_INVALID/${JSON.stringify(spec)}`, () => {
      assert.throws(
        () => parseTpmRotSpec(spec),
        (e: unknown) => e instanceof HeptadError && e.code === 'DEVICE_ROT_SPEC_INVALID',
      );
    });
  }
});
