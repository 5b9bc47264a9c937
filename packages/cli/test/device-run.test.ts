// `heptad device run` as real processes, without a service (issue 4): the factory runtime boots;
// a trial that crashes, hangs or never passes its health check returns to the committed runtime
// by itself; tampered slots are refused and reported; wrong permissions, a second run, a missing
// platform key and a device with no valid slot all stop with their codes; and kill -9 of the
// whole device at random instants during an install always leaves a device that boots a
// platform-signed runtime. Runtime packages are built and signed through the CLI.
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, randomBytes, randomUUID } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildPackage, keyIdOf, verifyPackage } from '@heptad/protocol';
import {
  DeviceProcess,
  makeRuntimeKit,
  type RuntimeKit,
  readJson,
  writeModule,
} from './support/device-process.ts';
import { runCaptured } from './support/run-cli.ts';

const NO_SERVICE = 'https://127.0.0.1:9'; // closed port: attestation fails fast, the device runs on

describe('heptad device run', () => {
  let dir: string;
  let kit: RuntimeKit;
  let rt1: { file: string; digest: string };
  let rt2: { file: string; digest: string };
  let crash: { file: string; digest: string };
  let hang: { file: string; digest: string };
  let silent: { file: string; digest: string };
  let n = 0;
  const cli = (argv: string[]) => runCaptured(argv, {}, dir);

  /** A new soft device with rt1 in slot A (committed, floor 1). */
  async function newDevice(runtime = rt1.file): Promise<string> {
    const state = join(dir, `dev-${++n}`);
    const r = await cli([
      'device',
      'manufacture',
      '--state',
      state,
      '--rot',
      'soft',
      '--service',
      NO_SERVICE,
      '--runtime',
      runtime,
      '--runtime-signer',
      kit.platformPub,
    ]);
    assert.equal(r.code, 0, r.err);
    return state;
  }
  const events = (state: string) =>
    existsSync(join(state, 'events.json'))
      ? (readJson(join(state, 'events.json')) as Array<Record<string, string>>)
      : [];
  const kinds = (state: string) => events(state).map((e) => e['kind']);
  const bootState = (state: string) => readJson(join(state, 'boot.json')) as Record<string, unknown>;
  const status = async (state: string) => {
    const r = await cli(['device', 'status', '--state', state, '--output', 'json']);
    assert.equal(r.code, 0, r.err);
    return r.json() as Record<string, unknown> & { runtime: Record<string, unknown> | null };
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-run-'));
    kit = await makeRuntimeKit(dir);
    rt1 = await kit.pack('rt1', '1.0.0', 1);
    rt2 = await kit.pack('rt2', '1.1.0', 2);
    crash = await kit.pack('crash', '2.0.0', 2, {
      from: writeModule(dir, 'crash.mjs', 'process.exit(3);\n'),
    });
    // Never says "ready": only the watchdog ends it.
    hang = await kit.pack('hang', '2.1.0', 2, {
      from: writeModule(dir, 'hang.mjs', 'setInterval(() => {}, 1e6);\n'),
    });
    // Says ready, then goes silent (a deadlock after start-up).
    silent = await kit.pack('silent', '2.2.0', 2, {
      from: writeModule(
        dir,
        'silent.mjs',
        "process.send?.({ type: 'ready' });\nsetInterval(() => {}, 1e6);\n",
      ),
    });
  });
  after(async () => {
    await DeviceProcess.powerCutAll();
    rmSync(dir, { recursive: true, force: true });
  });

  test('boots the factory runtime from slot A, shows it in status, and powers off on SIGTERM', async () => {
    const state = await newDevice();
    const before = await status(state);
    assert.equal(before['phase'], 'never-run');
    assert.deepEqual(before['slots'], { committed: 'A', trial: null, floor: 1, recovered: false });
    const dev = new DeviceProcess(state);
    await dev.waitFor(/ready in \d+ ms/);
    const s = await status(state);
    assert.equal(s['running'], true);
    assert.equal(s['rotKind'], 'soft');
    assert.deepEqual(s.runtime, { slot: 'A', version: '1.0.0', digest: rt1.digest, trial: false });
    // Measured boot: the log holds exactly the booted runtime, and it replays to the register.
    const log = readJson(join(state, 'measurements.json')) as Array<Record<string, string>>;
    assert.deepEqual(
      log.map((e) => [e['kind'], e['digest']]),
      [['runtime', rt1.digest]],
    );
    const table = await cli(['device', 'status', '--state', state]);
    assert.match(table.out, /Runtime: +1\.0\.0 in slot A \(committed\)/);
    assert.deepEqual(await dev.stop(), { code: 0, signal: null });
    assert.equal((await status(state))['phase'], 'stopped');
    assert.equal(existsSync(join(state, 'run.lock')), false);
  });

  test('a trial that exits at once returns to the committed runtime when its 3 attempts are spent', async () => {
    const state = await newDevice();
    const dev = new DeviceProcess(state);
    await dev.waitFor(/ready in/);
    const staged = await cli(['device', 'sideload', '--state', state, crash.file]);
    assert.equal(staged.code, 0, staged.err);
    await dev.waitFor(/trial-abandoned/, 20_000);
    await dev.waitFor(/ready in/, 10_000, 2);
    const k = kinds(state);
    assert.equal(k.filter((x) => x === 'trial-started').length, 3);
    assert.equal(k.filter((x) => x === 'runtime-exited').length, 3);
    assert.equal(k.at(-1), 'trial-abandoned');
    assert.equal(events(state).find((e) => e['kind'] === 'runtime-exited')?.['code'], '3');
    // Back on the committed runtime; the floor never moved (the trial never committed).
    assert.deepEqual(bootState(state), { schema: 1, committed: 'A', trial: null, floor: 1 });
    assert.deepEqual((await status(state)).runtime, {
      slot: 'A',
      version: '1.0.0',
      digest: rt1.digest,
      trial: false,
    });
    await dev.stop();
  });

  for (const [name, pkg, watchdogLine] of [
    ['never says ready', () => hang, 'watchdog-expired'],
    ['goes silent after ready', () => silent, 'watchdog-expired'],
  ] as const) {
    test(`a trial that hangs (${name}) is killed by the watchdog and the device returns to slot A`, async () => {
      const state = await newDevice();
      const dev = new DeviceProcess(state, ['--watchdog', '800']);
      await dev.waitFor(/ready in/);
      assert.equal((await cli(['device', 'sideload', '--state', state, pkg().file])).code, 0);
      await dev.waitFor(/trial-abandoned/, 30_000);
      await dev.waitFor(/runtime 1\.0\.0 \(slot A\) ready/, 10_000, 2);
      assert.equal(kinds(state).filter((x) => x === watchdogLine).length, 3);
      assert.deepEqual(bootState(state), { schema: 1, committed: 'A', trial: null, floor: 1 });
      await dev.stop();
    });
  }

  test('a trial that never passes its health check (no attestation) gives up and is never committed', async () => {
    const state = await newDevice();
    const dev = new DeviceProcess(state, ['--health-timeout', '600']);
    await dev.waitFor(/ready in/);
    assert.equal((await cli(['device', 'sideload', '--state', state, rt2.file])).code, 0);
    await dev.waitFor(/trial-abandoned/, 30_000);
    assert.equal((dev.out.match(/trial health check failed \(health check timed out\)/g) ?? []).length, 3);
    assert.deepEqual(bootState(state), { schema: 1, committed: 'A', trial: null, floor: 1 });
    await dev.stop();
  });

  test("the runtime gets none of the caller's environment (no tokens, no NODE_OPTIONS)", async () => {
    const probe = await kit.pack('env-probe', '1.0.1', 1, {
      from: writeModule(
        dir,
        'env-probe.mjs',
        "process.send?.({ type: 'ready' });\nconsole.log('ENV=' + Object.keys(process.env).sort().join(','));\nsetInterval(() => process.send?.({ type: 'heartbeat' }), 100);\n",
      ),
    });
    const state = await newDevice(probe.file);
    const dev = new DeviceProcess(state, [], {
      ...process.env,
      HEPTAD_TOKEN: 'hpt_secret_operator_token',
      NODE_OPTIONS: '--max-old-space-size=100',
    });
    await dev.waitFor(/ENV=/);
    const keys = /ENV=(.*)/.exec(dev.out)?.[1]?.split(',') ?? [];
    assert.deepEqual(
      keys.filter((k) => !k.startsWith('HEPTAD_') || k === 'HEPTAD_TOKEN'),
      [],
      `the runtime saw ${keys.join(',')}`,
    );
    assert.deepEqual(
      keys.filter((k) => k !== 'TZ'),
      ['HEPTAD_BOOT', 'HEPTAD_DEVICE_STATE', 'HEPTAD_RUNTIME_SETTINGS'],
    );
    await dev.stop();
  });

  test('a committed runtime that crashes is restarted (with a pause), not abandoned', async () => {
    const state = await newDevice(crash.file);
    const dev = new DeviceProcess(state);
    await dev.waitFor(/runtime 2\.0\.0 exited \(3\)/, 10_000, 2);
    assert.ok(dev.child.exitCode === null, 'the device keeps trying');
    assert.deepEqual(bootState(state), { schema: 1, committed: 'A', trial: null, floor: 2 });
    await dev.stop();
  });

  test('wrong permissions on the state or secrets folder: DEVICE_STATE_PERMISSIONS, then boots once fixed', async () => {
    const state = await newDevice();
    for (const [path, mode] of [
      [state, 0o755],
      [state, 0o770],
      [join(state, 'secrets'), 0o705],
    ] as const) {
      chmodSync(path, mode);
      const dev = new DeviceProcess(state);
      const end = await dev.exited;
      assert.equal(end.code, 1, dev.out);
      assert.match(dev.out, /heptad: DEVICE_STATE_PERMISSIONS: /);
      assert.doesNotMatch(dev.out, /ready in/);
      chmodSync(path, 0o700);
    }
    assert.equal(existsSync(join(state, 'run')), false, 'nothing was started');
    const dev = new DeviceProcess(state);
    await dev.waitFor(/ready in/);
    await dev.stop();
  });

  test('one device run per state folder: BOOT_ALREADY_RUNNING; a stale lock from a dead run is taken over', async () => {
    const state = await newDevice();
    const first = new DeviceProcess(state);
    await first.waitFor(/ready in/);
    const second = new DeviceProcess(state);
    assert.equal((await second.exited).code, 1);
    assert.match(second.out, /heptad: BOOT_ALREADY_RUNNING: /);
    await first.powerCut();
    // kill -9 left its lock behind; its holder is dead, so the next power-on proceeds.
    assert.equal(existsSync(join(state, 'run.lock')), true);
    const third = new DeviceProcess(state);
    await third.waitFor(/ready in/);
    await third.stop();
  });

  /** Damages the package in slot A of `state` in one of the ways the bootloader must refuse. */
  const damage: Array<[string, (pkg: Buffer) => Buffer, RegExp]> = [
    ['truncated', (p) => p.subarray(0, p.length - 40), /IMAGE_/],
    ['byte flipped in the payload', (p) => flip(p, signedRegionEnd(p) - 100), /IMAGE_SIGNATURE_INVALID/],
    ['byte flipped in the manifest', (p) => flip(p, 40), /IMAGE_SIGNATURE_INVALID/],
    [
      'byte flipped in a signature',
      (p) => flip(p, p.length - 5),
      /IMAGE_SIGNATURE_INVALID|IMAGE_SIGNATURE_MALFORMED/,
    ],
    ['emptied', () => Buffer.alloc(0), /IMAGE_/],
  ];
  function flip(p: Buffer, at: number): Buffer {
    const c = Buffer.from(p);
    c[at] = (c[at] ?? 0) ^ 0x01;
    return c;
  }

  for (const [name, harm, code] of damage) {
    test(`committed slot ${name}: refused, the other slot boots, slot-refused is reported`, async () => {
      const state = await newDevice();
      const good = readFileSync(join(state, 'slots/A/runtime.hpkg'));
      put(join(state, 'slots/B/runtime.hpkg'), good);
      put(join(state, 'slots/A/runtime.hpkg'), harm(good));
      const dev = new DeviceProcess(state);
      await dev.waitFor(/ready in/);
      assert.match(dev.out, /boot: slot B runtime 1\.0\.0/);
      const refused = events(state).find((e) => e['kind'] === 'slot-refused');
      assert.equal(refused?.['slot'], 'A');
      assert.match(String(refused?.['code']), code);
      await dev.stop();
    });
  }

  test('signed by another key, or a valid signature grafted onto another manifest: never booted', async () => {
    const other = await kit.pack('other-signed', '1.0.0', 1, { sign: false });
    // rt1's signature block after rt2's signed region: a genuine platform signature, over other bytes.
    const a = readFileSync(rt1.file);
    const b = readFileSync(rt2.file);
    const grafted = Buffer.concat([b.subarray(0, signedRegionEnd(b)), a.subarray(signedRegionEnd(a))]);
    for (const [name, bad, code] of [
      ['build key only', readFileSync(other.file), 'IMAGE_SIGNATURE_UNTRUSTED'],
      ['grafted signature', grafted, 'IMAGE_SIGNATURE_INVALID'],
    ] as const) {
      // With a good slot B: the device boots it and reports the refused slot.
      const state = await newDevice();
      put(join(state, 'slots/B/runtime.hpkg'), readFileSync(join(state, 'slots/A/runtime.hpkg')));
      put(join(state, 'slots/A/runtime.hpkg'), bad);
      let dev = new DeviceProcess(state);
      await dev.waitFor(/ready in/);
      assert.match(dev.out, /boot: slot B runtime 1\.0\.0/, name);
      assert.deepEqual(
        events(state)
          .filter((e) => e['kind'] === 'slot-refused')
          .map((e) => [e['slot'], e['code']]),
        [['A', code]],
        name,
      );
      await dev.stop();
      // With no good slot at all: the device halts with a code and runs nothing.
      put(join(state, 'slots/B/runtime.hpkg'), bad);
      dev = new DeviceProcess(state);
      assert.equal((await dev.exited).code, 1, name);
      assert.match(dev.out, /heptad: BOOT_NO_VALID_RUNTIME: /);
      assert.doesNotMatch(dev.out, /boot: slot|\[runtime\]/);
      const halted = await status(state);
      assert.equal(halted['phase'], 'halted');
      assert.equal(halted['haltCode'], 'BOOT_NO_VALID_RUNTIME');
    }
  });

  test('a slot below the anti-rollback floor is refused at boot (BOOT_BELOW_FLOOR) and at sideload (BOOT_ROLLBACK_REFUSED)', async () => {
    const state = await newDevice(rt2.file); // floor 2
    put(join(state, 'slots/B/runtime.hpkg'), readFileSync(rt1.file));
    writeFileSync(
      join(state, 'boot.json'),
      JSON.stringify({ schema: 1, committed: 'B', trial: null, floor: 2 }),
    );
    const dev = new DeviceProcess(state);
    await dev.waitFor(/ready in/);
    assert.match(dev.out, /boot: slot A runtime 1\.1\.0/);
    assert.deepEqual(
      events(state)
        .filter((e) => e['kind'] === 'slot-refused')
        .map((e) => [e['slot'], e['code']]),
      [['B', 'BOOT_BELOW_FLOOR']],
    );
    const side = await cli(['device', 'sideload', '--state', state, rt1.file]);
    assert.equal(side.code, 1);
    assert.match(side.err, /^heptad: BOOT_ROLLBACK_REFUSED: /);
    assert.equal(existsSync(join(state, 'incoming')), false);
    await dev.stop();
  });

  for (const [name, content] of [
    ['corrupted', '{"schema":1,"committed":"A","trial":nul'],
    ['missing', null],
    ['naming an unknown slot', '{"schema":1,"committed":"C","trial":null,"floor":1}'],
  ] as const) {
    test(`boot.json ${name}: the device still boots the verified slot`, async () => {
      const state = await newDevice();
      if (content === null) rmSync(join(state, 'boot.json'));
      else writeFileSync(join(state, 'boot.json'), content);
      const dev = new DeviceProcess(state);
      await dev.waitFor(/ready in/);
      assert.match(dev.out, /boot: slot A runtime 1\.0\.0/);
      await dev.stop();
    });
  }

  test('sideload refuses what the device would refuse, and stages nothing', async () => {
    const state = await newDevice();
    const unsigned = await kit.pack('unsigned', '3.0.0', 3, { sign: false });
    const truncated = join(dir, 'truncated.hpkg');
    writeFileSync(truncated, readFileSync(rt2.file).subarray(0, 100));
    for (const [file, code] of [
      [unsigned.file, 'IMAGE_SIGNATURE_UNTRUSTED'],
      [truncated, 'IMAGE_TRUNCATED'],
      [join(dir, 'nope.hpkg'), 'CLI_FILE_UNREADABLE'],
    ] as const) {
      const r = await cli(['device', 'sideload', '--state', state, file]);
      assert.equal(r.code, 1, file);
      assert.match(r.err, new RegExp(`^heptad: ${code}: `));
    }
    assert.equal(existsSync(join(state, 'incoming')), false);
    const notDevice = await cli(['device', 'sideload', '--state', dir, rt2.file]);
    assert.match(notDevice.err, /^heptad: DEVICE_STATE_INVALID: /);
  });

  test('a damaged package staged behind sideload’s back is refused by the runtime: install-refused, slots unchanged', async () => {
    const state = await newDevice();
    const dev = new DeviceProcess(state);
    await dev.waitFor(/ready in/);
    const slotB = existsSync(join(state, 'slots/B/runtime.hpkg'));
    put(join(state, 'incoming/runtime.hpkg'), flip(readFileSync(rt2.file), 60));
    await dev.waitFor(/runtime package refused: IMAGE_SIGNATURE_INVALID/);
    assert.equal(existsSync(join(state, 'incoming/runtime.hpkg')), false);
    assert.equal(existsSync(join(state, 'slots/B/runtime.hpkg')), slotB);
    assert.deepEqual(bootState(state), { schema: 1, committed: 'A', trial: null, floor: 1 });
    assert.equal(events(state).at(-1)?.['code'], 'IMAGE_SIGNATURE_INVALID');
    await dev.stop();
  });

  test('a device manufactured without a runtime: BOOT_NO_PLATFORM_KEY', async () => {
    const state = join(dir, 'bare');
    assert.equal(
      (await cli(['device', 'manufacture', '--state', state, '--rot', 'soft', '--service', NO_SERVICE])).code,
      0,
    );
    const dev = new DeviceProcess(state);
    assert.equal((await dev.exited).code, 1);
    assert.match(dev.out, /heptad: BOOT_NO_PLATFORM_KEY: /);
    assert.equal((await status(state))['slots'], null);
  });

  test('kill -9 of the whole device at random instants during an install: it always boots a platform-signed runtime', async () => {
    const pub = createPublicKey(readFileSync(kit.platformPub));
    const keys = new Map([[keyIdOf(pub), pub]]);
    // A 24 MiB runtime package (the real bundle plus a filler file), so that writing, syncing and
    // verifying the slot takes long enough for random cuts to land inside the install.
    const base = verifyPackage(readFileSync(rt2.file), keys);
    const big = buildPackage({
      manifest: {
        ...base.manifest,
        version: '1.2.0',
        imageId: randomUUID(),
        createdAt: new Date().toISOString(),
      },
      files: [
        ...base.files.map((f) => ({ path: f.path, content: f.content })),
        { path: 'filler.bin', content: randomBytes(24 << 20) },
      ],
      signers: [{ privateKey: createPrivateKey(readFileSync(kit.platformKey)) }],
    });
    const bigFile = join(dir, 'big.hpkg');
    writeFileSync(bigFile, big);
    const bigDigest = verifyPackage(big, keys).digest;
    const signed = new Set([rt1.digest, bigDigest]);
    const CUTS = 16;
    const seen = new Map<string, number>();
    for (let i = 0; i < CUTS; i++) {
      const state = await newDevice();
      const dev = new DeviceProcess(state);
      await dev.waitFor(/ready in/);
      assert.equal((await cli(['device', 'sideload', '--state', state, bigFile])).code, 0);
      // The runtime looks for staged packages once a second, then writes slot B, verifies it,
      // writes boot.json, removes the staged file and reboots into the trial. Even cuts: at a
      // random instant in the next 2 s. Odd cuts: aimed at the install itself — a random 0–60 ms
      // after the first write under slots/ appears (it lasts only tens of ms).
      if (i % 2 === 0) {
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 2_000)));
      } else {
        await new Promise<void>((resolve) => {
          const w = watch(join(state, 'slots'), { recursive: true }, () => {
            w.close();
            setTimeout(resolve, Math.floor(Math.random() * 60));
          });
        });
      }
      await dev.powerCut();
      const slotB = join(state, 'slots/B/runtime.hpkg');
      const where = [
        existsSync(join(state, 'incoming/runtime.hpkg')) ? 'staged' : 'unstaged',
        existsSync(slotB)
          ? `slot B ${readFileSync(slotB).length === big.length ? 'written' : 'partial'}`
          : 'slot B empty',
        bootState(state)['trial'] === null ? 'no trial' : 'trial pending',
      ].join(', ');
      seen.set(where, (seen.get(where) ?? 0) + 1);
      // Power on again: a verified runtime boots, old or new, never neither.
      const again = new DeviceProcess(state);
      await again.waitFor(/ready in/, 20_000);
      const s = await status(state);
      const booted = String(s.runtime?.['digest']);
      assert.ok(signed.has(booted), `cut ${i} (${where}): booted ${booted}`);
      // What the bootloader ran verifies against the platform key, byte for byte.
      const slot = String(s.runtime?.['slot']);
      assert.equal(
        verifyPackage(readFileSync(join(state, `slots/${slot}/runtime.hpkg`)), keys).digest,
        booted,
      );
      await again.powerCut();
      rmSync(state, { recursive: true, force: true });
    }
    console.log(
      `# kill -9 cuts: ${CUTS}; state found after the cut: ${JSON.stringify(Object.fromEntries(seen))}`,
    );
  });
});

function put(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
}

/** Where a package's signed region ends (image-package.md §2: 20 + M + P). */
function signedRegionEnd(pkg: Buffer): number {
  return 20 + pkg.readUInt32BE(8) + Number(pkg.readBigUInt64BE(12));
}
