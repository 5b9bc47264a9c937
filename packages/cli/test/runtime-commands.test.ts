// heptad key create, runtime pack, runtime sign and manufacture --runtime (issue 4): what they
// build verifies, and every bad input gets its code and changes nothing.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keyIdOf, readManifestUnverified, verifyPackage } from '@heptad/protocol';
import { runCaptured } from './support/run-cli.ts';

describe('runtime packaging commands', () => {
  let dir: string;
  const cli = (argv: string[]) => runCaptured(argv, {}, dir);
  const refused = async (argv: string[], code: string, exit = 1) => {
    const r = await cli(argv);
    assert.equal(r.code, exit, `${argv.join(' ')}: ${r.err}`);
    assert.match(r.err, new RegExp(`^heptad: ${code}: `), argv.join(' '));
    return r;
  };
  const keys = (file: string) => {
    const pub = createPublicKey(readFileSync(`${file}.pub`));
    return new Map([[keyIdOf(pub), pub]]);
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-rtcmd-'));
    for (const k of ['build.key', 'platform.key'])
      assert.equal((await cli(['key', 'create', '--out', k])).code, 0);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('key create writes a 0600 P-256 private key and its public key, prints the key id, never overwrites', async () => {
    const r = await cli(['key', 'create', '--out', 'k1.key', '--output', 'json']);
    assert.equal(r.code, 0, r.err);
    const file = join(dir, 'k1.key');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(r.json()['keyId'], keyIdOf(createPublicKey(readFileSync(`${file}.pub`))));
    const before = readFileSync(file);
    await refused(['key', 'create', '--out', 'k1.key'], 'CLI_FILE_EXISTS');
    assert.deepEqual(readFileSync(file), before);
    await refused(['key', 'create'], 'CLI_USAGE', 2);
  });

  test('runtime pack bundles the runtime into one module in a runtime package; sign adds the platform signature', async () => {
    const packed = await cli([
      'runtime',
      'pack',
      '--out',
      'rt.hpkg',
      '--version',
      '1.2.3',
      '--security-version',
      '4',
      '--key',
      'build.key',
      '--output',
      'json',
    ]);
    assert.equal(packed.code, 0, packed.err);
    const file = join(dir, 'rt.hpkg');
    const v = verifyPackage(readFileSync(file), keys(join(dir, 'build.key')));
    assert.equal(v.manifest.type, 'runtime');
    assert.equal(v.manifest.version, '1.2.3');
    assert.equal(v.manifest.securityVersion, 4);
    assert.deepEqual(
      v.files.map((f) => f.path),
      ['runtime.mjs'],
    );
    const bundle = v.files[0]?.content.toString('utf8') ?? '';
    assert.match(bundle, /HEPTAD_BOOT/, 'the runtime entry is inside');
    assert.doesNotMatch(bundle, /from ["']@heptad\//, 'no package imports left: one self-contained module');
    // Not yet bootable: the platform has not signed it.
    assert.throws(
      () => verifyPackage(readFileSync(file), keys(join(dir, 'platform.key'))),
      (e: unknown) => (e as { code?: string }).code === 'IMAGE_SIGNATURE_UNTRUSTED',
    );
    const signed = await cli(['runtime', 'sign', 'rt.hpkg', '--key', 'platform.key', '--output', 'json']);
    assert.equal(signed.code, 0, signed.err);
    const p = verifyPackage(readFileSync(file), keys(join(dir, 'platform.key')));
    assert.equal(p.digest, v.digest, 'signing does not change the package digest');
    assert.equal(signed.json()['digest'], v.digest);
    // Signing twice with one key is refused and leaves the file as it was.
    const before = readFileSync(file);
    await refused(['runtime', 'sign', 'rt.hpkg', '--key', 'platform.key'], 'IMAGE_SIGNATURE_DUPLICATE');
    assert.deepEqual(readFileSync(file), before);
    // --out leaves the input untouched.
    assert.equal((await cli(['key', 'create', '--out', 'second.key'])).code, 0);
    assert.equal(
      (await cli(['runtime', 'sign', 'rt.hpkg', '--key', 'second.key', '--out', 'rt2.hpkg'])).code,
      0,
    );
    assert.deepEqual(readFileSync(file), before);
    assert.equal(
      verifyPackage(readFileSync(join(dir, 'rt2.hpkg')), keys(join(dir, 'second.key'))).digest,
      v.digest,
    );
  });

  test('bad key files, versions and modules are refused and write nothing', async () => {
    writeFileSync(join(dir, 'open.key'), readFileSync(join(dir, 'build.key')), { mode: 0o644 });
    chmodSync(join(dir, 'open.key'), 0o644);
    writeFileSync(join(dir, 'junk.key'), 'not a key', { mode: 0o600 });
    writeFileSync(
      join(dir, 'rsa.key'),
      generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }),
      { mode: 0o600 },
    );
    writeFileSync(join(dir, 'pub.key'), readFileSync(join(dir, 'build.key.pub')), { mode: 0o600 });
    writeFileSync(join(dir, 'broken.mjs'), 'export const = ;\n');
    const pack = (extra: string[], o: Record<string, string> = {}) => [
      'runtime',
      'pack',
      '--out',
      'never.hpkg',
      '--version',
      o['version'] ?? '1.0.0',
      '--security-version',
      o['sv'] ?? '1',
      '--key',
      o['key'] ?? 'build.key',
      ...extra,
    ];
    await refused(pack([], { key: 'open.key' }), 'KEY_FILE_PERMISSIONS');
    await refused(pack([], { key: 'junk.key' }), 'KEY_FILE_INVALID');
    await refused(pack([], { key: 'rsa.key' }), 'KEY_FILE_INVALID');
    await refused(pack([], { key: 'pub.key' }), 'KEY_FILE_INVALID');
    await refused(pack([], { key: 'missing.key' }), 'CLI_FILE_UNREADABLE');
    for (const version of ['1.0', 'v1.0.0', '01.0.0', '1.0.0-', 'x'.repeat(200)])
      await refused(pack([], { version }), 'CLI_USAGE', 2);
    for (const sv of ['-1', '1.5', 'two', '2147483648', '99999999999'])
      await refused(pack([], { sv }), 'CLI_USAGE', 2);
    await refused(pack(['--from', 'nope.mjs']), 'CLI_FILE_UNREADABLE');
    await refused(pack(['--from', 'broken.mjs']), 'RUNTIME_BUILD_FAILED');
    assert.equal(existsSync(join(dir, 'never.hpkg')), false);
    // sign: not a package, an application package is not a runtime, an unreadable file.
    writeFileSync(join(dir, 'junk.hpkg'), 'HPKG but not really');
    await refused(['runtime', 'sign', 'junk.hpkg', '--key', 'platform.key'], 'IMAGE_[A-Z_]+');
    await refused(['runtime', 'sign', 'absent.hpkg', '--key', 'platform.key'], 'CLI_FILE_UNREADABLE');
    await refused(['runtime', 'sign', 'rt.hpkg', '--key', 'open.key'], 'KEY_FILE_PERMISSIONS');
    assert.equal(readManifestUnverified(readFileSync(join(dir, 'rt.hpkg'))).type, 'runtime');
  });

  test('manufacture --runtime: the factory runtime must verify against --runtime-signer, or no device is made', async () => {
    const base = ['device', 'manufacture', '--rot', 'soft', '--service', 'https://127.0.0.1:9'];
    // rt.hpkg is signed by build and platform (and second, in rt2); a signer that did not sign it:
    assert.equal((await cli(['key', 'create', '--out', 'stranger.key'])).code, 0);
    await refused(
      [...base, '--state', 'd1', '--runtime', 'rt.hpkg', '--runtime-signer', 'stranger.key.pub'],
      'IMAGE_SIGNATURE_UNTRUSTED',
    );
    await refused([...base, '--state', 'd2', '--runtime', 'rt.hpkg'], 'CLI_USAGE', 2);
    await refused([...base, '--state', 'd3', '--runtime-signer', 'platform.key.pub'], 'CLI_USAGE', 2);
    writeFileSync(join(dir, 'garbage.pem'), 'garbage');
    await refused(
      [...base, '--state', 'd4', '--runtime', 'rt.hpkg', '--runtime-signer', 'garbage.pem'],
      'BOOT_NO_PLATFORM_KEY',
    );
    await refused(
      [...base, '--state', 'd5', '--runtime', 'nope.hpkg', '--runtime-signer', 'platform.key.pub'],
      'CLI_FILE_UNREADABLE',
    );
    for (const d of ['d1', 'd2', 'd3', 'd4', 'd5']) assert.equal(existsSync(join(dir, d)), false, d);
    const ok = await cli([
      ...base,
      '--state',
      'd6',
      '--runtime',
      'rt.hpkg',
      '--runtime-signer',
      'platform.key.pub',
      '--output',
      'json',
    ]);
    assert.equal(ok.code, 0, ok.err);
    assert.equal((ok.json()['runtime'] as Record<string, unknown>)['securityVersion'], 4);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'd6', 'boot.json'), 'utf8')), {
      schema: 1,
      committed: 'A',
      trial: null,
      floor: 4,
    });
    assert.equal(statSync(join(dir, 'd6', 'ro', 'runtime-signers.pem')).mode & 0o777, 0o444);
  });
});
