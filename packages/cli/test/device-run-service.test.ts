// `heptad device run` against a live service (issue 4): the runtime attests at boot and earns
// its certificate; a sideloaded runtime boots as a trial, passes its health check (attested),
// commits and raises the floor, and the service hears of it at once; a trial the service refuses
// (unknown runtime) is abandoned and the service is told at the next successful connection. The
// same boot and attestation on a TPM over swtpm.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunningService } from '@heptad/service';
import { startSwtpm, swtpmSkipReason, type TestSwtpm } from '../../../test/support/swtpm.ts';
import { DeviceProcess, makeRuntimeKit, type RuntimeKit, readJson } from './support/device-process.ts';
import { startLiveService } from './support/live-service.ts';
import { runCaptured } from './support/run-cli.ts';

describe('heptad device run with a service', () => {
  let svc: RunningService;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let adminToken: string;
  let kit: RuntimeKit;
  let rt1: { file: string; digest: string };
  let rt2: { file: string; digest: string };
  let unknown: { file: string; digest: string };
  let n = 0;
  const cli = (argv: string[], extra: NodeJS.ProcessEnv = {}) => runCaptured(argv, { ...env, ...extra }, dir);
  const asAdmin = (argv: string[]) => cli(argv, { HEPTAD_TOKEN: adminToken });

  /** Manufactures, registers and claims a device with rt1 as its factory runtime. */
  async function newDevice(rot = 'soft'): Promise<{ state: string; id: string }> {
    const state = join(dir, `dev-${++n}`);
    const made = await cli([
      'device',
      'manufacture',
      '--state',
      state,
      '--rot',
      rot,
      '--service',
      svc.url,
      '--platform-ca',
      String(svc.caPath),
      '--runtime',
      rt1.file,
      '--runtime-signer',
      kit.platformPub,
      '--output',
      'json',
    ]);
    assert.equal(made.code, 0, made.err);
    const id = String(made.json()['deviceId']);
    assert.equal((await cli(['device', 'register', '--from', join(state, 'registration.json')])).code, 0);
    assert.equal((await asAdmin(['device', 'claim', id])).code, 0);
    return { state, id };
  }
  const show = async (id: string) => {
    const r = await asAdmin(['device', 'show', id, '--output', 'json']);
    assert.equal(r.code, 0, r.err);
    return r.json() as Record<string, unknown> & { runtime: Record<string, unknown> | null };
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-runsvc-'));
    ({ svc, env } = await startLiveService(dir));
    assert.equal((await cli(['tenant', 'create', 'Run Tenant'])).code, 0);
    const admin = await cli([
      'user',
      'create',
      'run@example.com',
      '--tenant',
      'Run Tenant',
      '--role',
      'Administrator',
      '--output',
      'json',
    ]);
    adminToken = String(admin.json()['token']);
    kit = await makeRuntimeKit(dir);
    rt1 = await kit.pack('rt1', '1.0.0', 1);
    rt2 = await kit.pack('rt2', '1.1.0', 2);
    unknown = await kit.pack('rt3', '1.2.0', 3); // signed by the platform, never registered
    for (const [rt, v, sv] of [
      [rt1, '1.0.0', '1'],
      [rt2, '1.1.0', '2'],
    ] as const) {
      const r = await cli(['runtime-image', 'add', rt.digest, '--version', v, '--security-version', sv]);
      assert.equal(r.code, 0, r.err);
    }
  });
  after(async () => {
    await DeviceProcess.powerCutAll();
    await svc?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('boots, attests, commits a sideloaded runtime after its health check, and the service sees each step', async () => {
    const { state, id } = await newDevice();
    const dev = new DeviceProcess(state);
    await dev.waitFor(/attested: certificate/);
    const st = await cli(['device', 'status', '--state', state, '--output', 'json']);
    const s = st.json() as Record<string, Record<string, unknown>>;
    assert.equal(s['lastAttestation']?.['outcome'], 'certified');
    assert.ok(Date.parse(String(s['certificate']?.['notAfter'])) > Date.now() + 23 * 3_600_000);
    let seen = await show(id);
    assert.equal(seen.runtime?.['version'], '1.0.0');
    assert.equal(seen.runtime?.['slot'], 'A');
    assert.equal(seen.runtime?.['digest'], rt1.digest);

    assert.equal((await cli(['device', 'sideload', '--state', state, rt2.file])).code, 0);
    await dev.waitFor(/runtime 1\.1\.0 committed; anti-rollback floor 2/, 20_000);
    // The commit triggers an attestation at once: the service hears of it without waiting 20 h.
    await dev.waitFor(/attested: certificate/, 15_000, 3);
    assert.deepEqual(readJson(join(state, 'boot.json')), {
      schema: 1,
      committed: 'B',
      trial: null,
      floor: 2,
    });
    seen = await show(id);
    assert.equal(seen.runtime?.['version'], '1.1.0');
    assert.equal(seen.runtime?.['slot'], 'B');
    assert.equal(seen.runtime?.['trial'], false);
    assert.equal(seen.runtime?.['floor'], 2);
    const text = (await asAdmin(['device', 'show', id])).out;
    assert.match(text, /^runtime +1\.1\.0 \(slot B, committed, floor 2, reported /m);
    assert.match(text, /^event +\S+ {2}trial-committed {2}slot B {2}1\.1\.0$/m);
    const kinds = ((seen.runtime?.['events'] ?? []) as Array<Record<string, string>>).map((e) => e['kind']);
    assert.ok(kinds.includes('trial-started') && kinds.includes('trial-committed'), kinds.join());
    // Events the service accepted are not kept (nor sent) again.
    assert.equal(existsSync(join(state, 'events.json')), false);
    await dev.stop();
  });

  test('a trial the service refuses is abandoned; the service is told at the next successful connection', async () => {
    const { state, id } = await newDevice();
    const dev = new DeviceProcess(state);
    await dev.waitFor(/attested: certificate/);
    assert.equal((await cli(['device', 'sideload', '--state', state, unknown.file])).code, 0);
    await dev.waitFor(/attestation failed: ATTEST_RUNTIME_UNKNOWN/, 20_000, 3);
    await dev.waitFor(/trial-abandoned/, 20_000);
    await dev.waitFor(/attested: certificate/, 20_000, 2);
    assert.deepEqual(readJson(join(state, 'boot.json')), {
      schema: 1,
      committed: 'A',
      trial: null,
      floor: 1,
    });
    const seen = await show(id);
    assert.equal(seen.runtime?.['version'], '1.0.0');
    const events = (seen.runtime?.['events'] ?? []) as Array<Record<string, string>>;
    assert.equal(events.filter((e) => e['kind'] === 'trial-started').length, 3);
    assert.ok(events.some((e) => e['kind'] === 'trial-abandoned' && e['slot'] === 'B'));
    const sec = await asAdmin(['security-event', 'list', '--device', id, '--output', 'json']);
    const kinds = (sec.json().items ?? []).map((e) => e['kind']);
    assert.ok(kinds.includes('device.trial-abandoned'), kinds.join());
    assert.ok(
      kinds.includes('attestation.refused'),
      'the refused trial attestations are security events too',
    );
    // Failure reporting: the refused attestations and the rollback reached the service as error
    // reports over mTLS once the committed runtime attested again.
    await dev.waitFor(/error reports uploaded: [1-9]/, 20_000);
    const buckets = await asAdmin(['error-report', 'list', '--output', 'json']);
    const reported = (buckets.json().items ?? []).map((b) => b['kind']);
    assert.ok(reported.includes('attestation-refused'), reported.join());
    assert.ok(reported.includes('rollback'), reported.join());
    await dev.stop();
  });

  const skip = swtpmSkipReason();
  describe('on a TPM (swtpm)', { skip: skip ?? false }, () => {
    let tpm: TestSwtpm;
    before(async () => {
      tpm = await startSwtpm();
    });
    after(async () => {
      await DeviceProcess.powerCutAll();
      await tpm?.stop();
    });

    test('boots with the runtime measured into the TPM and attests: a tpm certificate', async () => {
      const { state, id } = await newDevice(`tpm:${tpm.host}:${tpm.port}`);
      for (let boot = 1; boot <= 2; boot++) {
        // Twice: each power-on resets the TPM's registers (swtpm power cycle), so the log stays one entry.
        const dev = new DeviceProcess(state);
        await dev.waitFor(/attested: certificate/, 20_000);
        const log = readJson(join(state, 'measurements.json')) as unknown[];
        assert.equal(log.length, 1);
        const s = (await cli(['device', 'status', '--state', state, '--output', 'json'])).json();
        assert.equal(s['rotKind'], 'tpm');
        assert.equal((s['lastAttestation'] as Record<string, unknown>)['rotKind'], 'tpm');
        await dev.stop();
      }
      assert.equal((await show(id)).runtime?.['digest'], rt1.digest);
    });
  });
});
