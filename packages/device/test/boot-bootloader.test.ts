// Every branch of the bootloader, install, commit and rollback (issue 4, boot chain and slots),
// on FaultyStorage with no cut planned, plus FsStorage on a temp dir and measured boot through a
// SoftRootOfTrust. Packages are real: built and signed with protocol's buildPackage.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { buildPackage, HeptadError, keyIdOf, verifyPackage } from '@heptad/protocol';
import { boot } from '../src/boot/bootloader.ts';
import { commitTrial, installRuntime, rollbackTrial } from '../src/boot/install.ts';
import { BOOT_STATE_PATH, type BootState, parseBootState, slotPath } from '../src/boot/slots.ts';
import { SoftRootOfTrust } from '../src/rot/soft/soft-root-of-trust.ts';
import { FaultyStorage, FsStorage } from '../src/state/storage.ts';

const newKey = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const platform = newKey();
const platformKeys = new Map<string, KeyObject>([[keyIdOf(platform.publicKey), platform.publicKey]]);
const COMPONENT = randomUUID();

function runtime(
  securityVersion: number,
  o: { type?: 'runtime' | 'application'; key?: KeyObject } = {},
): Buffer {
  const type = o.type ?? 'runtime';
  return buildPackage({
    manifest: {
      componentId: COMPONENT,
      imageId: randomUUID(),
      name: 'heptad-runtime',
      version: `1.0.${securityVersion}`,
      securityVersion,
      type,
      entryPoint: 'main.js',
      createdAt: '2026-01-01T00:00:00.000Z',
      ...(type === 'application' ? { appManifest: {} } : {}),
    },
    files: [{ path: 'main.js', content: Buffer.from(`console.log(${securityVersion})`) }],
    signers: [{ privateKey: o.key ?? platform.privateKey }],
  });
}

const state = (s: Partial<BootState> = {}): BootState => ({
  schema: 1,
  committed: 'A',
  trial: null,
  floor: 1,
  ...s,
});

/** A device: slot packages and boot.json (raw text, or a state, or null for none). */
function device(
  slots: { A?: Uint8Array | undefined; B?: Uint8Array | undefined },
  meta: BootState | string | null = state(),
) {
  const files = new Map<string, Uint8Array>();
  if (slots.A !== undefined) files.set(slotPath('A'), slots.A);
  if (slots.B !== undefined) files.set(slotPath('B'), slots.B);
  if (meta !== null)
    files.set(BOOT_STATE_PATH, Buffer.from(typeof meta === 'string' ? meta : JSON.stringify(meta)));
  return new FaultyStorage(files);
}

const digestOf = (pkg: Uint8Array) => verifyPackage(pkg, platformKeys).digest;
const bootOf = (storage: FaultyStorage) => boot({ storage, platformKeys, measurementPcr: 16 });
const metaOf = (s: FaultyStorage) => parseBootState(s.read(BOOT_STATE_PATH));
const hasCode = (code: string) => (e: unknown) => e instanceof HeptadError && e.code === code;

const A1 = runtime(1);
const B1 = runtime(1);
const B2 = runtime(2);

describe('boot', () => {
  test('boots the committed slot when no trial is pending, and writes nothing', async () => {
    const s = device({ A: A1, B: B1 });
    const r = await bootOf(s);
    assert.deepEqual(
      [r.slot, r.trial, r.digest, r.refused, r.recovered],
      ['A', false, digestOf(A1), [], false],
    );
    assert.equal(r.manifest.type, 'runtime');
    assert.equal(r.measurement.digest, r.digest);
    assert.equal(s.writes, 0);
  });

  test('boots a pending trial and spends one attempt first', async () => {
    const s = device({ A: A1, B: B2 }, state({ trial: { slot: 'B', attemptsLeft: 3 } }));
    const r = await bootOf(s);
    assert.deepEqual([r.slot, r.trial, r.digest], ['B', true, digestOf(B2)]);
    assert.deepEqual(metaOf(s)?.trial, { slot: 'B', attemptsLeft: 2 });
  });

  test('counts the budget down and returns to the committed slot when it is spent', async () => {
    const s = device({ A: A1, B: B2 }, state({ trial: { slot: 'B', attemptsLeft: 3 } }));
    for (const left of [2, 1, 0]) {
      const r = await bootOf(s);
      assert.deepEqual(
        [r.slot, r.trial, metaOf(s)?.trial?.attemptsLeft, r.abandoned],
        ['B', true, left, null],
      );
    }
    const r = await bootOf(s);
    assert.deepEqual([r.slot, r.trial, r.abandoned, r.floor], ['A', false, 'B', 1]);
    assert.deepEqual(metaOf(s), state());
    // Only the boot that gave the trial up reports it.
    assert.equal((await bootOf(s)).abandoned, null);
  });

  test('falls back to the committed slot when the trial does not verify', async () => {
    const bad = Buffer.from(B2);
    bad[30] = (bad[30] as number) ^ 1;
    const s = device({ A: A1, B: bad }, state({ trial: { slot: 'B', attemptsLeft: 1 } }));
    const r = await bootOf(s);
    assert.deepEqual(
      [r.slot, r.trial, r.refused],
      ['A', false, [{ slot: 'B', code: 'IMAGE_SIGNATURE_INVALID' }]],
    );
  });

  const broken: Array<[string, Uint8Array, string]> = [
    ['IMAGE_SIGNATURE_INVALID/flipped byte in the manifest', flip(A1, 30), 'IMAGE_SIGNATURE_INVALID'],
    [
      'IMAGE_SIGNATURE_INVALID/flipped byte in the payload',
      flip(A1, A1.length - 120),
      'IMAGE_SIGNATURE_INVALID',
    ],
    ['IMAGE_TRUNCATED/truncated package', A1.subarray(0, A1.length - 10), 'IMAGE_TRUNCATED'],
    [
      'IMAGE_SIGNATURE_UNTRUSTED/signed by another key',
      runtime(1, { key: newKey().privateKey }),
      'IMAGE_SIGNATURE_UNTRUSTED',
    ],
    [
      'BOOT_NOT_RUNTIME/application package in a runtime slot',
      runtime(1, { type: 'application' }),
      'BOOT_NOT_RUNTIME',
    ],
    ['BOOT_BELOW_FLOOR/security version below the floor', runtime(0), 'BOOT_BELOW_FLOOR'],
    ['BOOT_SLOT_EMPTY/no package', Buffer.alloc(0), 'BOOT_SLOT_EMPTY'],
  ];
  for (const [name, pkg, code] of broken) {
    test(`committed slot refused, other slot boots: ${name}`, async () => {
      const s = device({ A: pkg.length === 0 ? undefined : pkg, B: B1 });
      const r = await bootOf(s);
      assert.deepEqual([r.slot, r.trial, r.refused], ['B', false, [{ slot: 'A', code }]]);
    });
    test(`BOOT_NO_VALID_RUNTIME/both slots refused: ${name}`, async () => {
      const s = device({ A: pkg.length === 0 ? undefined : pkg });
      await assert.rejects(bootOf(s), (e: unknown) => {
        assert.ok(e instanceof HeptadError);
        assert.equal(e.code, 'BOOT_NO_VALID_RUNTIME');
        assert.deepEqual(e.detail.slots, { A: code, B: 'BOOT_SLOT_EMPTY' });
        return true;
      });
    });
  }

  const damaged: Array<[string, string | null]> = [
    ['missing', null],
    ['not JSON', '{"schema":1,'],
    ['corrupted bytes', '\u0000\u00ff garbage'],
    ['wrong schema', JSON.stringify({ ...state(), schema: 2 })],
    ['unknown slot name', JSON.stringify({ ...state(), committed: 'C' })],
    ['unknown field', JSON.stringify({ ...state(), extra: true })],
    ['trial on the committed slot', JSON.stringify(state({ trial: { slot: 'A', attemptsLeft: 1 } }))],
    ['negative floor', JSON.stringify(state({ floor: -1 }))],
    ['huge budget', JSON.stringify(state({ trial: { slot: 'B', attemptsLeft: 1e6 } }))],
    ['an array', '[]'],
  ];
  for (const [name, meta] of damaged) {
    test(`boot.json ${name}: boots the highest verified security version, floor derived from it`, async () => {
      const hi = await bootOf(device({ A: A1, B: B2 }, meta));
      assert.deepEqual([hi.slot, hi.recovered, hi.digest], ['B', true, digestOf(B2)]);
      // On a tie, A first; an unverifiable slot never counts.
      const tie = await bootOf(device({ A: A1, B: B1 }, meta));
      assert.deepEqual([tie.slot, tie.recovered], ['A', true]);
      const one = await bootOf(device({ A: flip(A1, 30), B: B1 }, meta));
      assert.deepEqual([one.slot, one.recovered], ['B', true]);
    });
  }

  test('boot.json damaged and no slot verifies: BOOT_NO_VALID_RUNTIME', async () => {
    await assert.rejects(bootOf(device({ A: flip(A1, 30) }, 'x')), hasCode('BOOT_NO_VALID_RUNTIME'));
  });

  test('extends the package digest into the measurement register of a SoftRootOfTrust', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'heptad-boot-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const rot = SoftRootOfTrust.create(dir);
    const before = (await rot.readRegisters([16])).get(16) as Buffer;
    const r = await boot({ storage: device({ A: A1 }), platformKeys, rot, measurementPcr: 16 });
    const expected = createHash('sha256')
      .update(Buffer.concat([before, Buffer.from(digestOf(A1), 'hex')]))
      .digest();
    assert.deepEqual((await rot.readRegisters([16])).get(16), expected);
    assert.equal(r.measurement.digest, digestOf(A1));
    assert.equal(r.measurement.kind, 'runtime');
    await rot.close();
  });
});

describe('install, commit and rollback', () => {
  test('installs into the inactive slot as a trial with the default budget', async () => {
    const s = device({ A: A1 });
    const { slot } = installRuntime({ storage: s, platformKeys, pkg: B2 });
    assert.equal(slot, 'B');
    assert.deepEqual(s.read(slotPath('B')), B2);
    assert.deepEqual(metaOf(s), state({ trial: { slot: 'B', attemptsLeft: 3 } }));
    assert.deepEqual([(await bootOf(s)).slot, (await bootOf(s)).trial], ['B', true]);
  });

  test('committed slot damaged, running from the other: the install overwrites the damaged slot, never the running one', async () => {
    const s = device({ A: flip(A1, 30), B: B1 });
    assert.equal((await bootOf(s)).slot, 'B', 'runs from B while A is damaged');
    const { slot } = installRuntime({ storage: s, platformKeys, pkg: B2 });
    assert.equal(slot, 'A');
    assert.deepEqual(s.read(slotPath('B')), B1, 'the running runtime is untouched');
    assert.deepEqual(metaOf(s), state({ committed: 'B', trial: { slot: 'A', attemptsLeft: 3 } }));
    const r = await bootOf(s);
    assert.deepEqual([r.slot, r.trial], ['A', true]);
  });

  test('replaces a pending trial when installing again', () => {
    const s = device({ A: A1, B: B1 }, state({ trial: { slot: 'B', attemptsLeft: 1 } }));
    installRuntime({ storage: s, platformKeys, pkg: B2, trialBoots: 5 });
    assert.deepEqual(metaOf(s), state({ trial: { slot: 'B', attemptsLeft: 5 } }));
  });

  const refusals: Array<[string, Uint8Array, string]> = [
    ['BOOT_ROLLBACK_REFUSED/below the floor', runtime(0), 'BOOT_ROLLBACK_REFUSED'],
    ['BOOT_NOT_RUNTIME/application package', runtime(1, { type: 'application' }), 'BOOT_NOT_RUNTIME'],
    [
      'IMAGE_SIGNATURE_UNTRUSTED/signed by another key',
      runtime(1, { key: newKey().privateKey }),
      'IMAGE_SIGNATURE_UNTRUSTED',
    ],
    ['IMAGE_SIGNATURE_INVALID/flipped byte', flip(B2, 30), 'IMAGE_SIGNATURE_INVALID'],
    ['IMAGE_TRUNCATED/truncated', B2.subarray(0, 50), 'IMAGE_TRUNCATED'],
  ];
  for (const [name, pkg, code] of refusals) {
    test(`install refuses and writes nothing: ${name}`, () => {
      const s = device({ A: A1 });
      assert.throws(() => installRuntime({ storage: s, platformKeys, pkg }), hasCode(code));
      assert.equal(s.writes, 0);
    });
  }

  test('commit makes the trial committed, raises the floor and clears the trial in one write', async () => {
    const s = device({ A: A1, B: B2 }, state({ trial: { slot: 'B', attemptsLeft: 2 } }));
    assert.deepEqual(commitTrial({ storage: s, platformKeys }), { slot: 'B', floor: 2 });
    assert.equal(s.writes, 1);
    assert.deepEqual(metaOf(s), state({ committed: 'B', floor: 2 }));
    assert.deepEqual([(await bootOf(s)).slot], ['B']);
    // The old runtime is now below the floor: refused at install.
    assert.throws(
      () => installRuntime({ storage: s, platformKeys, pkg: A1 }),
      hasCode('BOOT_ROLLBACK_REFUSED'),
    );
  });

  test('commit keeps the floor when the trial has the same security version', () => {
    const s = device({ A: A1, B: B2 }, state({ floor: 2, trial: { slot: 'B', attemptsLeft: 2 } }));
    assert.deepEqual(commitTrial({ storage: s, platformKeys }), { slot: 'B', floor: 2 });
  });

  test('commit refuses a trial below the floor with BOOT_ROLLBACK_REFUSED, and changes nothing', () => {
    const s = device({ A: A1, B: B2 }, state({ floor: 3, trial: { slot: 'B', attemptsLeft: 2 } }));
    assert.throws(() => commitTrial({ storage: s, platformKeys }), hasCode('BOOT_ROLLBACK_REFUSED'));
    assert.equal(s.writes, 0);
  });

  test('commit refuses a trial slot that no longer verifies, and changes nothing', () => {
    const s = device({ A: A1, B: flip(B2, 30) }, state({ trial: { slot: 'B', attemptsLeft: 2 } }));
    assert.throws(() => commitTrial({ storage: s, platformKeys }), hasCode('BOOT_NO_VALID_RUNTIME'));
    assert.equal(s.writes, 0);
  });

  test('commit and rollback without a pending trial: BOOT_NO_TRIAL', () => {
    const s = device({ A: A1, B: B1 });
    assert.throws(() => commitTrial({ storage: s, platformKeys }), hasCode('BOOT_NO_TRIAL'));
    assert.throws(() => rollbackTrial({ storage: s, platformKeys }), hasCode('BOOT_NO_TRIAL'));
  });

  test('rollback clears the trial and the committed slot boots', async () => {
    const s = device({ A: A1, B: B2 }, state({ trial: { slot: 'B', attemptsLeft: 2 } }));
    assert.deepEqual(rollbackTrial({ storage: s, platformKeys }), { slot: 'A' });
    assert.deepEqual(metaOf(s), state());
    assert.equal((await bootOf(s)).slot, 'A');
  });
});

describe('FsStorage', () => {
  test('replaces files atomically under its root, reads absent files as undefined, removes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'heptad-storage-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const s = new FsStorage(dir);
    assert.equal(s.read('boot.json'), undefined);
    s.write(slotPath('A'), A1);
    s.write(BOOT_STATE_PATH, Buffer.from(JSON.stringify(state())));
    assert.deepEqual(s.read(slotPath('A')), A1);
    assert.equal((await boot({ storage: s, platformKeys, measurementPcr: 16 })).slot, 'A');
    s.remove(BOOT_STATE_PATH);
    s.remove(BOOT_STATE_PATH);
    assert.equal(s.read(BOOT_STATE_PATH), undefined);
  });

  for (const path of ['../x', '/etc/passwd', 'a/../../x', 'a//b', '', 'a\\..\\b', './a']) {
    test(`BOOT_STATE_PATH_INVALID/${JSON.stringify(path)}`, () => {
      const s = new FsStorage(tmpdir());
      assert.throws(() => s.read(path), hasCode('BOOT_STATE_PATH_INVALID'));
      assert.throws(() => s.write(path, Buffer.alloc(1)), hasCode('BOOT_STATE_PATH_INVALID'));
      assert.throws(
        () => new FaultyStorage().write(path, Buffer.alloc(1)),
        hasCode('BOOT_STATE_PATH_INVALID'),
      );
    });
  }
});

function flip(pkg: Uint8Array, at: number): Buffer {
  const b = Buffer.from(pkg);
  b[at] = (b[at] as number) ^ 0x01;
  return b;
}
