// The update agent end to end (issue 5): real `heptad device run` devices against a live service
// with its TUF repositories. A runtime published to retail-eval reaches the OS-evaluation group's
// device through `heptad device update-now` (director + image metadata, ranged download, install
// into slot B, reboot into the trial, commit) and not the retail group's device; the progress is
// on the service; a withdrawn release is offered to nobody and a device already above it refuses
// the older runtime the director falls back to (below its floor), reported with its code.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunningService } from '@heptad/service';
import {
  DeviceProcess,
  enrollDevice,
  makeRuntimeKit,
  type RuntimeKit,
  readJson,
} from './support/device-process.ts';
import { startLiveService } from './support/live-service.ts';
import { runCaptured } from './support/run-cli.ts';

const RUNTIME = '00000000-0000-0000-0000-000000000000';
const EXAMPLES = join(import.meta.dirname, '..', '..', '..', 'examples');
const BLINK = '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b';

describe('the update agent against a live service', () => {
  let svc: RunningService;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let adminToken: string;
  let kit: RuntimeKit;
  let rt1: { file: string; digest: string };
  let rt2: { file: string; digest: string };
  let rt3: { file: string; digest: string };
  let n = 0;
  const cli = (argv: string[], extra: NodeJS.ProcessEnv = {}) => runCaptured(argv, { ...env, ...extra }, dir);
  const asAdmin = (argv: string[]) => cli(argv, { HEPTAD_TOKEN: adminToken });
  const ok = async (argv: string[], admin = false) => {
    const r = await (admin ? asAdmin(argv) : cli(argv));
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.err}`);
    return r;
  };

  async function newDevice(group: string): Promise<{ state: string; id: string }> {
    const state = join(dir, `dev-${++n}`);
    const id = await enrollDevice(cli, {
      state,
      serviceUrl: svc.url,
      caPath: String(svc.caPath),
      runtime: rt1.file,
      runtimeSigner: kit.platformPub,
      adminToken,
      group,
    });
    return { state, id };
  }
  const jobsOf = (r: { json?: Record<string, unknown> | undefined }) =>
    (r.json?.['jobs'] ?? []) as Array<Record<string, unknown>>;
  const updateNow = async (state: string) => {
    const r = await cli(['device', 'update-now', '--state', state, '--timeout', '90000', '--output', 'json']);
    if (r.code !== 0) {
      r.err += `\ntrigger left: ${existsSync(join(state, 'incoming', 'update-now'))}; last check: ${existsSync(join(state, 'update', 'last-check.json')) ? readFileSync(join(state, 'update', 'last-check.json'), 'utf8') : 'none'}`;
    }
    return {
      code: r.code,
      err: r.err,
      json: r.code === 0 ? (r.json() as Record<string, unknown>) : undefined,
    };
  };
  const statusRows = async (deviceId: string) => {
    const r = await ok(['device', 'update-status', deviceId, '--output', 'json'], true);
    return (r.json() as { items: Array<Record<string, string>> }).items.map((x) => ({
      component_id: x['componentId'],
      state: x['state'],
      code: x['code'],
    }));
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-update-'));
    ({ svc, env } = await startLiveService(dir));
    await ok(['tenant', 'create', 'Update Tenant']);
    const admin = await ok([
      'user',
      'create',
      'upd@example.com',
      '--tenant',
      'Update Tenant',
      '--role',
      'Administrator',
      '--output',
      'json',
    ]);
    adminToken = String(admin.json()['token']);
    await ok(['product', 'create', 'DW100'], true);
    kit = await makeRuntimeKit(dir);
    rt1 = await kit.pack('rt1', '1.0.0', 1);
    rt2 = await kit.pack('rt2', '1.1.0', 2);
    rt3 = await kit.pack('rt3', '1.2.0', 3);
    await ok(['runtime', 'signer', 'add', kit.platformPub]);
    // The factory runtime is a release every feed offers.
    await ok(['runtime', 'publish', rt1.file]);
    await ok(['runtime', 'promote', '1.0.0', '--to', 'retail']);
  });
  after(async () => {
    await DeviceProcess.powerCutAll();
    await svc?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('retail-eval release: the evaluation device updates (reboot, trial, commit), the retail device is not offered it', async () => {
    const evalDev = await newDevice('DW100/Field Test OS Evaluation');
    const retailDev = await newDevice('DW100/Field Test');
    const e = new DeviceProcess(evalDev.state);
    const r = new DeviceProcess(retailDev.state);
    await e.waitFor(/update check \(boot\): done/, 30_000);
    await r.waitFor(/update check \(boot\): done/, 30_000);
    // Nothing to do: both run what their feed offers.
    const idle = await updateNow(evalDev.state);
    assert.equal(idle.code, 0, `${idle.err}\n${e.out}`);
    assert.deepEqual(idle.json?.['jobs'], []);

    await ok(['runtime', 'publish', rt2.file]);
    const up = await updateNow(evalDev.state);
    assert.equal(up.code, 0, `${up.err}\n--- device:\n${e.out}`);
    const jobs = jobsOf(up);
    assert.deepEqual(
      jobs.map((j) => [j['kind'], j['version'], j['state']]),
      [['runtime', '1.1.0', 'activating']],
    );
    assert.equal(up.json?.['rebooting'], true);
    // It reboots into the trial, attests, commits, and the next check finds the job done.
    await e.waitFor(/runtime 1\.1\.0 committed; anti-rollback floor 2/, 30_000);
    await e.waitFor(/update check \(boot\): done; heptad-runtime 1\.1\.0 installed/, 30_000);
    assert.deepEqual(readJson(join(evalDev.state, 'boot.json')), {
      schema: 1,
      committed: 'B',
      trial: null,
      floor: 2,
    });
    const rows = await statusRows(evalDev.id);
    assert.deepEqual(
      rows.map((x) => [x.component_id, x.state]),
      [[RUNTIME, 'installed']],
    );
    // Downloaded with ranges and cleaned up after the install.
    assert.deepEqual(
      (readJson(join(evalDev.state, 'update', 'jobs.json')) as { jobs: Array<{ state: string }> }).jobs.map(
        (j) => j.state,
      ),
      ['installed'],
    );

    // The retail device: not offered a retail-eval release.
    const still = await updateNow(retailDev.state);
    assert.equal(still.code, 0, `${still.err}\n--- device:\n${r.out}`);
    assert.deepEqual(still.json?.['jobs'], []);
    assert.deepEqual(readJson(join(retailDev.state, 'boot.json')), {
      schema: 1,
      committed: 'A',
      trial: null,
      floor: 1,
    });

    // Withdrawn: offered to nobody. The evaluation group falls back to 1.0.0, which the device
    // (floor 2) refuses as a rollback, reports, and keeps running 1.1.0.
    await ok(['runtime', 'withdraw', '1.1.0']);
    const back = await updateNow(evalDev.state);
    assert.equal(back.code, 0, `${back.err}\n--- device:\n${e.out}`);
    assert.deepEqual(
      jobsOf(back).map((j) => [j['version'], j['state'], j['code']]),
      [['1.0.0', 'failed', 'BOOT_ROLLBACK_REFUSED']],
    );
    assert.deepEqual(
      (await statusRows(evalDev.id)).map((x) => [x.state, x.code]),
      [['failed', 'BOOT_ROLLBACK_REFUSED']],
    );
    assert.equal((readJson(join(evalDev.state, 'boot.json')) as { floor: number }).floor, 2);
    const retailAfter = await updateNow(retailDev.state);
    assert.deepEqual(retailAfter.json?.['jobs'], []);

    // A newer release moves it on.
    await ok(['runtime', 'publish', rt3.file]);
    const next = await updateNow(evalDev.state);
    assert.equal(next.code, 0, `${next.err}\n--- device:\n${e.out}`);
    await e.waitFor(/runtime 1\.2\.0 committed; anti-rollback floor 3/, 30_000);
    const st = await ok(['device', 'status', '--state', evalDev.state, '--output', 'json']);
    assert.equal((st.json()['lastUpdateCheck'] as Record<string, unknown>)['ok'], true);
    await Promise.all([e.stop(), r.stop()]);
  });

  /** Packs examples/blink as `version` (`main` replaces its entry point) and uploads it: the image id. */
  async function blinkImage(version: string, main?: string): Promise<string> {
    const src = join(dir, `blink-${version}`);
    cpSync(join(EXAMPLES, 'blink'), src, { recursive: true });
    if (main !== undefined) writeFileSync(join(src, 'main.ts'), main);
    const out = join(dir, `blink-${version}.hpkg`);
    await ok(['image', 'pack', src, '--out', out, '--key', join(dir, 'dev.key'), '--version', version]);
    const added = await ok(['image', 'add', out, '--output', 'json'], true);
    return String(added.json()['id']);
  }

  test('apps from deployments: installed, updated with only that app restarted, a crashing version rolled back; progress on the service', async () => {
    await ok(['key', 'create', '--out', join(dir, 'dev.key')]);
    const d = await newDevice('DW100/Field Test');
    const dev = new DeviceProcess(d.state, ['--app-health-period', '1500']);
    await dev.waitFor(/update check \(boot\): done/, 30_000);
    const v1 = await blinkImage('1.0.0');
    const dep1 = String(
      (
        await ok(
          ['deployment', 'create', '--device-group', 'DW100/Field Test', '--image', v1, '--output', 'json'],
          true,
        )
      ).json()['id'],
    );
    const first = await updateNow(d.state);
    assert.equal(first.code, 0, `${first.err}\n${dev.out}`);
    assert.deepEqual(
      jobsOf(first).map((j) => [j['kind'], j['name'], j['version'], j['state']]),
      [['app', 'blink', '1.0.0', 'installed']],
    );
    await dev.waitFor(/\[app blink\] blink: toggling LED1/);
    // Production-signed by the service, not developer-signed: it runs on a device without app development.
    const apps = (await ok(['device', 'apps', '--state', d.state, '--output', 'json'])).json() as {
      items: Array<Record<string, unknown>>;
    };
    assert.deepEqual(
      apps.items.map((a) => [a['componentId'], a['version'], a['devSigned']]),
      [[BLINK, '1.0.0', false]],
    );
    const shown = (await ok(['deployment', 'show', dep1, '--output', 'json'], true)).json() as {
      progress: { summary: Record<string, number>; items: Array<{ deviceId: string; state: string }> };
    };
    // The group also holds the retail device of the first test, which was not running for this deployment.
    assert.deepEqual(
      shown.progress.items.filter((i) => i.deviceId === d.id).map((i) => i.state),
      ['installed'],
    );

    // A new version: downloaded, installed into the other slot, only blink restarted, committed.
    const v2 = await blinkImage('1.1.0');
    await ok(['deployment', 'create', '--device-group', 'DW100/Field Test', '--image', v2], true);
    const second = await updateNow(d.state);
    assert.equal(second.code, 0, `${second.err}\n--- device:\n${dev.out}`);
    assert.deepEqual(
      jobsOf(second).map((j) => [j['version'], j['state']]),
      [['1.1.0', 'installed']],
    );
    await dev.waitFor(/supervisor: started blink 1\.1\.0/);
    const runtimePid = (readJson(join(d.state, 'run', 'status.json')) as { runtimePid?: number }).runtimePid;

    // A version that crashes at once: rolled back, 1.1.0 runs again, the failure is reported.
    const v3 = await blinkImage('1.2.0', "throw new Error('blink 1.2.0 cannot start');\n");
    const dep3 = String(
      (
        await ok(
          ['deployment', 'create', '--device-group', 'DW100/Field Test', '--image', v3, '--output', 'json'],
          true,
        )
      ).json()['id'],
    );
    const third = await updateNow(d.state);
    assert.equal(third.code, 0, `${third.err}\n--- device:\n${dev.out}`);
    assert.deepEqual(
      jobsOf(third).map((j) => [j['version'], j['state'], j['code']]),
      [['1.2.0', 'rolled-back', 'UPDATE_ROLLED_BACK']],
    );
    const after = (await ok(['device', 'apps', '--state', d.state, '--output', 'json'])).json() as {
      items: Array<Record<string, unknown>>;
    };
    assert.deepEqual(
      after.items.map((a) => [a['version'], a['trial']]),
      [['1.1.0', false]],
    );
    assert.equal(
      (readJson(join(d.state, 'run', 'status.json')) as { runtimePid?: number }).runtimePid,
      runtimePid,
      'the runtime did not restart',
    );
    const p3 = (await ok(['deployment', 'show', dep3, '--output', 'json'], true)).json() as {
      progress: { items: Array<{ deviceId: string; state: string; images: Array<{ code?: string }> }> };
    };
    const mine3 = p3.progress.items.find((i) => i.deviceId === d.id);
    assert.equal(mine3?.state, 'rolled-back');
    assert.equal(mine3?.images[0]?.code, 'UPDATE_ROLLED_BACK');

    // An app no longer deployed leaves the device.
    await ok(
      ['deployment', 'create', '--device-group', 'DW100/Field Test', '--image', await crasherImage()],
      true,
    );
    const fourth = await updateNow(d.state);
    assert.equal(fourth.code, 0, `${fourth.err}\n--- device:\n${dev.out}`);
    const left = (await ok(['device', 'apps', '--state', d.state, '--output', 'json'])).json() as {
      items: Array<Record<string, unknown>>;
    };
    assert.ok(!left.items.some((a) => a['componentId'] === BLINK), 'blink was removed');
    await dev.stop();
  });

  /** Another app (the crasher example, which stays up until a button is pressed): a deployment without blink. */
  async function crasherImage(): Promise<string> {
    const src = join(dir, 'crasher-1.0.0');
    cpSync(join(EXAMPLES, 'crasher'), src, { recursive: true });
    const out = join(dir, 'crasher-1.0.0.hpkg');
    await ok(['image', 'pack', src, '--out', out, '--key', join(dir, 'dev.key'), '--version', '1.0.0']);
    return String((await ok(['image', 'add', out, '--output', 'json'], true)).json()['id']);
  }

  test('refused: update-now on a device that is not running, or not a device folder', async () => {
    const d = await newDevice('DW100/Field Test');
    const r = await cli(['device', 'update-now', '--state', d.state]);
    assert.equal(r.code, 1);
    assert.match(r.err, /UPDATE_DEVICE_NOT_RUNNING/);
    const bad = await cli(['device', 'update-now', '--state', join(dir, 'nowhere')]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /DEVICE_STATE_INVALID/);
    const t = await cli(['device', 'update-now', '--state', d.state, '--timeout', 'soon']);
    assert.match(t.err, /CLI_USAGE/);
  });
});
