// TpmRootOfTrust against a real swtpm (test/support/swtpm.ts): the identity key survives client
// restarts and power cycles (same SPKI, so the same device id), PCRs follow the extend rule and
// are cleared by a power cycle, quotes pass the protocol verifier, signatures pass node:crypto,
// and the restricted identity key cannot be made to sign something that looks like a quote.
// Skips only when swtpm is missing and HEPTAD_REQUIRE_SWTPM is not set.

import assert from 'node:assert/strict';
import { createHash, verify } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  decodeSignature,
  decodeTpm2bPublic,
  deviceIdOf,
  type ErrorCode,
  extendPcrValue,
  HeptadError,
  TPM_ALG,
  TPMA_OBJECT,
  toDerSignature,
  verifyQuote,
} from '@heptad/protocol';
import { startSwtpm, swtpmSkipReason, type TestSwtpm } from '../../../test/support/swtpm.ts';
import {
  createTpmRootOfTrust,
  IDENTITY_KEY_ATTRIBUTES,
  isTpmCommandFailure,
  openTpmRootOfTrust,
  SocketTransport,
  STORAGE_KEY_TEMPLATE,
  swtpmPowerCycle,
  TPM_RC,
  TPM_RH,
  TpmClient,
  type TpmRootOfTrust,
} from '../src/index.ts';

const ZERO = Buffer.alloc(32);
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest();

async function assertRejectsCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HeptadError, `expected a HeptadError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

describe('TpmRootOfTrust on swtpm', { skip: swtpmSkipReason() ?? false }, () => {
  let tpm: TestSwtpm;
  const open = () => openTpmRootOfTrust(`tpm:${tpm.host}:${tpm.port}`);
  /** Opens a root of trust, runs `fn`, closes it whatever happens. */
  async function withRot<T>(fn: (rot: TpmRootOfTrust) => Promise<T>): Promise<T> {
    const rot = await open();
    try {
      return await fn(rot);
    } finally {
      await rot.close();
    }
  }

  before(async () => {
    tpm = await startSwtpm();
  });
  after(async () => {
    await tpm?.stop();
  });

  test('the identity key is the same across client restarts and power cycles (same device id)', async () => {
    const first = await withRot(async (rot) => ({
      id: deviceIdOf(await rot.identityPublicKey()),
      material: await rot.identityKeyMaterial(),
    }));
    assert.equal(await withRot(async (rot) => deviceIdOf(await rot.identityPublicKey())), first.id);
    await tpm.powerCycle();
    const afterCycle = await withRot(async (rot) => ({
      id: deviceIdOf(await rot.identityPublicKey()),
      material: await rot.identityKeyMaterial(),
    }));
    assert.equal(afterCycle.id, first.id);
    assert.deepEqual(afterCycle.material, first.material);
  });

  test('identity key material is the TPM2B_PUBLIC of a restricted ECDSA-SHA256 P-256 key and its name', async () => {
    await withRot(async (rot) => {
      const material = await rot.identityKeyMaterial();
      assert.deepEqual(Object.keys(material).sort(), ['name', 'tpmPublic']);
      const decoded = decodeTpm2bPublic(Buffer.from(material['tpmPublic'] ?? '', 'base64'));
      assert.equal(decoded.name.toString('hex'), material['name']);
      assert.equal(deviceIdOf(decoded.publicKey), deviceIdOf(await rot.identityPublicKey()));
      assert.equal(decoded.area.objectAttributes, IDENTITY_KEY_ATTRIBUTES);
      assert.deepEqual(decoded.area.scheme, { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 });
      // What the TPM itself says about the loaded key.
      const pub = await rot.client.readPublic(rot.identityHandle);
      assert.equal(pub.tpm2bPublic.toString('base64'), material['tpmPublic']);
    });
  });

  test('extend then read matches an independent SHA-256 replay; a power cycle clears the PCRs', async () => {
    const events = ['bootloader', 'runtime 1.2.3', 'app hello'].map((e) => sha256(e));
    let expected16: Buffer = ZERO;
    let expected23: Buffer = ZERO;
    await tpm.powerCycle();
    await withRot(async (rot) => {
      for (const e of events) {
        await rot.extend(16, e);
        expected16 = createHash('sha256').update(expected16).update(e).digest();
      }
      await rot.extend(23, events[0] ?? ZERO);
      expected23 = extendPcrValue(ZERO, events[0] ?? ZERO);
      const values = await rot.readRegisters([23, 16, 16]);
      assert.deepEqual([...values.keys()], [16, 23]);
      assert.deepEqual(values.get(16), expected16);
      assert.deepEqual(values.get(23), expected23);
    });
    await tpm.powerCycle();
    await withRot(async (rot) => {
      const values = await rot.readRegisters([16, 23]);
      assert.deepEqual(values.get(16), ZERO);
      assert.deepEqual(values.get(23), ZERO);
    });
  });

  test('reads all 24 PCRs, more than one TPM2_PCR_Read returns', async () => {
    await withRot(async (rot) => {
      const all = Array.from({ length: 24 }, (_, i) => i);
      const values = await rot.readRegisters(all);
      assert.deepEqual([...values.keys()], all);
      for (const v of values.values()) assert.equal(v.length, 32);
    });
  });

  test('a quote verifies with the protocol verifier, for a 64-byte nonce and all 24 PCRs', async () => {
    await withRot(async (rot) => {
      await rot.extend(16, sha256('measured runtime'));
      const publicKey = await rot.identityPublicKey();
      for (const pcrs of [[16], [0, 7, 16], Array.from({ length: 24 }, (_, i) => i)]) {
        const nonce = sha256(`nonce ${pcrs.length}`);
        const q = await rot.quote(Buffer.concat([nonce, nonce]), pcrs);
        const verified = verifyQuote({
          ...q,
          publicKey,
          expectedExtraData: Buffer.concat([nonce, nonce]),
          expectedPcrs: pcrs,
          pcrValues: await rot.readRegisters(pcrs),
        });
        assert.deepEqual(verified.pcrs, pcrs);
        assert.ok(verified.clock > 0n);
      }
    });
  });

  test('TPM_QUOTE_PCR_DIGEST_MISMATCH/a quote checked against PCR values extended after it', async () => {
    await withRot(async (rot) => {
      const publicKey = await rot.identityPublicKey();
      const nonce = Buffer.alloc(32, 1);
      const before = await rot.readRegisters([16]);
      const q = await rot.quote(nonce, [16]);
      await rot.extend(16, sha256('after the quote'));
      const now = await rot.readRegisters([16]);
      const check = (pcrValues: Map<number, Buffer>) =>
        verifyQuote({ ...q, publicKey, expectedExtraData: nonce, expectedPcrs: [16], pcrValues });
      check(before);
      assert.throws(
        () => check(now),
        (e: unknown) => e instanceof HeptadError && e.code === 'TPM_QUOTE_PCR_DIGEST_MISMATCH',
      );
    });
  });

  test('sign makes ECDSA P-256 SHA-256 DER signatures that node:crypto verifies, for short and long data', async () => {
    await withRot(async (rot) => {
      const publicKey = await rot.identityPublicKey();
      for (const size of [0, 3, 100, 1024, 1025, 2048, 5000]) {
        const data = Buffer.alloc(size, size & 0xff);
        const der = await rot.sign(data);
        assert.equal(der[0], 0x30, 'DER SEQUENCE');
        assert.ok(verify('sha256', data, publicKey, der), `signature over ${size} bytes`);
      }
    });
  });

  test('ROT_SIGN_INPUT_REFUSED/data that starts with TPM_GENERATED_VALUE; the TPM refuses it too', async () => {
    await withRot(async (rot) => {
      const forged = Buffer.concat([Buffer.from('ff544347', 'hex'), Buffer.from('8018 fake quote')]);
      await assertRejectsCode(rot.sign(forged), 'ROT_SIGN_INPUT_REFUSED');
      // Straight to the TPM: TPM2_Hash gives no ticket for such data, so TPM2_Sign refuses.
      const { digest, validation } = await rot.client.hash(forged, TPM_RH.OWNER);
      await assert.rejects(rot.client.sign(rot.identityHandle, digest, validation), (e: unknown) =>
        isTpmCommandFailure(e, 0x0a0),
      );
      // Three bytes of the prefix are fine (the TPM checks four).
      assert.ok(
        verify(
          'sha256',
          forged.subarray(0, 3),
          await rot.identityPublicKey(),
          await rot.sign(forged.subarray(0, 3)),
        ),
      );
    });
  });

  test('ROT_INPUT_INVALID/bad PCR indexes, digest sizes and nonce sizes', async () => {
    await withRot(async (rot) => {
      await assertRejectsCode(rot.extend(24, ZERO), 'ROT_INPUT_INVALID');
      await assertRejectsCode(rot.extend(-1, ZERO), 'ROT_INPUT_INVALID');
      await assertRejectsCode(rot.extend(16, Buffer.alloc(31)), 'ROT_INPUT_INVALID');
      await assertRejectsCode(rot.readRegisters([0, 24]), 'ROT_INPUT_INVALID');
      await assertRejectsCode(rot.quote(Buffer.alloc(65), [16]), 'ROT_INPUT_INVALID');
      await assertRejectsCode(rot.quote(Buffer.alloc(32), [1.5]), 'ROT_INPUT_INVALID');
    });
  });

  test('TPM_COMMAND_FAILED/extending a PCR locality 0 may not extend', async () => {
    await withRot(async (rot) => {
      await assert.rejects(rot.extend(17, ZERO), (e: unknown) => isTpmCommandFailure(e));
    });
  });

  test('commands issued concurrently are serialized and all succeed', async () => {
    await withRot(async (rot) => {
      const publicKey = await rot.identityPublicKey();
      const values = await rot.readRegisters([16]);
      const n = Array.from({ length: 10 }, (_, i) => i);
      const [quotes, reads, signatures] = await Promise.all([
        Promise.all(n.map((i) => rot.quote(Buffer.of(i), [16]))),
        Promise.all(n.map(() => rot.readRegisters([16]))),
        Promise.all(n.map((i) => rot.sign(Buffer.of(i)))),
      ]);
      for (const [i, q] of quotes.entries()) {
        verifyQuote({
          ...q,
          publicKey,
          expectedExtraData: Buffer.of(i),
          expectedPcrs: [16],
          pcrValues: values,
        });
      }
      for (const r of reads) assert.deepEqual(r, values);
      for (const [i, der] of signatures.entries()) assert.ok(verify('sha256', Buffer.of(i), publicKey, der));
    });
  });

  test('close flushes the identity key: open/close more often than the TPM has object slots', async () => {
    for (let i = 0; i < 8; i++) await withRot(async (rot) => void (await rot.identityPublicKey()));
  });

  test('ROT_CLOSED/using the root of trust after close; close twice is fine', async () => {
    const rot = await open();
    await rot.close();
    await rot.close();
    await assertRejectsCode(rot.identityPublicKey(), 'ROT_CLOSED');
    await assertRejectsCode(rot.quote(Buffer.alloc(0), [16]), 'ROT_CLOSED');
    await assertRejectsCode(rot.sign(Buffer.from('x')), 'ROT_CLOSED');
  });

  test('close after a power cycle tolerates the key being gone already', async () => {
    const rot = await open();
    await swtpmPowerCycle({ host: tpm.host, port: tpm.ctrlPort });
    await rot.close();
  });

  test('repeated power cuts while the key is in use never lock it out (noDA)', async () => {
    for (let i = 0; i < 6; i++) {
      const rot = await open();
      await rot.sign(Buffer.from(`boot ${i}`));
      await tpm.powerCycle(); // no TPM2_Shutdown: a power cut
      await rot.close();
    }
    await withRot(async (rot) => {
      assert.ok(
        verify('sha256', Buffer.from('x'), await rot.identityPublicKey(), await rot.sign(Buffer.from('x'))),
      );
    });
  });

  test('the command client creates, loads and uses a child key (Create, Load, GetRandom, ReadPublic)', async () => {
    const transport = new SocketTransport(tpm.host, tpm.port);
    const client = new TpmClient(transport);
    try {
      await client.startup();
      const random = await client.getRandom(100);
      assert.equal(random.length, 100);
      assert.notDeepEqual(random, Buffer.alloc(100));
      const parent = await client.createPrimary(TPM_RH.OWNER, STORAGE_KEY_TEMPLATE);
      try {
        const child = await client.create(parent.handle, {
          ...STORAGE_KEY_TEMPLATE,
          objectAttributes: IDENTITY_KEY_ATTRIBUTES & ~TPMA_OBJECT.restricted, // unrestricted signing
          symmetric: null,
          scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
        });
        const loaded = await client.load(parent.handle, child.tpm2bPrivate, child.tpm2bPublic);
        try {
          assert.deepEqual((await client.readPublic(loaded.handle)).name, loaded.name);
          const digest = sha256('child key message');
          // An unrestricted key signs any digest: the NULL ticket (TPM_ST_HASHCHECK, TPM_RH_NULL, empty).
          const nullTicket = Buffer.from('8024400000070000', 'hex');
          const sig = await client.sign(loaded.handle, digest, nullTicket);
          assert.ok(
            verify(
              'sha256',
              Buffer.from('child key message'),
              loaded.decoded.publicKey,
              toDerSignature(decodeSignature(sig)),
            ),
          );
        } finally {
          await client.flushContext(loaded.handle);
        }
      } finally {
        await client.flushContext(parent.handle);
      }
      await assert.rejects(client.flushContext(parent.handle), (e: unknown) =>
        isTpmCommandFailure(e, TPM_RC.HANDLE),
      );
    } finally {
      await transport.close();
    }
  });

  test('createTpmRootOfTrust closes its transport when it cannot open the TPM', async () => {
    const transport = new SocketTransport(tpm.host, 1);
    await assertRejectsCode(createTpmRootOfTrust({ transport }), 'TPM_TRANSPORT_FAILED');
    await assertRejectsCode(transport.transmit(Buffer.alloc(10)), 'ROT_CLOSED');
  });
});
