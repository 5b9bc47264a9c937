// The parts of `heptad device run` around the bootloader, each branch: measured boot (power-on,
// log reconcile after a cut between log write and extend), pending device events (cap, damage,
// acknowledgement, the service's rules), the platform runtime-signing keys from the read-only
// area, and the state folder permission check.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  HeptadError,
  keyIdOf,
  MAX_REPORT_EVENTS,
  type MeasurementEntry,
  replayMeasurements,
} from '@heptad/protocol';
import { acknowledgeEvents, appendEvents, EVENTS_PATH, readEvents } from '../src/boot/events.ts';
import { measure, powerOn, reconcile } from '../src/boot/measure.ts';
import { loadPlatformKeys, parseRuntimeSigners, RUNTIME_SIGNERS_PATH } from '../src/boot/platform-keys.ts';
import { checkStatePermissions } from '../src/boot/run.ts';
import { SoftRootOfTrust } from '../src/rot/soft/soft-root-of-trust.ts';
import { FaultyStorage } from '../src/state/storage.ts';

const root = mkdtempSync(join(tmpdir(), 'heptad-runparts-'));
after(() => rmSync(root, { recursive: true, force: true }));
const digest = (c: string) => c.repeat(64);
const entry = (c: string): MeasurementEntry => ({ kind: 'runtime', digest: digest(c) });
const replay = (log: MeasurementEntry[]) => replayMeasurements(log.map((e) => Buffer.from(e.digest, 'hex')));

describe('measured boot', () => {
  test('reconcile keeps the longest prefix that replays to the register, or none', () => {
    const log = [entry('a'), entry('b'), entry('c')];
    assert.deepEqual(reconcile(log, replay(log)), log);
    // A cut after the log write and before the extend: one entry too many, dropped.
    assert.deepEqual(reconcile(log, replay(log.slice(0, 2))), log.slice(0, 2));
    assert.deepEqual(reconcile(log, Buffer.alloc(32)), []);
    assert.equal(reconcile(log, replay([entry('d')])), undefined);
  });

  test('powerOn resets a soft root of trust; measure logs first, then extends', async () => {
    const dir = join(root, 'soft');
    mkdirSync(dir);
    const rot = SoftRootOfTrust.create(dir);
    await rot.extend(15, Buffer.from(digest('e'), 'hex')); // left over from an earlier boot
    assert.equal(await powerOn({ kind: 'soft' }, dir), 'reset');
    assert.deepEqual((await rot.readRegisters([15])).get(15), Buffer.alloc(32));
    let stored: MeasurementEntry[] = [entry('f')]; // a stale log from before the reset
    const order: string[] = [];
    const fake = {
      ...rot,
      readRegisters: rot.readRegisters.bind(rot),
      extend: async (pcr: number, d: Buffer) => {
        order.push('extend');
        await rot.extend(pcr, d);
      },
    };
    const r = await measure(
      {
        rot: fake as unknown as SoftRootOfTrust,
        pcr: 15,
        readLog: () => stored,
        writeLog: (l) => {
          order.push('log');
          stored = [...l];
        },
      },
      entry('1'),
    );
    assert.deepEqual(order, ['log', 'extend']);
    assert.equal(r.inSync, true);
    assert.deepEqual(stored, [entry('1')], 'the stale entry is gone: the register was reset');
    assert.deepEqual((await rot.readRegisters([15])).get(15), replay(stored));
  });

  test('a register extended by something else: still measured, reported out of sync, log is what this boot did', async () => {
    const dir = join(root, 'foreign');
    mkdirSync(dir);
    const rot = SoftRootOfTrust.create(dir);
    await rot.extend(15, Buffer.from(digest('9'), 'hex'));
    let stored: MeasurementEntry[] = [];
    const r = await measure(
      { rot, pcr: 15, readLog: () => stored, writeLog: (l) => (stored = [...l]) },
      entry('2'),
    );
    assert.equal(r.inSync, false);
    assert.deepEqual(stored, [entry('2')]);
    assert.notDeepEqual((await rot.readRegisters([15])).get(15), replay(stored));
  });

  test('a damaged log reads as empty, and a TPM chip is never power-cycled by software', async () => {
    const dir = join(root, 'damaged');
    mkdirSync(dir);
    const rot = SoftRootOfTrust.create(dir);
    let stored: MeasurementEntry[] = [];
    const r = await measure(
      {
        rot,
        pcr: 15,
        readLog: () => {
          throw new HeptadError('DEVICE_STATE_INVALID', 'damaged');
        },
        writeLog: (l) => (stored = [...l]),
      },
      entry('3'),
    );
    assert.equal(r.inSync, true);
    assert.deepEqual(stored, [entry('3')]);
    assert.equal(
      await powerOn({ kind: 'tpm', transport: 'device', path: '/dev/tpmrm0' }, dir),
      'carried-over',
    );
    // A TCP TPM without a control channel is treated like a chip.
    assert.equal(
      await powerOn({ kind: 'tpm', transport: 'tcp', host: '127.0.0.1', port: 8 }, dir),
      'carried-over',
    );
  });
});

describe('pending device events', () => {
  const at = new Date('2026-11-22T01:02:03.004Z');

  test('append stamps, caps to the newest MAX_REPORT_EVENTS, and acknowledge removes exactly what was sent', () => {
    const s = new FaultyStorage();
    assert.deepEqual(readEvents(s), []);
    appendEvents(s, [{ kind: 'trial-started', slot: 'B', version: '1.1.0', digest: digest('a') }], at);
    assert.deepEqual(readEvents(s), [
      { at: at.toISOString(), kind: 'trial-started', slot: 'B', version: '1.1.0', digest: digest('a') },
    ]);
    for (let i = 0; i < MAX_REPORT_EVENTS + 5; i++)
      appendEvents(s, [{ kind: 'runtime-exited', code: String(i) }], at);
    const all = readEvents(s);
    assert.equal(all.length, MAX_REPORT_EVENTS);
    assert.equal(all.at(-1)?.code, String(MAX_REPORT_EVENTS + 4), 'the newest are kept');
    const sent = all.slice(0, 10);
    appendEvents(s, [{ kind: 'watchdog-expired' }], at); // arrives while the report travels
    acknowledgeEvents(s, sent);
    const left = readEvents(s);
    assert.equal(left.length, MAX_REPORT_EVENTS - 10 + 1);
    assert.equal(left.at(-1)?.kind, 'watchdog-expired');
    acknowledgeEvents(s, left);
    assert.equal(s.read(EVENTS_PATH), undefined, 'nothing pending: the file is gone');
    acknowledgeEvents(s, []);
  });

  test('codes are cut to the report format; events the service would refuse are never kept', () => {
    const s = new FaultyStorage();
    appendEvents(s, [{ kind: 'install-refused', code: 'SIGSEGV: core dumped!'.repeat(10) }], at);
    const [e] = readEvents(s);
    assert.match(String(e?.code), /^[A-Za-z0-9_.-]{1,64}$/);
    appendEvents(s, [{ kind: 'trial-started', version: 'not a version' }], at);
    appendEvents(s, [{ kind: 'nonsense' as 'trial-started' }], at);
    appendEvents(s, [{ kind: 'trial-started', digest: 'XYZ' }], at);
    assert.equal(readEvents(s).length, 1);
  });

  for (const [name, content] of [
    ['not JSON', '[{"at":'],
    ['not a list', '{"kind":"trial-started"}'],
    ['a list of junk', '[1,"x",null,{"kind":"trial-started","at":"yesterday"}]'],
  ] as const) {
    test(`a damaged events file (${name}) reads as empty and is replaced on the next append`, () => {
      const s = new FaultyStorage();
      s.write(EVENTS_PATH, Buffer.from(content));
      assert.deepEqual(readEvents(s), []);
      appendEvents(s, [{ kind: 'slot-refused', slot: 'A', code: 'IMAGE_TRUNCATED' }], at);
      assert.equal(readEvents(s).length, 1);
    });
  }
});

describe('platform runtime-signing keys', () => {
  const pem = (k = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey) =>
    k.export({ format: 'pem', type: 'spki' }).toString();

  test('one or more P-256 keys, by key id', () => {
    const a = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
    const keys = parseRuntimeSigners(`${pem(a)}\n${pem()}`);
    assert.equal(keys.size, 2);
    assert.ok(keys.has(keyIdOf(a)));
    const s = new FaultyStorage();
    s.write(RUNTIME_SIGNERS_PATH, Buffer.from(pem(a)));
    assert.deepEqual([...loadPlatformKeys(s).keys()], [keyIdOf(a)]);
  });

  for (const [name, content, code] of [
    ['empty', '', 'BOOT_NO_PLATFORM_KEY'],
    ['no PEM block', 'hello', 'BOOT_NO_PLATFORM_KEY'],
    ['a damaged block', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----', 'BOOT_NO_PLATFORM_KEY'],
    ['more than 8 keys', Array.from({ length: 9 }, () => pem()).join('\n'), 'BOOT_NO_PLATFORM_KEY'],
    [
      'an RSA key',
      generateKeyPairSync('rsa', { modulusLength: 1024 })
        .publicKey.export({ format: 'pem', type: 'spki' })
        .toString(),
      'IMAGE_KEY_UNSUPPORTED',
    ],
    [
      'a P-384 key',
      generateKeyPairSync('ec', { namedCurve: 'secp384r1' })
        .publicKey.export({ format: 'pem', type: 'spki' })
        .toString(),
      'IMAGE_KEY_UNSUPPORTED',
    ],
  ] as const) {
    test(`refused: ${name} (${code})`, () => {
      assert.throws(
        () => parseRuntimeSigners(content),
        (e: unknown) => e instanceof HeptadError && e.code === code,
      );
    });
  }

  test('no key file in the read-only area: BOOT_NO_PLATFORM_KEY', () => {
    assert.throws(
      () => loadPlatformKeys(new FaultyStorage()),
      (e: unknown) => e instanceof HeptadError && e.code === 'BOOT_NO_PLATFORM_KEY',
    );
  });
});

describe('state folder permissions', () => {
  const make = (name: string, mode: number, secretsMode = 0o700) => {
    const d = join(root, name);
    mkdirSync(join(d, 'secrets'), { recursive: true });
    chmodSync(d, mode);
    chmodSync(join(d, 'secrets'), secretsMode);
    return d;
  };
  test('0700 state and secrets pass', () => {
    checkStatePermissions(make('ok', 0o700));
  });
  for (const [name, mode, secrets] of [
    ['world-readable state', 0o705, 0o700],
    ['group-writable state', 0o770, 0o700],
    ['open secrets', 0o700, 0o755],
  ] as const) {
    test(`refused: ${name}`, () => {
      const d = make(name.replace(/ /g, '-'), mode, secrets);
      assert.throws(
        () => checkStatePermissions(d),
        (e: unknown) => e instanceof HeptadError && e.code === 'DEVICE_STATE_PERMISSIONS',
      );
    });
  }
  test('missing folder, or a file in its place: DEVICE_STATE_INVALID', () => {
    assert.throws(
      () => checkStatePermissions(join(root, 'nope')),
      (e: unknown) => e instanceof HeptadError && e.code === 'DEVICE_STATE_INVALID',
    );
    const f = join(root, 'file');
    writeFileSync(f, '');
    assert.throws(
      () => checkStatePermissions(f),
      (e: unknown) => e instanceof HeptadError && e.code === 'DEVICE_STATE_INVALID',
    );
  });
});
