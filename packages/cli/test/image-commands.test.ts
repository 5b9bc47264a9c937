// heptad image pack / add / list / show / download / signing-key against a live service
// (issue 5, image packages): an app folder becomes a developer-signed package, the service
// re-signs it with the tenant key, and the download verifies with that key. Bad folders and
// packages get their codes.
import assert from 'node:assert/strict';
import { createPublicKey, randomUUID } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keyIdOf, verifyPackage } from '@heptad/protocol';
import type { RunningService } from '@heptad/service';
import { startLiveService } from './support/live-service.ts';
import { runCaptured } from './support/run-cli.ts';

describe('heptad image commands', () => {
  let svc: RunningService;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let contributor: string;
  let reader: string;
  const cli = (argv: string[], extra: NodeJS.ProcessEnv = {}) => runCaptured(argv, { ...env, ...extra }, dir);
  const asContributor = (argv: string[]) => cli(argv, { HEPTAD_TOKEN: contributor });

  function appDir(name: string, manifest: Record<string, unknown> | string): string {
    const d = join(dir, name);
    mkdirSync(join(d, 'lib'), { recursive: true });
    writeFileSync(
      join(d, 'app_manifest.json'),
      typeof manifest === 'string' ? manifest : JSON.stringify(manifest),
    );
    writeFileSync(join(d, 'main.js'), "import './lib/util.js';\n");
    writeFileSync(join(d, 'lib', 'util.js'), 'export const x = 1;\n');
    writeFileSync(join(d, 'run.sh'), '#!/bin/sh\n');
    chmodSync(join(d, 'run.sh'), 0o755);
    return d;
  }
  const manifestOf = (name: string, componentId = randomUUID()) => ({
    SchemaVersion: 1,
    Name: name,
    ComponentId: componentId,
    EntryPoint: 'main.js',
    Capabilities: { Gpio: ['LED1'] },
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-imgcli-'));
    ({ svc, env } = await startLiveService(dir));
    assert.equal((await cli(['tenant', 'create', 'Image Tenant'])).code, 0);
    const mk = async (email: string, role: string) =>
      String(
        (
          await cli(['user', 'create', email, '--tenant', 'Image Tenant', '--role', role, '--output', 'json'])
        ).json()['token'],
      );
    contributor = await mk('dev@example.com', 'Contributor');
    reader = await mk('reader@example.com', 'Reader');
    assert.equal((await cli(['key', 'create', '--out', 'dev.key'])).code, 0);
  });
  after(async () => {
    await svc?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('pack, add, list, show, download: the download is signed by the tenant key', async () => {
    const src = appDir('blink', manifestOf('blink'));
    const packed = await cli([
      'image',
      'pack',
      src,
      '--out',
      'blink.hpkg',
      '--key',
      'dev.key',
      '--version',
      '1.0.0',
      '--output',
      'json',
    ]);
    assert.equal(packed.code, 0, packed.err);
    const local = verifyPackage(
      readFileSync(join(dir, 'blink.hpkg')),
      new Map([
        [
          keyIdOf(createPublicKey(readFileSync(join(dir, 'dev.key.pub')))),
          createPublicKey(readFileSync(join(dir, 'dev.key.pub'))),
        ],
      ]),
    );
    assert.deepEqual(
      local.files.map((f) => [f.path, f.mode]),
      [
        ['app_manifest.json', 0o644],
        ['lib/util.js', 0o644],
        ['main.js', 0o644],
        ['run.sh', 0o755],
      ],
    );
    assert.equal(local.manifest.type, 'application');
    assert.equal(local.manifest.securityVersion, 0);

    const added = await asContributor(['image', 'add', 'blink.hpkg', '--output', 'json']);
    assert.equal(added.code, 0, added.err);
    const id = String(added.json()['id']);
    assert.equal(id, packed.json()['imageId']);
    assert.equal(added.json()['digest'], local.digest);
    // Adding it again is not an error: the same image.
    const again = await asContributor(['image', 'add', 'blink.hpkg', '--output', 'json']);
    assert.equal(again.json()['id'], id);

    const list = await cli(['image', 'list'], { HEPTAD_TOKEN: reader });
    assert.match(list.out, new RegExp(`${id}\\s+blink\\s+1\\.0\\.0`));
    const show = await cli(['image', 'show', id, '--output', 'json'], { HEPTAD_TOKEN: reader });
    assert.equal((show.json()['appManifest'] as Record<string, unknown>)['Name'], 'blink');

    const dl = await cli(['image', 'download', id, '--out', 'blink-prod.hpkg'], { HEPTAD_TOKEN: reader });
    assert.equal(dl.code, 0, dl.err);
    const key = await cli(['image', 'signing-key', '--output', 'json'], { HEPTAD_TOKEN: reader });
    const pub = createPublicKey(String(key.json()['publicKeyPem']));
    assert.equal(key.json()['keyId'], keyIdOf(pub));
    const prod = verifyPackage(readFileSync(join(dir, 'blink-prod.hpkg')), new Map([[keyIdOf(pub), pub]]));
    assert.equal(prod.digest, local.digest);
  });

  test('deployment create/list/show: the newest deployment of a group is current', async () => {
    assert.equal((await asContributor(['product', 'create', 'DW200'])).code, 0);
    const cid = randomUUID();
    const ids: string[] = [];
    for (const v of ['1.0.0', '1.1.0']) {
      await cli([
        'image',
        'pack',
        appDir(`d-${v}`, manifestOf('dep', cid)),
        '--out',
        `d-${v}.hpkg`,
        '--key',
        'dev.key',
        '--version',
        v,
      ]);
      ids.push(
        String((await asContributor(['image', 'add', `d-${v}.hpkg`, '--output', 'json'])).json()['id']),
      );
    }
    const first = await asContributor([
      'deployment',
      'create',
      '--device-group',
      'DW200/Field Test',
      '--image',
      String(ids[0]),
      '--output',
      'json',
    ]);
    assert.equal(first.code, 0, first.err);
    const second = await asContributor([
      'deployment',
      'create',
      '--device-group',
      'DW200/Field Test',
      '--image',
      String(ids[1]),
    ]);
    assert.equal(second.code, 0, second.err);
    assert.match(second.out, /DW200\/Field Test\s+yes\s+dep 1\.1\.0/);
    const list = await cli(['deployment', 'list', '--device-group', 'DW200/Field Test', '--output', 'json'], {
      HEPTAD_TOKEN: reader,
    });
    assert.deepEqual(
      list.json().items?.map((d) => d['current']),
      [true, false],
    );
    const show = await cli(['deployment', 'show', String(first.json()['id']), '--output', 'json'], {
      HEPTAD_TOKEN: reader,
    });
    assert.equal(show.json()['current'], false);
    // Two versions of one app in one deployment, and a missing --image, are refused.
    const both = await asContributor([
      'deployment',
      'create',
      '--device-group',
      'DW200/Field Test',
      '--image',
      String(ids[0]),
      '--image',
      String(ids[1]),
    ]);
    assert.match(both.err, /^heptad: DEPLOYMENT_INVALID: /);
    assert.equal(
      (await asContributor(['deployment', 'create', '--device-group', 'DW200/Field Test'])).code,
      2,
    );
  });

  test('device capability add/list/remove (Administrator)', async () => {
    const state = join(dir, 'capdev');
    const made = await cli([
      'device',
      'manufacture',
      '--state',
      state,
      '--rot',
      'soft',
      '--service',
      svc.url,
      '--output',
      'json',
    ]);
    const id = String(made.json()['deviceId']);
    assert.equal((await cli(['device', 'register', '--from', join(state, 'registration.json')])).code, 0);
    const admin = String(
      (
        await cli([
          'user',
          'create',
          'capadmin@example.com',
          '--tenant',
          'Image Tenant',
          '--role',
          'Administrator',
          '--output',
          'json',
        ])
      ).json()['token'],
    );
    const asAdmin = (argv: string[]) => cli(argv, { HEPTAD_TOKEN: admin });
    assert.equal((await asAdmin(['device', 'claim', id])).code, 0);
    assert.equal((await asAdmin(['device', 'capability', 'add', id, 'appDevelopment'])).code, 0);
    assert.match((await asAdmin(['device', 'capability', 'list', id])).out, /appDevelopment/);
    assert.match(
      (await asContributor(['device', 'capability', 'add', id, 'fieldServicing'])).err,
      /^heptad: AUTH_ROLE_INSUFFICIENT: /,
    );
    assert.match(
      (await asAdmin(['device', 'capability', 'add', id, 'rootShell'])).err,
      /^heptad: REQUEST_INVALID: /,
    );
    assert.equal((await asAdmin(['device', 'capability', 'remove', id, 'appDevelopment'])).code, 0);
    assert.match(
      (await asAdmin(['device', 'capability', 'remove', id, 'appDevelopment'])).err,
      /^heptad: DEVICE_CAPABILITY_NOT_FOUND: /,
    );
  });

  test('bad folders are refused before anything is written', async () => {
    const cases: Array<[string, () => string, string]> = [
      [
        'no app_manifest.json',
        () => {
          const d = appDir('nomanifest', manifestOf('x'));
          rmSync(join(d, 'app_manifest.json'));
          return d;
        },
        'CLI_APP_DIR_INVALID',
      ],
      ['app_manifest.json not JSON', () => appDir('notjson', '{"Name":'), 'APP_MANIFEST_INVALID'],
      [
        'ComponentId not a UUID',
        () => appDir('badcid', { ...manifestOf('x'), ComponentId: 'blink' }),
        'APP_MANIFEST_INVALID',
      ],
      [
        'a symbolic link (could pack a file from outside)',
        () => {
          const d = appDir('link', manifestOf('x'));
          symlinkSync('/etc/passwd', join(d, 'passwd'));
          return d;
        },
        'CLI_APP_DIR_INVALID',
      ],
      [
        'entry point not in the folder',
        () => appDir('noentry', { ...manifestOf('x'), EntryPoint: 'nope.js' }),
        'APP_MANIFEST_INVALID',
      ],
      [
        'a name the package format refuses',
        () => appDir('badname', manifestOf('has space/slash')),
        'APP_MANIFEST_INVALID',
      ],
      ['not a folder', () => join(dir, 'dev.key'), 'CLI_APP_DIR_INVALID'],
      [
        'an unknown capability',
        () => appDir('badcap', { ...manifestOf('x'), Capabilities: { RootShell: true } }),
        'APP_MANIFEST_INVALID',
      ],
    ];
    for (const [name, make, code] of cases) {
      const r = await cli([
        'image',
        'pack',
        make(),
        '--out',
        'never.hpkg',
        '--key',
        'dev.key',
        '--version',
        '1.0.0',
      ]);
      assert.equal(r.code, 1, name);
      assert.match(r.err, new RegExp(`^heptad: ${code}: `), name);
    }
    const badVersion = await cli([
      'image',
      'pack',
      appDir('v', manifestOf('v')),
      '--out',
      'never.hpkg',
      '--key',
      'dev.key',
      '--version',
      'one',
    ]);
    assert.equal(badVersion.code, 2);
    assert.equal(existsSync(join(dir, 'never.hpkg')), false);
  });

  test('the service refuses what it must, with the code on one line', async () => {
    // A Reader cannot upload; a runtime package is not an application; junk is not a package.
    await cli([
      'image',
      'pack',
      appDir('r', manifestOf('r')),
      '--out',
      'r.hpkg',
      '--key',
      'dev.key',
      '--version',
      '1.0.0',
    ]);
    const asReader = await cli(['image', 'add', 'r.hpkg'], { HEPTAD_TOKEN: reader });
    assert.match(asReader.err, /^heptad: AUTH_ROLE_INSUFFICIENT: /);
    assert.equal(
      (
        await cli([
          'runtime',
          'pack',
          '--out',
          'rt.hpkg',
          '--version',
          '1.0.0',
          '--security-version',
          '1',
          '--key',
          'dev.key',
        ])
      ).code,
      0,
    );
    assert.match((await asContributor(['image', 'add', 'rt.hpkg'])).err, /^heptad: IMAGE_TYPE_NOT_ALLOWED: /);
    writeFileSync(join(dir, 'junk.hpkg'), 'not a package at all');
    assert.match((await asContributor(['image', 'add', 'junk.hpkg'])).err, /^heptad: IMAGE_MAGIC_INVALID: /);
    assert.match(
      (await asContributor(['image', 'add', 'absent.hpkg'])).err,
      /^heptad: CLI_FILE_UNREADABLE: /,
    );
    assert.match(
      (await cli(['image', 'show', randomUUID()], { HEPTAD_TOKEN: reader })).err,
      /^heptad: IMAGE_NOT_FOUND: /,
    );
    assert.match(
      (await cli(['image', 'download', randomUUID(), '--out', 'x.hpkg'], { HEPTAD_TOKEN: reader })).err,
      /^heptad: IMAGE_NOT_FOUND: /,
    );
    assert.equal(existsSync(join(dir, 'x.hpkg')), false);
    // A second app may not take the first one's component id.
    const cid = randomUUID();
    await cli([
      'image',
      'pack',
      appDir('c1', manifestOf('one', cid)),
      '--out',
      'c1.hpkg',
      '--key',
      'dev.key',
      '--version',
      '1.0.0',
    ]);
    await cli([
      'image',
      'pack',
      appDir('c2', manifestOf('two', cid)),
      '--out',
      'c2.hpkg',
      '--key',
      'dev.key',
      '--version',
      '1.0.0',
    ]);
    assert.equal((await asContributor(['image', 'add', 'c1.hpkg'])).code, 0);
    assert.match(
      (await asContributor(['image', 'add', 'c2.hpkg'])).err,
      /^heptad: IMAGE_COMPONENT_CONFLICT: /,
    );
  });
});
