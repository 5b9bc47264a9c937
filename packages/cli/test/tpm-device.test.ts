// The whole attestation path on a TPM: a device manufactured on a real swtpm (TPM 2.0 command
// client, identity key in the TPM), registered from its record (TPM2B_PUBLIC checked), claimed,
// attested — its certificate reports `tpm` — and after a power cycle still the same device.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RunningService, resolveConfig, startService } from '@heptad/service';
import pino from 'pino';
import { startSwtpm, swtpmSkipReason, type TestSwtpm } from '../../../test/support/swtpm.ts';
import { runCaptured } from './support/run-cli.ts';

const skip = swtpmSkipReason();

describe('a TPM device, end to end', { skip: skip ?? false }, () => {
  let svc: RunningService;
  let tpm: TestSwtpm;
  let dir: string;
  let env: NodeJS.ProcessEnv;

  const cli = (argv: string[], extra: NodeJS.ProcessEnv = {}) => runCaptured(argv, { ...env, ...extra }, dir);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-tpmdev-'));
    tpm = await startSwtpm();
    svc = await startService(
      resolveConfig({ data: join(dir, 'data'), listen: '127.0.0.1:0', mqttListen: 'off' }),
      {
        logger: pino({ level: 'silent' }),
        env: {},
      },
    );
    const operator = readFileSync(svc.operatorTokenPath, 'utf8').trim();
    env = {
      HEPTAD_CONFIG_DIR: join(dir, 'cfg'),
      HEPTAD_URL: svc.url,
      HEPTAD_TOKEN: operator,
      HEPTAD_CA: String(svc.caPath),
    };
  });
  after(async () => {
    await svc?.close();
    await tpm?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('manufacture on swtpm, register, claim and attest: a tpm certificate', async () => {
    const state = join(dir, 'dev-tpm');
    const made = await cli([
      'device',
      'manufacture',
      '--state',
      state,
      '--rot',
      `tpm:${tpm.host}:${tpm.port}`,
      '--service',
      svc.url,
      '--platform-ca',
      String(svc.caPath),
      '--output',
      'json',
    ]);
    assert.equal(made.code, 0, made.err);
    const id = String(made.json()['deviceId']);
    const record = JSON.parse(readFileSync(join(state, 'registration.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(record['rotKind'], 'tpm');
    assert.match(String(record['tpmPublic']), /^[A-Za-z0-9+/]+=*$/);

    // A record whose TPM2B_PUBLIC describes another key is refused.
    const soft = join(dir, 'dev-soft');
    assert.equal(
      (await cli(['device', 'manufacture', '--state', soft, '--rot', 'soft', '--service', svc.url])).code,
      0,
    );
    const softRecord = JSON.parse(readFileSync(join(soft, 'registration.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    writeFileSync(
      join(dir, 'forged.json'),
      JSON.stringify({ ...softRecord, rotKind: 'tpm', tpmPublic: record['tpmPublic'] }),
    );
    const forged = await cli(['device', 'register', '--from', join(dir, 'forged.json')]);
    assert.match(forged.err, /^heptad: DEVICE_PUBLIC_KEY_INVALID: /);

    assert.equal((await cli(['device', 'register', '--from', join(state, 'registration.json')])).code, 0);
    assert.equal((await cli(['tenant', 'create', 'TPM Tenant'])).code, 0);
    const admin = await cli([
      'user',
      'create',
      'tpm@example.com',
      '--tenant',
      'TPM Tenant',
      '--role',
      'Administrator',
      '--output',
      'json',
    ]);
    assert.equal(
      (await cli(['device', 'claim', id], { HEPTAD_TOKEN: String(admin.json()['token']) })).code,
      0,
    );

    const att = await cli(['device', 'attest', '--state', state, '--output', 'json']);
    assert.equal(att.code, 0, att.err);
    assert.equal(att.json()['rotKind'], 'tpm');
    assert.equal(att.json()['deviceId'], id);

    // After a power cut the TPM re-derives the same identity; the device attests again.
    await tpm.powerCycle();
    const again = await cli(['device', 'attest', '--state', state, '--output', 'json']);
    assert.equal(again.code, 0, again.err);
    assert.notEqual(again.json()['serial'], att.json()['serial']);
  });
});
