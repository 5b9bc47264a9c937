// The update agent's TUF side (issue 5) against repositories the test controls, so every attack
// on TUF's list can be staged: each must be refused with its code, install nothing, and end as a
// failure report. The service's own repositories are checked against tuf-js in the service tests.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { type TargetCustom, targetPathOf } from '@heptad/protocol';
import { FsStorage } from '../src/state/storage.ts';
import { UpdateAgent, type UpdateFailure } from '../src/update/agent.ts';
import { UpdateFetcher } from '../src/update/fetcher.ts';
import { planUpdate } from '../src/update/plan.ts';
import { newKey, TufServer } from './support/tuf-repo.ts';

const TENANT = randomUUID();
const RUNTIME = '00000000-0000-0000-0000-000000000000';

function image(type: 'application' | 'runtime', bytes = Buffer.from(randomUUID().repeat(100))) {
  const custom: TargetCustom = {
    componentId: type === 'runtime' ? RUNTIME : randomUUID(),
    imageId: randomUUID(),
    name: type === 'runtime' ? 'heptad-runtime' : 'blink',
    version: '1.0.0',
    securityVersion: 1,
    type,
  };
  return { bytes, custom, path: targetPathOf(custom) };
}

describe('update agent against hostile TUF repositories', () => {
  let server: TufServer;
  let dir: string;
  let fetcher: UpdateFetcher;
  const plan = () => planUpdate(fetcher, dir, TENANT);
  const refused = async (code: string) => {
    await assert.rejects(plan(), (e: Error & { code?: string }) => {
      assert.equal(e.code, code, e.message);
      return true;
    });
  };

  beforeEach(async () => {
    server = new TufServer();
    await server.start();
    dir = mkdtempSync(join(tmpdir(), 'heptad-tuf-'));
    fetcher = new UpdateFetcher({
      serviceUrl: server.url,
      caPem: undefined,
      certificate: { chainPem: '', keyPem: '' },
      deadlineMs: 2_000,
    });
  });
  afterEach(async () => {
    fetcher.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a consistent pair of repositories gives the plan: the runtime and the apps the director names, nothing else', async () => {
    const rt = image('runtime');
    const app = image('application');
    const extra = image('application');
    server.addImage(rt.bytes, rt.custom, rt.path);
    server.addImage(app.bytes, app.custom, app.path);
    // Extraneous: in the image repository, not named by the director — never planned.
    server.addImage(extra.bytes, extra.custom, extra.path, false);
    server.image.publish();
    server.director.publish();
    const p = await plan();
    assert.equal(p.runtime?.custom.imageId, rt.custom.imageId);
    assert.deepEqual(
      p.apps.map((a) => a.custom.imageId),
      [app.custom.imageId],
    );
    assert.equal(p.apps[0]?.sha256, createHash('sha256').update(app.bytes).digest('hex'));
    // The URL is the hash-prefixed (consistent snapshot) name, and it serves the bytes.
    const src = fetcher.rangeSource(p.apps[0]?.url ?? '');
    assert.deepEqual(await src.get(0, 9), app.bytes.subarray(0, 10));
  });

  test('arbitrary software: a director target the image repository does not list', async () => {
    const app = image('application');
    server.director.add(app.bytes, app.custom, app.path);
    server.image.publish();
    server.director.publish();
    await refused('UPDATE_TARGET_UNKNOWN');
  });

  test('mix-and-match: director and image repository disagree on length or hash', async () => {
    const app = image('application');
    server.addImage(app.bytes, app.custom, app.path);
    server.image.publish();
    server.director.publish({ lie: { [app.path]: { sha256: 'ab'.repeat(32) } } });
    await refused('UPDATE_METADATA_MISMATCH');
    server.director.publish({ lie: { [app.path]: { length: app.bytes.length + 1 } } });
    await refused('UPDATE_METADATA_MISMATCH');
  });

  test('rollback: metadata older than what the device already trusts', async () => {
    server.image.publish();
    server.director.publish();
    server.director.publish();
    await plan();
    const newer = server.director.timestamp;
    server.director.publish({ version: 1 });
    await refused('UPDATE_METADATA_ROLLBACK');
    assert.ok(newer.length > 0);
  });

  test('indefinite freeze: expired metadata', async () => {
    server.image.publish();
    server.director.publish({ expiresInDays: { timestamp: -1 } });
    await refused('UPDATE_METADATA_EXPIRED');
  });

  test('wrong key: a timestamp signed by a key the root does not list', async () => {
    server.image.publish();
    server.director.publish({ signWith: { timestamp: [newKey()] } });
    await refused('UPDATE_METADATA_UNSIGNED');
  });

  test('threshold not met: two targets keys required, one signature', async () => {
    server.director.keys.targets.push(newKey());
    server.director.threshold.targets = 2;
    // A fresh device trusts this root (threshold 2) from the start.
    server.director.roots.length = 0;
    server.director.publishRoot();
    server.image.publish();
    server.director.publish({ signWith: { targets: [server.director.keys.targets[0] ?? newKey()] } });
    await refused('UPDATE_METADATA_UNSIGNED');
    server.director.publish();
    await plan();
  });

  test('key compromise recovered by root rotation: the device follows the root chain and refuses the old key', async () => {
    const app = image('application');
    server.addImage(app.bytes, app.custom, app.path);
    server.image.publish();
    server.director.publish();
    await plan();
    // The director's targets key leaks: the operator rotates it (root v2, signed by the root key).
    const leaked = server.director.keys.targets;
    server.director.keys.targets = [newKey()];
    server.director.publishRoot();
    server.director.publish();
    const p = await plan();
    assert.equal(p.apps.length, 1);
    // The attacker signs new targets with the leaked key: refused.
    server.director.publish({ signWith: { targets: leaked } });
    await refused('UPDATE_METADATA_UNSIGNED');
  });

  test('a root rotation the old root keys did not sign is refused', async () => {
    server.image.publish();
    server.director.publish();
    await plan();
    server.director.keys.root = [newKey()];
    server.director.publishRoot(server.director.keys.root); // signed by the new key only
    await refused('UPDATE_METADATA_UNSIGNED');
  });

  test("another tenant's repository: metadata signed by keys this device's root does not list", async () => {
    server.image.publish();
    server.director.publish();
    await plan();
    const other = new TufServer();
    other.director.publish({ version: 9 });
    server.director.files.set('timestamp.json', other.director.timestamp);
    await refused('UPDATE_METADATA_UNSIGNED');
  });

  test('endless data: metadata longer than its bound, a target range longer than asked', async () => {
    const app = image('application');
    server.addImage(app.bytes, app.custom, app.path);
    server.image.publish();
    server.director.publish();
    const p = await plan();
    server.extraBytes = 100;
    await assert.rejects(fetcher.rangeSource(p.apps[0]?.url ?? '').get(0, 99), {
      code: 'UPDATE_TARGET_LENGTH',
    });
    server.extraBytes = 0;
    // A snapshot longer than the timestamp says: refused by tuf-js's length check.
    const v = server.director.version;
    server.director.publish();
    const snap = server.director.files.get(`${v + 1}.snapshot.json`) ?? Buffer.alloc(0);
    server.director.files.set(`${v + 1}.snapshot.json`, Buffer.concat([snap, Buffer.alloc(5000, 0x20)]));
    await refused('UPDATE_METADATA_LENGTH');
  });

  test('slow retrieval: a server that trickles bytes is cut off at the deadline', async () => {
    const app = image('application');
    server.addImage(app.bytes, app.custom, app.path);
    server.image.publish();
    server.director.publish();
    const p = await plan();
    server.trickleMs = 50;
    const t0 = Date.now();
    await assert.rejects(fetcher.rangeSource(p.apps[0]?.url ?? '').get(0, 4095), {
      code: 'UPDATE_DOWNLOAD_TIMEOUT',
    });
    assert.ok(Date.now() - t0 < 4_000);
  });

  test('a director target that is not a Heptad image, or names one component twice, is refused', async () => {
    const a = image('application');
    server.image.add(a.bytes, { ...a.custom, imageId: 'not-a-uuid' } as TargetCustom, a.path);
    server.director.add(a.bytes, { ...a.custom, imageId: 'not-a-uuid' } as TargetCustom, a.path);
    server.image.publish();
    server.director.publish();
    await refused('UPDATE_METADATA_INVALID');
    // Path and custom field disagree (a target posing as another component).
    server.image.targets.clear();
    server.director.targets.clear();
    const b = image('application');
    const wrongPath = `apps/${randomUUID()}/${b.custom.imageId}.hpkg`;
    server.addImage(b.bytes, b.custom, wrongPath);
    server.image.publish();
    server.director.publish();
    await refused('UPDATE_METADATA_INVALID');
  });

  test('through the agent: an attack is refused with its code, recorded as a failure report, and nothing is installed', async () => {
    const app = image('application');
    server.addImage(app.bytes, app.custom, app.path);
    server.image.publish();
    server.director.publish({ lie: { [app.path]: { sha256: 'cd'.repeat(32) } } });
    const storage = new FsStorage(dir);
    const failures: UpdateFailure[] = [];
    const installs: string[] = [];
    const agent = new UpdateAgent({
      storage,
      runtime: {
        imageId: randomUUID(),
        trial: false,
        floor: 1,
        install: () => {
          installs.push('runtime');
          return { digest: '' };
        },
        reboot: () => undefined,
      },
      apps: {
        list: () => [],
        install: () => {
          installs.push('app');
          return { componentId: '', digest: '' };
        },
        activate: async () => true,
        commit: () => undefined,
        rollback: async () => undefined,
        remove: async () => undefined,
      },
      plan,
      source: (j) => fetcher.rangeSource(j.url),
      appDevelopment: () => false,
      freeBytes: () => 1e12,
      report: async () => undefined,
      record: (_k, f) => failures.push(f),
    });
    const r = await agent.check();
    assert.equal(r.ok, false);
    assert.equal(r.code, 'UPDATE_METADATA_MISMATCH');
    assert.deepEqual(failures, [{ phase: 'metadata', code: 'UPDATE_METADATA_MISMATCH' }]);
    assert.deepEqual(installs, []);
    assert.ok(!server.requests.some((p) => p.includes('/targets/')), 'no target byte was fetched');
  });
});
