import assert from 'node:assert/strict';
import { createHash, verify } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { deviceIdOf, extendPcrValue, HeptadError, verifyQuote } from '@heptad/protocol';
import { SoftRootOfTrust } from '../src/rot/soft/soft-root-of-trust.ts';

const dirs: string[] = [];
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), 'heptad-soft-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sha = (s: string) => createHash('sha256').update(s).digest();

describe('the software root of trust', () => {
  test('keeps its identity key in a 0600 file and gives the same identity when reopened', async () => {
    const dir = fresh();
    const rot = SoftRootOfTrust.create(dir);
    assert.equal(statSync(join(dir, 'identity-key.pem')).mode & 0o777, 0o600);
    const id = deviceIdOf(await rot.identityPublicKey());
    assert.equal(deviceIdOf(await new SoftRootOfTrust(dir).identityPublicKey()), id);
    assert.equal(rot.kind, 'soft');
  });

  test('refuses to create a second identity over the first', () => {
    const dir = fresh();
    SoftRootOfTrust.create(dir);
    assert.throws(
      () => SoftRootOfTrust.create(dir),
      (e: unknown) => e instanceof HeptadError && e.code === 'DEVICE_STATE_EXISTS',
    );
  });

  test('extends registers with TPM semantics, shared across instances, and resets on reboot', async () => {
    const dir = fresh();
    const rot = SoftRootOfTrust.create(dir);
    await rot.extend(15, sha('runtime'));
    await new SoftRootOfTrust(dir).extend(15, sha('app'));
    const expected = extendPcrValue(extendPcrValue(Buffer.alloc(32), sha('runtime')), sha('app'));
    assert.deepEqual((await rot.readRegisters([15])).get(15), expected);
    assert.deepEqual((await rot.readRegisters([16])).get(16), Buffer.alloc(32));
    rot.reset();
    assert.deepEqual((await rot.readRegisters([15])).get(15), Buffer.alloc(32));
  });

  test('refuses a register out of range or a digest that is not 32 bytes', async () => {
    const rot = SoftRootOfTrust.create(fresh());
    for (const [pcr, digest] of [
      [24, sha('x')],
      [-1, sha('x')],
      [15, Buffer.alloc(31)],
    ] as const) {
      await assert.rejects(
        rot.extend(pcr, digest),
        (e: unknown) => e instanceof HeptadError && e.code === 'DEVICE_STATE_INVALID',
      );
    }
  });

  test('quotes as a TPM does: the protocol verifier accepts it and catches a wrong nonce or value', async () => {
    const rot = SoftRootOfTrust.create(fresh());
    await rot.extend(15, sha('runtime'));
    const nonce = sha('nonce');
    const q = await rot.quote(nonce, [15]);
    const values = await rot.readRegisters([15]);
    const publicKey = await rot.identityPublicKey();
    verifyQuote({
      attest: q.attest,
      signature: q.signature,
      publicKey,
      expectedExtraData: nonce,
      expectedPcrs: [15],
      pcrValues: values,
    });
    assert.throws(
      () =>
        verifyQuote({
          attest: q.attest,
          signature: q.signature,
          publicKey,
          expectedExtraData: sha('other'),
          expectedPcrs: [15],
          pcrValues: values,
        }),
      (e: unknown) => e instanceof HeptadError && e.code === 'TPM_QUOTE_NONCE_MISMATCH',
    );
    assert.throws(
      () =>
        verifyQuote({
          attest: q.attest,
          signature: q.signature,
          publicKey,
          expectedExtraData: nonce,
          expectedPcrs: [15],
          pcrValues: new Map([[15, Buffer.alloc(32)]]),
        }),
      (e: unknown) => e instanceof HeptadError && e.code === 'TPM_QUOTE_PCR_DIGEST_MISMATCH',
    );
  });

  test('signs with the identity key', async () => {
    const rot = SoftRootOfTrust.create(fresh());
    const data = Buffer.from('hello');
    assert.ok(verify('sha256', data, await rot.identityPublicKey(), await rot.sign(data)));
  });
});
