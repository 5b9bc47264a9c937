// heptad runtime signer/publish/promote/withdraw/list/download and device-group runtime against a
// live service (issue 5, runtime feeds). A release goes retail-eval → retail; a withdrawn one is
// never offered again; the download is the signed package a device can install.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunningService } from '@heptad/service';
import { startLiveService } from './support/live-service.ts';
import { runCaptured } from './support/run-cli.ts';

describe('heptad runtime release commands', () => {
  let svc: RunningService;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let admin: string;
  const cli = (argv: string[], extra: NodeJS.ProcessEnv = {}) => runCaptured(argv, { ...env, ...extra }, dir);
  const pack = async (name: string, version: string, sv: number, sign = true) => {
    const p = await cli([
      'runtime',
      'pack',
      '--out',
      `${name}.hpkg`,
      '--version',
      version,
      '--security-version',
      String(sv),
      '--key',
      'build.key',
    ]);
    assert.equal(p.code, 0, p.err);
    if (sign) assert.equal((await cli(['runtime', 'sign', `${name}.hpkg`, '--key', 'platform.key'])).code, 0);
    return `${name}.hpkg`;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-rtrel-'));
    ({ svc, env } = await startLiveService(dir));
    for (const k of ['build.key', 'platform.key'])
      assert.equal((await cli(['key', 'create', '--out', k])).code, 0);
    assert.equal((await cli(['tenant', 'create', 'Feed Tenant'])).code, 0);
    admin = String(
      (
        await cli([
          'user',
          'create',
          'feeds@example.com',
          '--tenant',
          'Feed Tenant',
          '--role',
          'Administrator',
          '--output',
          'json',
        ])
      ).json()['token'],
    );
    assert.equal((await cli(['product', 'create', 'P9'], { HEPTAD_TOKEN: admin })).code, 0);
  });
  after(async () => {
    await svc?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('signer, publish, promote, withdraw, list, download; each group is offered its feed’s release', async () => {
    const signer = await cli(['runtime', 'signer', 'add', 'platform.key.pub', '--output', 'json']);
    assert.equal(signer.code, 0, signer.err);
    assert.match(String(signer.json()['keyId']), /^[0-9a-f]{64}$/);
    const rt1 = await pack('rt1', '1.0.0', 1);
    const pub = await cli(['runtime', 'publish', rt1]);
    assert.equal(pub.code, 0, pub.err);
    assert.match(pub.out, /1\.0\.0\s+1\s+retail-eval/);
    const asAdmin = (argv: string[]) => cli(argv, { HEPTAD_TOKEN: admin });
    assert.match((await asAdmin(['device-group', 'runtime', 'P9/Production OS Evaluation'])).out, /1\.0\.0/);
    assert.match(
      (await asAdmin(['device-group', 'runtime', 'P9/Production'])).err,
      /^heptad: RUNTIME_RELEASE_NOT_FOUND: /,
    );
    assert.equal((await cli(['runtime', 'promote', '1.0.0', '--to', 'retail'])).code, 0);
    assert.match((await asAdmin(['device-group', 'runtime', 'P9/Production'])).out, /1\.0\.0\s+1\s+retail/);
    const rt2 = await pack('rt2', '1.1.0', 2);
    assert.equal((await cli(['runtime', 'publish', rt2])).code, 0);
    assert.match((await asAdmin(['device-group', 'runtime', 'P9/Field Test OS Evaluation'])).out, /1\.1\.0/);
    assert.equal((await cli(['runtime', 'withdraw', '1.1.0'])).code, 0);
    assert.match((await asAdmin(['device-group', 'runtime', 'P9/Field Test OS Evaluation'])).out, /1\.0\.0/);
    const list = await asAdmin(['runtime', 'list', '--output', 'json']);
    assert.deepEqual(
      list.json().items?.map((r) => [r['version'], r['feed'], r['withdrawn']]),
      [
        ['1.1.0', 'retail-eval', true],
        ['1.0.0', 'retail', false],
      ],
    );
    assert.equal((await asAdmin(['runtime', 'download', '1.0.0', '--out', 'got.hpkg'])).code, 0);
    assert.deepEqual(readFileSync(join(dir, 'got.hpkg')), readFileSync(join(dir, rt1)));
    // Published runtimes are known to attestation without a separate runtime-image add.
    assert.match((await cli(['runtime-image', 'list'])).out, /1\.0\.0/);
  });

  test('refusals, each with its code', async () => {
    const unsigned = await pack('unsigned', '3.0.0', 3, false);
    assert.match((await cli(['runtime', 'publish', unsigned])).err, /^heptad: IMAGE_SIGNATURE_UNTRUSTED: /);
    assert.equal((await cli(['runtime', 'publish', unsigned, '--feed', 'retail'])).code, 2);
    assert.equal((await cli(['runtime', 'promote', '1.0.0', '--to', 'beta'])).code, 2);
    assert.match(
      (await cli(['runtime', 'promote', '7.7.7', '--to', 'retail'])).err,
      /^heptad: RUNTIME_RELEASE_NOT_FOUND: /,
    );
    assert.match(
      (await cli(['runtime', 'publish', unsigned], { HEPTAD_TOKEN: admin })).err,
      /^heptad: AUTH_OPERATOR_REQUIRED: /,
    );
    assert.match(
      (await cli(['runtime', 'signer', 'add', 'build.key'])).err,
      /^heptad: RUNTIME_SIGNER_INVALID: /,
    );
    assert.match(
      (await cli(['runtime', 'signer', 'add', 'platform.key.pub'])).err,
      /^heptad: RUNTIME_SIGNER_EXISTS: /,
    );
  });
});
