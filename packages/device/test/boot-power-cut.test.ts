// Power-cut proof (issue 4): for install, commit, rollback, a floor raise and a trial boot, cut
// power at EVERY write k of the operation (clean and torn), reboot, and require that the device
// boots a runtime that verifies against the platform key — the old one or the new one, never
// neither — and boots again after that. A control proves the harness catches a naive in-place
// writer, and a fast-check property runs random install/commit/rollback/boot/crash sequences.
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { buildPackage, HeptadError, keyIdOf, verifyPackage } from '@heptad/protocol';
import fc from 'fast-check';
import { boot } from '../src/boot/bootloader.ts';
import { commitTrial, installRuntime, rollbackTrial } from '../src/boot/install.ts';
import { BOOT_STATE_PATH, type BootState, slotPath } from '../src/boot/slots.ts';
import { type CutMode, FaultyStorage, PowerCut, type Storage } from '../src/state/storage.ts';

const platform = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const platformKeys = new Map<string, KeyObject>([[keyIdOf(platform.publicKey), platform.publicKey]]);
const COMPONENT = randomUUID();

function runtime(securityVersion: number): Buffer {
  return buildPackage({
    manifest: {
      componentId: COMPONENT,
      imageId: randomUUID(),
      name: 'heptad-runtime',
      version: `1.0.${securityVersion}`,
      securityVersion,
      type: 'runtime',
      entryPoint: 'main.js',
      createdAt: '2026-01-01T00:00:00.000Z',
    },
    // Large enough that half a package is clearly not a package.
    files: [{ path: 'main.js', content: Buffer.alloc(4096, securityVersion) }],
    signers: [{ privateKey: platform.privateKey }],
  });
}

const A1 = runtime(1);
const B1 = runtime(1);
const B3 = runtime(3);
const digest = (pkg: Uint8Array) => verifyPackage(pkg, platformKeys).digest;

function device(slots: { A?: Uint8Array; B?: Uint8Array }, meta: BootState): FaultyStorage {
  const files = new Map<string, Uint8Array>([[BOOT_STATE_PATH, Buffer.from(JSON.stringify(meta))]]);
  if (slots.A !== undefined) files.set(slotPath('A'), slots.A);
  if (slots.B !== undefined) files.set(slotPath('B'), slots.B);
  return new FaultyStorage(files);
}

const onA: BootState = { schema: 1, committed: 'A', trial: null, floor: 1 };
const trialB: BootState = { ...onA, trial: { slot: 'B', attemptsLeft: 2 } };

const bootOn = (storage: Storage) => boot({ storage, platformKeys, measurementPcr: 16 });

/**
 * Boots, then checks independently of the bootloader that the slot it chose holds, on durable
 * storage, a runtime package that verifies against the platform key, and that it is one of
 * `allowed`. Returns the digest booted.
 */
async function assertBootsVerified(storage: FaultyStorage, allowed: ReadonlySet<string>): Promise<string> {
  const r = await bootOn(storage);
  const bytes = storage.read(slotPath(r.slot));
  assert.ok(bytes !== undefined);
  const v = verifyPackage(bytes, platformKeys);
  assert.equal(v.digest, r.digest);
  assert.equal(v.manifest.type, 'runtime');
  assert.ok(allowed.has(r.digest), `booted ${r.digest}, which is neither the old nor the new runtime`);
  return r.digest;
}

interface Scenario {
  readonly name: string;
  readonly setup: () => FaultyStorage;
  readonly run: (s: FaultyStorage) => Promise<unknown>;
  /** Digests the device may boot after a cut. */
  readonly allowed: ReadonlySet<string>;
}

const scenarios: Scenario[] = [
  {
    name: 'install B over a device on A',
    setup: () => device({ A: A1 }, onA),
    run: async (s) => installRuntime({ storage: s, platformKeys, pkg: B3 }),
    allowed: new Set([digest(A1), digest(B3)]),
  },
  {
    name: 'install B over a pending trial in B',
    setup: () => device({ A: A1, B: B1 }, trialB),
    run: async (s) => installRuntime({ storage: s, platformKeys, pkg: B3 }),
    allowed: new Set([digest(A1), digest(B1), digest(B3)]),
  },
  {
    name: 'commit a trial (same security version)',
    setup: () => device({ A: A1, B: B1 }, trialB),
    run: async (s) => commitTrial({ storage: s, platformKeys }),
    allowed: new Set([digest(A1), digest(B1)]),
  },
  {
    name: 'rollback a trial',
    setup: () => device({ A: A1, B: B3 }, trialB),
    run: async (s) => rollbackTrial({ storage: s, platformKeys }),
    allowed: new Set([digest(A1), digest(B3)]),
  },
  {
    name: 'floor raise: install, trial boot and commit of a higher security version',
    setup: () => device({ A: A1 }, onA),
    run: async (s) => {
      installRuntime({ storage: s, platformKeys, pkg: B3 });
      await bootOn(s);
      commitTrial({ storage: s, platformKeys });
    },
    allowed: new Set([digest(A1), digest(B3)]),
  },
  {
    name: 'trial boot (attempt budget write) and exhausted-trial boot',
    setup: () => device({ A: A1, B: B3 }, { ...onA, trial: { slot: 'B', attemptsLeft: 1 } }),
    run: async (s) => {
      await bootOn(s);
      await bootOn(s);
    },
    allowed: new Set([digest(A1), digest(B3)]),
  },
];

describe('power cut at every write', () => {
  for (const sc of scenarios) {
    test(`boots a verified runtime after a cut at every write: ${sc.name}`, async (t) => {
      const clean = sc.setup();
      await sc.run(clean);
      const writes = clean.writes;
      assert.ok(writes > 0);
      let points = 0;
      for (const mode of ['clean', 'torn'] as const) {
        for (let k = 1; k <= writes; k++) {
          const s = sc.setup().crashAfter(k, mode);
          await assert.rejects(sc.run(s), PowerCut);
          const after = s.reboot();
          await assertBootsVerified(after, sc.allowed);
          // …and once more: the boot after a recovery boot must work too.
          await assertBootsVerified(after, sc.allowed);
          points++;
        }
      }
      t.diagnostic(`${sc.name}: ${writes} writes, ${points} cut points exercised (clean + torn)`);
      assert.equal(points, 2 * writes);
    });
  }

  test('even under the weaker nonAtomic model every real operation leaves a bootable device', async (t) => {
    // Not a guarantee the design relies on (writeFileAtomic gives old-or-new), but a torn
    // boot.json is exactly the "damaged metadata" case, and its recovery path must not brick.
    let points = 0;
    for (const sc of scenarios) {
      const clean = sc.setup();
      await sc.run(clean);
      for (let k = 1; k <= clean.writes; k++) {
        const s = sc.setup().crashAfter(k, 'nonAtomic');
        await assert.rejects(sc.run(s), PowerCut);
        await assertBootsVerified(s.reboot(), sc.allowed);
        points++;
      }
    }
    t.diagnostic(`${points} nonAtomic cut points exercised`);
  });

  test('an install interrupted at any write can be retried and then boots the new runtime', async () => {
    const writes = (() => {
      const s = device({ A: A1 }, onA);
      installRuntime({ storage: s, platformKeys, pkg: B3 });
      return s.writes;
    })();
    for (const mode of ['clean', 'torn'] as const) {
      for (let k = 1; k <= writes; k++) {
        const s = device({ A: A1 }, onA).crashAfter(k, mode);
        assert.throws(() => installRuntime({ storage: s, platformKeys, pkg: B3 }), PowerCut);
        const after = s.reboot();
        installRuntime({ storage: after, platformKeys, pkg: B3 });
        assert.equal(await assertBootsVerified(after, new Set([digest(B3)])), digest(B3));
      }
    }
  });
});

describe('the harness detects a real bug', () => {
  /** A naive single-slot updater: overwrites the running slot's package in place. */
  const naiveUpdate = (s: Storage) => s.write(slotPath('A'), B3);

  async function bricks(mode: CutMode): Promise<number> {
    let bricked = 0;
    const s0 = device({ A: A1 }, onA);
    naiveUpdate(s0);
    for (let k = 1; k <= s0.writes; k++) {
      const s = device({ A: A1 }, onA).crashAfter(k, mode);
      assert.throws(() => naiveUpdate(s), PowerCut);
      try {
        await bootOn(s.reboot());
      } catch (e) {
        assert.ok(e instanceof HeptadError && e.code === 'BOOT_NO_VALID_RUNTIME');
        bricked++;
      }
    }
    return bricked;
  }

  test('nonAtomic: a naive in-place writer leaves a device that boots nothing', async () => {
    assert.ok((await bricks('nonAtomic')) > 0);
  });

  test('the same naive writer survives the atomic models (the weakness is the in-place write)', async () => {
    assert.equal(await bricks('clean'), 0);
    assert.equal(await bricks('torn'), 0);
  });
});

type Op =
  | { kind: 'install'; pkg: number }
  | { kind: 'commit' }
  | { kind: 'rollback' }
  | { kind: 'boot' }
  | { kind: 'crash'; after: number; mode: 'clean' | 'torn' };

describe('random operation sequences (fast-check)', () => {
  const pool = [runtime(1), runtime(1), runtime(2), runtime(3), runtime(0)];

  test('boot always returns a verified runtime once one was committed', async () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('install' as const), pkg: fc.nat(pool.length - 1) }),
      fc.record({ kind: fc.constant('commit' as const) }),
      fc.record({ kind: fc.constant('rollback' as const) }),
      fc.record({ kind: fc.constant('boot' as const) }),
      fc.record({
        kind: fc.constant('crash' as const),
        after: fc.integer({ min: 1, max: 4 }),
        mode: fc.constantFrom('clean' as const, 'torn' as const),
      }),
    );
    const expected = new Set(['BOOT_ROLLBACK_REFUSED', 'BOOT_NO_TRIAL']);
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
        // The factory state: A committed (a verified runtime was committed from the start).
        let s = device({ A: A1 }, onA);
        for (const o of ops) {
          try {
            if (o.kind === 'crash') s.crashAfter(o.after, o.mode);
            else if (o.kind === 'install')
              installRuntime({ storage: s, platformKeys, pkg: pool[o.pkg] as Buffer });
            else if (o.kind === 'commit') commitTrial({ storage: s, platformKeys });
            else if (o.kind === 'rollback') rollbackTrial({ storage: s, platformKeys });
            else await assertBootsVerified(s, new Set([A1, ...pool].map(digest)));
          } catch (e) {
            if (e instanceof PowerCut) s = s.reboot();
            else if (!(e instanceof HeptadError && expected.has(e.code))) throw e;
          }
          // A cut that never came before the next op is still armed: after it, power comes back.
          if (s.crashed) s = s.reboot();
        }
        s = s.reboot();
        await assertBootsVerified(s, new Set([A1, ...pool].map(digest)));
      }),
      { numRuns: 300 },
    );
  });
});
