// The app store (issue 6): install into the inactive slot as a trial, commit, roll back, remove,
// list; every refusal fed the bad thing and changing nothing; and a power cut at every write of
// install, commit and rollback leaves a store that names only slots that verify — the old app or
// the new one, never neither (the harness of boot-power-cut.test.ts).
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { buildPackage, type JsonObject, RUNTIME_COMPONENT_ID } from '@heptad/protocol';
import {
  APP_STORE_PATH,
  addDeveloperKeys,
  commitApp,
  installApp,
  listApps,
  loadAppStore,
  readAppSlot,
  removeApp,
  rollbackApp,
  setAppDevelopment,
  setImageKeys,
} from '../src/apps/index.ts';
import { FaultyStorage, PowerCut } from '../src/state/storage.ts';

const pem = (k: KeyObject) => String(k.export({ type: 'spki', format: 'pem' }));
const tenant = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const dev = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

const BLINK = randomUUID();
const OTHER = randomUUID();

function app(opts: {
  componentId?: string;
  name?: string;
  version?: string;
  sv?: number;
  caps?: JsonObject;
  key?: KeyObject;
  type?: 'application' | 'runtime';
}): Buffer {
  const componentId = opts.componentId ?? BLINK;
  const name = opts.name ?? 'blink';
  const type = opts.type ?? 'application';
  return buildPackage({
    manifest: {
      componentId,
      imageId: randomUUID(),
      name,
      version: opts.version ?? '1.0.0',
      securityVersion: opts.sv ?? 0,
      type,
      entryPoint: 'main.js',
      ...(type === 'application'
        ? {
            appManifest: {
              SchemaVersion: 1,
              Name: name,
              ComponentId: componentId,
              EntryPoint: 'main.js',
              Capabilities: opts.caps ?? { Gpio: ['LED1'] },
            },
          }
        : {}),
      createdAt: '2026-01-01T00:00:00.000Z',
    },
    files: [{ path: 'main.js', content: Buffer.alloc(2048, opts.version ?? '1') }],
    signers: [{ privateKey: opts.key ?? tenant.privateKey }],
  });
}

function device(): FaultyStorage {
  const s = new FaultyStorage();
  setImageKeys(s, pem(tenant.publicKey));
  return s;
}

const V1 = app({ version: '1.0.0', sv: 1 });
const V2 = app({ version: '2.0.0', sv: 2 });

describe('app store', () => {
  test('installs as a trial, commits, installs the next into the other slot, rolls back', () => {
    const s = device();
    const r = installApp(s, V1);
    assert.equal(r.componentId, BLINK);
    assert.equal(r.slot, 'A');
    assert.equal(r.verified.devSigned, false);
    assert.deepEqual(loadAppStore(s).apps[BLINK], {
      committed: null,
      trial: { slot: 'A', startsLeft: 3 },
      floor: 0,
    });
    assert.deepEqual(commitApp(s, BLINK), { slot: 'A', floor: 1 });
    assert.equal(installApp(s, V2).slot, 'B');
    let [l] = listApps(s);
    assert.equal(l?.version, '2.0.0');
    assert.equal(l?.trial, true);
    assert.deepEqual(rollbackApp(s, BLINK), { slot: 'A' });
    [l] = listApps(s);
    assert.equal(l?.version, '1.0.0');
    assert.equal(l?.trial, false);
    removeApp(s, BLINK);
    assert.deepEqual(listApps(s), []);
    assert.equal(s.read(`apps/${BLINK}/A/app.hpkg`), undefined);
  });

  test('rolling back a first install leaves nothing installed', () => {
    const s = device();
    installApp(s, V1);
    assert.deepEqual(rollbackApp(s, BLINK), { slot: null });
    assert.deepEqual(listApps(s), []);
  });

  const refusals: Array<[string, string, (s: FaultyStorage) => void, () => Buffer]> = [
    [
      'APP_SIGNATURE_UNTRUSTED/signed by an unknown key',
      'APP_SIGNATURE_UNTRUSTED',
      () => {},
      () => app({ key: stranger.privateKey }),
    ],
    [
      'APP_SIGNATURE_UNTRUSTED/dev-signed without app development',
      'APP_SIGNATURE_UNTRUSTED',
      () => {},
      () => app({ key: dev.privateKey }),
    ],
    [
      'APP_RUNTIME_COMPONENT/a runtime package',
      'APP_RUNTIME_COMPONENT',
      () => {},
      () => app({ type: 'runtime', componentId: RUNTIME_COMPONENT_ID }),
    ],
    [
      'APP_PERIPHERAL_UNKNOWN/a peripheral not on the board',
      'APP_PERIPHERAL_UNKNOWN',
      () => {},
      () => app({ caps: { Gpio: ['LED9'] } }),
    ],
    [
      'APP_PERIPHERAL_TAKEN/a pin another app owns',
      'APP_PERIPHERAL_TAKEN',
      (s) => {
        installApp(s, app({ componentId: OTHER, name: 'other', caps: { Gpio: ['LED1'] } }));
      },
      () => V1,
    ],
    [
      'APP_PORT_TAKEN/a server port another app owns',
      'APP_PORT_TAKEN',
      (s) => {
        installApp(s, app({ componentId: OTHER, name: 'other', caps: { AllowedTcpServerPorts: [8080] } }));
      },
      () => app({ caps: { AllowedTcpServerPorts: [8080] } }),
    ],
    [
      'APP_ROLLBACK_REFUSED/below the committed floor',
      'APP_ROLLBACK_REFUSED',
      (s) => {
        installApp(s, V2);
        commitApp(s, BLINK);
      },
      () => V1,
    ],
    [
      'IMAGE_SIGNATURE_INVALID/a tampered package',
      'IMAGE_SIGNATURE_INVALID',
      () => {},
      () => {
        const b = Buffer.from(V1);
        const at = b.indexOf(Buffer.alloc(64, '1.0.0')); // inside main.js
        b[at] = (b[at] ?? 0) ^ 1;
        return b;
      },
    ],
    ['IMAGE_TRUNCATED/half a package', 'IMAGE_TRUNCATED', () => {}, () => V1.subarray(0, V1.length >> 1)],
  ];
  for (const [name, code, setup, pkg] of refusals) {
    test(`refuses and changes nothing: ${name}`, () => {
      const s = device();
      setup(s);
      const before = s.snapshot();
      assert.throws(
        () => installApp(s, pkg()),
        (e: { code?: string }) => {
          // IMAGE_TRUNCATED or another IMAGE_ structural code for a cut package
          if (code === 'IMAGE_TRUNCATED') return /^IMAGE_/.test(String(e.code));
          return e.code === code;
        },
      );
      assert.deepEqual(s.snapshot(), before);
    });
  }

  test('a dev-signed app installs only while app development is enabled, and stops verifying when it is disabled', () => {
    const s = device();
    assert.throws(() => addDeveloperKeys(s, pem(dev.publicKey)), { code: 'APP_SIGNATURE_UNTRUSTED' });
    setAppDevelopment(s, true);
    addDeveloperKeys(s, pem(dev.publicKey));
    const r = installApp(s, app({ key: dev.privateKey }));
    assert.equal(r.verified.devSigned, true);
    assert.equal(listApps(s)[0]?.devSigned, true);
    setAppDevelopment(s, false);
    assert.throws(() => readAppSlot(s, BLINK, 'A'), { code: 'APP_SLOT_INVALID' });
    assert.equal(listApps(s)[0]?.problem, 'APP_SIGNATURE_UNTRUSTED');
  });

  test('commit and rollback without a trial, and unknown apps, are refused', () => {
    const s = device();
    assert.throws(() => commitApp(s, BLINK), { code: 'APP_NOT_INSTALLED' });
    assert.throws(() => removeApp(s, BLINK), { code: 'APP_NOT_INSTALLED' });
    installApp(s, V1);
    commitApp(s, BLINK);
    assert.throws(() => commitApp(s, BLINK), { code: 'APP_NO_TRIAL' });
    assert.throws(() => rollbackApp(s, BLINK), { code: 'APP_NO_TRIAL' });
  });

  test('a damaged store record is APP_STORE_INVALID, and the next install rewrites it', () => {
    const s = device();
    for (const bad of [
      '{',
      '{"schema":1,"apps":{"x":{}}}',
      `{"schema":1,"apps":{"${BLINK}":{"committed":"A","trial":{"slot":"A","startsLeft":1},"floor":0}}}`,
    ]) {
      s.write(APP_STORE_PATH, Buffer.from(bad));
      assert.throws(() => listApps(s), { code: 'APP_STORE_INVALID' });
    }
    installApp(s, V1);
    assert.equal(listApps(s).length, 1);
  });
});

describe('app store: power cut at every write', () => {
  const scenarios: Array<{
    name: string;
    setup: () => FaultyStorage;
    run: (s: FaultyStorage) => void;
    allowed: string[];
  }> = [
    {
      name: 'install v2 over committed v1',
      setup: () => {
        const s = device();
        installApp(s, V1);
        commitApp(s, BLINK);
        return s.reboot();
      },
      run: (s) => installApp(s, V2),
      allowed: ['1.0.0', '2.0.0'],
    },
    {
      name: 'install v2 over a pending trial of v2',
      setup: () => {
        const s = device();
        installApp(s, V1);
        commitApp(s, BLINK);
        installApp(s, app({ version: '2.0.0', sv: 2 }));
        return s.reboot();
      },
      run: (s) => installApp(s, V2),
      allowed: ['1.0.0', '2.0.0'],
    },
    {
      name: 'commit v2',
      setup: () => {
        const s = device();
        installApp(s, V1);
        commitApp(s, BLINK);
        installApp(s, V2);
        return s.reboot();
      },
      run: (s) => commitApp(s, BLINK),
      allowed: ['1.0.0', '2.0.0'],
    },
    {
      name: 'roll back v2',
      setup: () => {
        const s = device();
        installApp(s, V1);
        commitApp(s, BLINK);
        installApp(s, V2);
        return s.reboot();
      },
      run: (s) => rollbackApp(s, BLINK),
      allowed: ['1.0.0', '2.0.0'],
    },
  ];
  for (const sc of scenarios) {
    test(`the store names a verifying slot after a cut at every write: ${sc.name}`, (t) => {
      const clean = sc.setup();
      const w0 = clean.writes;
      sc.run(clean);
      const writes = clean.writes - w0;
      assert.ok(writes > 0);
      for (const mode of ['clean', 'torn'] as const) {
        for (let k = 1; k <= writes; k++) {
          const s = sc.setup().crashAfter(k, mode);
          assert.throws(() => sc.run(s), PowerCut);
          const after = s.reboot();
          const apps = listApps(after);
          assert.equal(apps.length, 1, `cut ${mode} at write ${k}`);
          const a = apps[0];
          assert.equal(a?.problem, undefined, `cut ${mode} at write ${k}: ${a?.problem}`);
          assert.ok(sc.allowed.includes(String(a?.version)), `cut ${mode} at ${k}: ${a?.version}`);
          // …and the operation can be done again after power comes back.
          const committed = loadAppStore(after).apps[BLINK];
          if (committed?.trial) commitApp(after, BLINK);
          installApp(after, app({ version: '3.0.0', sv: 3 }));
          commitApp(after, BLINK);
          assert.equal(listApps(after)[0]?.version, '3.0.0');
        }
      }
      t.diagnostic(`${sc.name}: ${writes} writes, ${2 * writes} cut points`);
    });
  }
});
