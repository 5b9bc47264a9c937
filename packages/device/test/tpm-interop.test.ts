// Interop with the reference tools (tpm2-tools over swtpm's TCTI): a quote made by tpm2_quote
// with an AK from tpm2_createak is accepted by the protocol verifier when valid and refused when
// its nonce or PCR selection is wrong; a quote made by this client passes tpm2_checkquote; PCR
// values read by each side agree. The swtpm data socket serves one connection at a time and has
// no resource manager, so tool calls are followed by tpm2_flushcontext and the client's
// connection is closed before a tool runs.
// Skips only when swtpm or tpm2-tools is missing and HEPTAD_REQUIRE_SWTPM is not set.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  decodeTpm2bPublic,
  type ErrorCode,
  extendPcrValue,
  HeptadError,
  verifyQuote,
} from '@heptad/protocol';
import {
  createReferenceAk,
  flushContexts,
  startSwtpm,
  type TestSwtpm,
  tpm2,
  tpm2ToolsSkipReason,
} from '../../../test/support/swtpm.ts';
import { openTpmRootOfTrust } from '../src/index.ts';

const ZERO = Buffer.alloc(32);
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest();

function assertCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HeptadError, `expected a HeptadError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

describe('interop with tpm2-tools', { skip: tpm2ToolsSkipReason() ?? false }, () => {
  let tpm: TestSwtpm;
  let dir: string;
  const file = (name: string) => path.join(dir, name);
  const tool = (name: string, args: string[]) => tpm2(tpm, name, args, { cwd: dir });
  const flush = () => flushContexts(tpm, dir);
  const measured = sha256('runtime image 2.0');
  let akPublic: Buffer;

  before(async () => {
    tpm = await startSwtpm();
    dir = await mkdtemp(path.join(os.tmpdir(), 'heptad-tpm-interop-'));
    await createReferenceAk(tpm, dir);
    await tool('tpm2_readpublic', ['-c', 'ak.ctx', '-f', 'pem', '-o', 'ak.pem']);
    await flush();
    await tool('tpm2_pcrextend', [`16:sha256=${measured.toString('hex')}`]);
    akPublic = await readFile(file('ak.pub'));
  });
  after(async () => {
    await tpm?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** tpm2_quote with the AK; returns the TPMS_ATTEST and TPMT_SIGNATURE files' bytes. */
  async function toolQuote(selection: string, nonce: Buffer): Promise<{ attest: Buffer; signature: Buffer }> {
    await tool('tpm2_quote', [
      '-c',
      'ak.ctx',
      '-l',
      selection,
      '-q',
      nonce.toString('hex'),
      '-m',
      'quote.msg',
      '-s',
      'quote.sig',
      '-o',
      'quote.pcrs',
      '-g',
      'sha256',
    ]);
    await flush();
    return { attest: await readFile(file('quote.msg')), signature: await readFile(file('quote.sig')) };
  }

  const replayed = () =>
    new Map([
      [0, ZERO],
      [16, extendPcrValue(ZERO, measured)],
    ]);

  test("the AK's TPM2B_PUBLIC parses to the key tpm2_readpublic exported and the name tpm2_createak printed", async () => {
    const decoded = decodeTpm2bPublic(akPublic);
    assert.deepEqual(decoded.name, await readFile(file('ak.name')));
    const pem = (await readFile(file('ak.pem'), 'utf8')).trim();
    assert.equal(decoded.publicKey.export({ format: 'pem', type: 'spki' }).toString().trim(), pem);
  });

  test('a tpm2_quote quote is accepted with the nonce and the event-log replay of its PCRs', async () => {
    const nonce = sha256('interop nonce 1');
    const q = await toolQuote('sha256:0,16', nonce);
    const verified = verifyQuote({
      ...q,
      publicKey: decodeTpm2bPublic(akPublic).publicKey,
      expectedExtraData: nonce,
      expectedPcrs: [0, 16],
      pcrValues: replayed(),
    });
    assert.deepEqual(verified.pcrs, [0, 16]);
  });

  test('a tpm2_quote quote is refused for another nonce, another PCR set, another bank and other PCR values', async () => {
    const nonce = sha256('interop nonce 2');
    const publicKey = decodeTpm2bPublic(akPublic).publicKey;
    const good = { publicKey, expectedExtraData: nonce, expectedPcrs: [0, 16], pcrValues: replayed() };
    const q = await toolQuote('sha256:0,16', nonce);
    assertCode(
      () => verifyQuote({ ...q, ...good, expectedExtraData: sha256('stale nonce') }),
      'TPM_QUOTE_NONCE_MISMATCH',
    );
    assertCode(() => verifyQuote({ ...q, ...good, expectedPcrs: [16] }), 'TPM_QUOTE_PCR_SELECTION_MISMATCH');
    assertCode(
      () =>
        verifyQuote({
          ...q,
          ...good,
          pcrValues: new Map([
            [0, ZERO],
            [16, ZERO],
          ]),
        }),
      'TPM_QUOTE_PCR_DIGEST_MISMATCH',
    );
    const onlySixteen = await toolQuote('sha256:16', nonce);
    assertCode(() => verifyQuote({ ...onlySixteen, ...good }), 'TPM_QUOTE_PCR_SELECTION_MISMATCH');
    const sha1Bank = await toolQuote('sha1:0,16', nonce);
    assertCode(() => verifyQuote({ ...sha1Bank, ...good }), 'TPM_QUOTE_PCR_SELECTION_MISMATCH');
    const flipped = Buffer.from(q.attest);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1;
    assertCode(() => verifyQuote({ ...q, ...good, attest: flipped }), 'TPM_QUOTE_SIGNATURE_INVALID');
  });

  test('a quote made by the Heptad client passes tpm2_checkquote; a wrong nonce does not', async () => {
    const nonce = sha256('heptad client nonce');
    const rot = await openTpmRootOfTrust(`tpm:${tpm.host}:${tpm.port}`);
    let material: Record<string, string>;
    let values: Map<number, Buffer>;
    let q: { attest: Buffer; signature: Buffer };
    try {
      material = await rot.identityKeyMaterial();
      values = await rot.readRegisters([0, 16]);
      q = await rot.quote(nonce, [0, 16]);
      await writeFile(
        file('heptad.pem'),
        (await rot.identityPublicKey()).export({ format: 'pem', type: 'spki' }),
      );
    } finally {
      await rot.close(); // frees the data socket for the tools
    }
    assert.deepEqual(values.get(16), extendPcrValue(ZERO, measured));
    await writeFile(file('heptad.pub'), Buffer.from(material['tpmPublic'] ?? '', 'base64'));
    await writeFile(file('heptad.msg'), q.attest);
    await writeFile(file('heptad.sig'), q.signature);
    await writeFile(file('heptad.pcrs'), Buffer.concat([values.get(0) ?? ZERO, values.get(16) ?? ZERO]));
    const check = (pub: string, qualification: Buffer) =>
      tool('tpm2_checkquote', [
        '-u',
        pub,
        '-m',
        'heptad.msg',
        '-s',
        'heptad.sig',
        '-f',
        'heptad.pcrs',
        '-l',
        'sha256:0,16',
        '-g',
        'sha256',
        '-q',
        qualification.toString('hex'),
      ]);
    await check('heptad.pem', nonce); // the key as PEM
    await check('heptad.pub', nonce); // the key as the TPM2B_PUBLIC the device registers
    await assert.rejects(check('heptad.pem', sha256('another nonce')));
  });

  test('PCR values read by the Heptad client equal tpm2_pcrread', async () => {
    await tool('tpm2_pcrread', ['sha256:0,7,16,23', '-o', 'pcrs.values']);
    const fromTool = await readFile(file('pcrs.values'));
    const rot = await openTpmRootOfTrust(`tpm:${tpm.host}:${tpm.port}`);
    try {
      const values = await rot.readRegisters([0, 7, 16, 23]);
      assert.deepEqual(Buffer.concat([...values.values()]), fromTool);
    } finally {
      await rot.close();
    }
  });
});
