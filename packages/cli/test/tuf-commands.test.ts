// heptad tenant keys rotate / tuf show against a live service (issue 5, update metadata): an
// Administrator rotates a key and the new root lists it; tuf show prints the files devices get.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunningService } from '@heptad/service';
import { startLiveService } from './support/live-service.ts';
import { runCaptured } from './support/run-cli.ts';

describe('heptad tenant keys rotate and tuf show', () => {
  let svc: RunningService;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let admin: string;
  let reader: string;
  const cli = (argv: string[], token?: string) =>
    runCaptured(argv, { ...env, ...(token ? { HEPTAD_TOKEN: token } : {}) }, dir);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-tufcli-'));
    ({ svc, env } = await startLiveService(dir));
    assert.equal((await cli(['tenant', 'create', 'TUF Tenant'])).code, 0);
    const mk = async (email: string, role: string) =>
      String(
        (
          await cli(['user', 'create', email, '--tenant', 'TUF Tenant', '--role', role, '--output', 'json'])
        ).json()['token'],
      );
    admin = await mk('admin@example.com', 'Administrator');
    reader = await mk('reader@example.com', 'Reader');
    assert.equal((await cli(['product', 'create', 'DW100'], admin)).code, 0);
  });
  after(async () => {
    await svc?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('rotate the timestamp key of the director: root 2 lists it; the timestamp is signed by it', async () => {
    const before = await cli(
      [
        'tuf',
        'show',
        '--repository',
        'director',
        '--device-group',
        'DW100/Production',
        '--role',
        'root',
        '--output',
        'json',
      ],
      reader,
    );
    assert.equal(before.code, 0, before.err);
    assert.equal(before.json()['signed'] && (before.json()['signed'] as { version: number }).version, 1);
    const r = await cli(
      ['tenant', 'keys', 'rotate', '--role', 'timestamp', '--repository', 'director', '--output', 'json'],
      admin,
    );
    assert.equal(r.code, 0, r.err);
    const [row] = r.json() as unknown as Array<{ keyId: string; rootVersion: number }>;
    assert.equal(row?.rootVersion, 2);
    const root = await cli(
      [
        'tuf',
        'show',
        '--repository',
        'director',
        '--device-group',
        'DW100/Production',
        '--role',
        'root',
        '--output',
        'json',
      ],
      reader,
    );
    const signed = root.json()['signed'] as { version: number; roles: Record<string, { keyids: string[] }> };
    assert.equal(signed.version, 2);
    assert.deepEqual(signed.roles['timestamp']?.keyids, [row?.keyId]);
    const ts = await cli(
      ['tuf', 'show', '--repository', 'director', '--device-group', 'DW100/Production', '--output', 'json'],
      reader,
    );
    assert.deepEqual(
      (ts.json()['signatures'] as Array<{ keyid: string }>).map((s) => s.keyid),
      [row?.keyId],
    );
    for (const role of ['targets', 'snapshot'])
      assert.equal((await cli(['tuf', 'show', '--repository', 'image', '--role', role], reader)).code, 0);
  });

  test('refusals: a Reader cannot rotate; unknown roles and a group without director are refused', async () => {
    const asReader = await cli(['tenant', 'keys', 'rotate', '--role', 'root'], reader);
    assert.notEqual(asReader.code, 0);
    assert.match(asReader.err, /AUTH_ROLE_INSUFFICIENT/);
    const badRole = await cli(['tenant', 'keys', 'rotate', '--role', 'admin'], admin);
    assert.match(badRole.err, /REQUEST_INVALID/);
    const noGroup = await cli(['tuf', 'show', '--repository', 'director'], reader);
    assert.match(noGroup.err, /REQUEST_INVALID/);
  });
});
