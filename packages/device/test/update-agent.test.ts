// The update agent (issue 5) without a network: its transition table, the resumable download and
// the agent over the crash-safe storage, with the real runtime installer and bootloader. The TUF
// side (plan.ts against a live service) is tested in packages/cli/test/update-agent-service.test.ts.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  buildPackage,
  HeptadError,
  keyIdOf,
  targetPathOf,
  type UpdateStatus,
  verifyPackage,
} from '@heptad/protocol';
import { commitApp, installApp, listApps } from '../src/apps/store.ts';
import { setImageKeys } from '../src/apps/trust.ts';
import { boot } from '../src/boot/bootloader.ts';
import { commitTrial, installRuntime } from '../src/boot/install.ts';
import { BOOT_STATE_PATH, type BootState, loadBootState, slotPath } from '../src/boot/slots.ts';
import { FaultyStorage, PowerCut, type Storage } from '../src/state/storage.ts';
import type { AppSupervisor } from '../src/supervisor/supervisor.ts';
import {
  type AgentOptions,
  type AppHost,
  type InstalledApp,
  JOBS_PATH,
  type Job,
  UpdateAgent,
  type UpdateFailure,
} from '../src/update/agent.ts';
import { supervisorAppHost } from '../src/update/app-host.ts';
import { downloadTarget, type RangeSource } from '../src/update/download.ts';
import type { Plan, PlannedTarget } from '../src/update/plan.ts';
import { JOB_EVENTS, JOB_STATES, next, TERMINAL, TRANSITIONS } from '../src/update/transitions.ts';

const platform = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const platformKeys = new Map<string, KeyObject>([[keyIdOf(platform.publicKey), platform.publicKey]]);
const RUNTIME = '00000000-0000-0000-0000-000000000000';
const CHUNK = 4096;

function runtimePkg(securityVersion: number, size = 20_000): { bytes: Buffer; imageId: string } {
  const imageId = randomUUID();
  const bytes = buildPackage({
    manifest: {
      componentId: RUNTIME,
      imageId,
      name: 'heptad-runtime',
      version: `1.0.${securityVersion}`,
      securityVersion,
      type: 'runtime',
      entryPoint: 'runtime.mjs',
      createdAt: '2026-01-01T00:00:00.000Z',
    },
    // Several chunks long, and not compressible into fewer.
    files: [
      { path: 'runtime.mjs', content: Buffer.from(Array.from({ length: size }, (_, i) => (i * 7919) % 251)) },
    ],
    signers: [{ privateKey: platform.privateKey }],
  });
  return { bytes, imageId };
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function target(bytes: Buffer, custom: PlannedTarget['custom']): PlannedTarget {
  const path = targetPathOf(custom);
  return { path, length: bytes.length, sha256: sha(bytes), custom, url: `https://service.test/${path}` };
}

function runtimeTarget(p: { bytes: Buffer; imageId: string }, securityVersion: number): PlannedTarget {
  return target(p.bytes, {
    componentId: RUNTIME,
    imageId: p.imageId,
    name: 'heptad-runtime',
    version: `1.0.${securityVersion}`,
    securityVersion,
    type: 'runtime',
  });
}

/** Serves byte ranges of the given files by URL, counting what it sends; `failAfter` drops the connection. */
class Server {
  readonly files = new Map<string, Buffer>();
  sent = 0;
  failAfter = Number.POSITIVE_INFINITY;
  calls = 0;
  source(url: string): RangeSource {
    return {
      get: async (start, end) => {
        if (++this.calls > this.failAfter)
          throw new HeptadError('DEVICE_SERVICE_UNREACHABLE', 'cable pulled');
        const f = this.files.get(url);
        if (!f) throw new HeptadError('UPDATE_DOWNLOAD_FAILED', 'HTTP 404');
        const b = f.subarray(start, end + 1);
        this.sent += b.length;
        return Buffer.from(b);
      },
    };
  }
}

const A1 = runtimePkg(1);
const B2 = runtimePkg(2);

function device(): FaultyStorage {
  const state: BootState = { schema: 1, committed: 'A', trial: null, floor: 1 };
  return new FaultyStorage(
    new Map<string, Uint8Array>([
      [BOOT_STATE_PATH, Buffer.from(JSON.stringify(state))],
      [slotPath('A'), A1.bytes],
    ]),
  );
}

/** What booted now: the bootloader's choice, its image id and whether it is a trial. */
async function bootNow(storage: Storage): Promise<{ imageId: string; trial: boolean; floor: number }> {
  const r = await boot({ storage, platformKeys, measurementPcr: 16 });
  const bytes = storage.read(slotPath(r.slot));
  assert.ok(bytes);
  return { imageId: verifyPackage(bytes, platformKeys).manifest.imageId, trial: r.trial, floor: r.floor };
}

interface Harness {
  agent: UpdateAgent;
  reports: UpdateStatus[][];
  failures: Array<{ kind: string; f: UpdateFailure }>;
  rebooted: () => boolean;
}

function agentOn(
  storage: Storage,
  server: Server,
  running: { imageId: string; trial: boolean; floor: number },
  plan: () => Promise<Plan>,
  extra: Partial<AgentOptions> = {},
): Harness {
  const reports: UpdateStatus[][] = [];
  const failures: Array<{ kind: string; f: UpdateFailure }> = [];
  let rebooted = false;
  const agent = new UpdateAgent({
    storage,
    runtime: {
      ...running,
      install: (pkg) => ({ digest: installRuntime({ storage, platformKeys, pkg }).pkg.digest }),
      reboot: () => {
        rebooted = true;
      },
    },
    plan,
    source: (j: Job) => server.source(j.url),
    appDevelopment: () => false,
    freeBytes: () => 1e12,
    report: async (s) => {
      reports.push(s);
    },
    record: (kind, f) => failures.push({ kind, f }),
    chunkSize: CHUNK,
    ...extra,
  });
  return { agent, reports, failures, rebooted: () => rebooted };
}

const planOf =
  (runtime: PlannedTarget | undefined, apps: PlannedTarget[] = []) =>
  async (): Promise<Plan> => ({ runtime, apps, directorVersion: 1 });

describe('update agent: the transition table', () => {
  test('every state has a decision for every event (a target state or an explicit refusal)', () => {
    for (const s of JOB_STATES) {
      assert.deepEqual(Object.keys(TRANSITIONS[s]).sort(), [...JOB_EVENTS].sort(), `row ${s}`);
      for (const e of JOB_EVENTS) {
        const to = TRANSITIONS[s][e];
        assert.ok(to === null || (JOB_STATES as readonly string[]).includes(to), `${s} × ${e}`);
        if (to === null) assert.throws(() => next(s, e), { code: 'UPDATE_TRANSITION_INVALID' });
        else assert.equal(next(s, e), to);
      }
    }
  });

  test('every state is reachable from pending, and every state can reach an end', () => {
    const reach = (from: string): Set<string> => {
      const seen = new Set([from]);
      const todo = [from];
      while (todo.length > 0) {
        const s = todo.pop() as (typeof JOB_STATES)[number];
        for (const to of Object.values(TRANSITIONS[s]))
          if (to !== null && !seen.has(to)) {
            seen.add(to);
            todo.push(to);
          }
      }
      return seen;
    };
    assert.deepEqual([...reach('pending')].sort(), [...JOB_STATES].sort());
    for (const s of JOB_STATES) {
      assert.ok(
        [...reach(s)].some((x) => TERMINAL.has(x as (typeof JOB_STATES)[number])),
        `${s} reaches no end`,
      );
    }
  });

  test('ended jobs take no event but a retry of a failure, and an install cannot be called off', () => {
    for (const s of TERMINAL)
      for (const e of JOB_EVENTS) {
        if (s === 'failed' && e === 'retry') continue;
        assert.equal(TRANSITIONS[s][e], null, `${s} × ${e}`);
      }
    assert.equal(TRANSITIONS.installing.superseded, null);
    assert.equal(TRANSITIONS.activating.superseded, null);
  });
});

describe('update agent: resumable download', () => {
  const bytes = B2.bytes;
  const t = { sha256: sha(bytes), length: bytes.length };

  test('an interrupted download resumes at the first missing chunk: at most one chunk is fetched again', async () => {
    const storage = device();
    const server = new Server();
    server.files.set('u', bytes);
    server.failAfter = 3;
    await assert.rejects(downloadTarget(storage, t, server.source('u'), { chunkSize: CHUNK }), {
      code: 'DEVICE_SERVICE_UNREACHABLE',
    });
    const before = server.sent;
    assert.equal(before, 3 * CHUNK);
    server.failAfter = Number.POSITIVE_INFINITY;
    const r = await downloadTarget(storage, t, server.source('u'), { chunkSize: CHUNK });
    assert.deepEqual(r.bytes, bytes);
    assert.equal(r.resumedChunks, 3);
    assert.equal(before + r.fetched, bytes.length, 'nothing fetched twice');
  });

  test('a power cut in a chunk write loses only that chunk', async () => {
    const storage = device();
    const server = new Server();
    server.files.set('u', bytes);
    storage.crashAfter(3);
    await assert.rejects(downloadTarget(storage, t, server.source('u'), { chunkSize: CHUNK }), PowerCut);
    const after = storage.reboot();
    const sentBefore = server.sent;
    const r = await downloadTarget(after, t, server.source('u'), { chunkSize: CHUNK });
    assert.deepEqual(r.bytes, bytes);
    assert.ok(sentBefore + r.fetched - bytes.length <= CHUNK, 'at most the cut chunk again');
  });

  test('refused: bytes that do not hash to the metadata (chunks dropped), a range answered short', async () => {
    const storage = device();
    const server = new Server();
    const bad = Buffer.from(bytes);
    bad[100] = (bad[100] ?? 0) ^ 1;
    server.files.set('u', bad);
    await assert.rejects(downloadTarget(storage, t, server.source('u'), { chunkSize: CHUNK }), {
      code: 'UPDATE_TARGET_CORRUPT',
    });
    assert.equal([...storage.snapshot().keys()].filter((k) => k.startsWith('update/download/')).length, 0);
    server.files.set('u', bytes.subarray(0, 10_000));
    await assert.rejects(downloadTarget(storage, t, server.source('u'), { chunkSize: CHUNK }), {
      code: 'UPDATE_TARGET_LENGTH',
    });
  });
});

describe('update agent: runtime updates over the crash-safe storage', () => {
  test('runtime: downloaded, installed into slot B as a trial, reboot, committed trial reported installed', async () => {
    const storage = device();
    const server = new Server();
    const t = runtimeTarget(B2, 2);
    server.files.set(t.url, B2.bytes);
    const h = agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t));
    const r = await h.agent.check();
    assert.equal(r.rebooting, true);
    assert.equal(h.rebooted(), true);
    assert.equal(r.jobs[0]?.state, 'activating');
    // The installer made slot B the trial; the bootloader boots it.
    const booted = await bootNow(storage);
    assert.deepEqual(booted, { imageId: B2.imageId, trial: true, floor: 1 });
    assert.equal(h.reports.at(-1)?.[0]?.state, 'downloading');
    // Next boot, still on trial: nothing decided yet; once committed: installed.
    const h2 = agentOn(storage, server, booted, planOf(t));
    assert.equal((await h2.agent.resume()).jobs[0]?.state, 'activating');
    const h3 = agentOn(storage, server, { ...booted, trial: false }, planOf(t));
    await h3.agent.check();
    assert.equal(h3.agent.jobs[0]?.state, 'installed');
    assert.deepEqual(
      h3.reports.at(-1)?.map((s) => [s.imageId, s.state]),
      [[B2.imageId, 'installed']],
    );
    // Nothing left behind in the download area, and the next check has nothing to do.
    assert.equal([...storage.snapshot().keys()].filter((k) => k.startsWith('update/download/')).length, 0);
    const sent = server.sent;
    await h3.agent.check();
    assert.equal(server.sent, sent);
  });

  test('runtime: a trial the bootloader abandoned is reported rolled back with a rollback report', async () => {
    const storage = device();
    const server = new Server();
    const t = runtimeTarget(B2, 2);
    server.files.set(t.url, B2.bytes);
    await agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t)).agent.check();
    // The trial never became healthy: the device is back on A.
    const h = agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t));
    await h.agent.resume();
    assert.equal(h.agent.jobs[0]?.state, 'rolled-back');
    assert.equal(h.agent.jobs[0]?.code, 'UPDATE_ROLLED_BACK');
    assert.deepEqual(
      h.failures.map((f) => f.kind),
      ['rollback'],
    );
    assert.equal(h.reports.at(-1)?.[0]?.state, 'rolled-back');
  });

  test('refused before any byte is fetched: a runtime below the anti-rollback floor, too little space', async () => {
    for (const [name, running, free, code] of [
      ['floor', { imageId: A1.imageId, trial: false, floor: 3 }, 1e12, 'BOOT_ROLLBACK_REFUSED'],
      ['space', { imageId: A1.imageId, trial: false, floor: 1 }, 1000, 'UPDATE_NO_SPACE'],
    ] as const) {
      const storage = device();
      const server = new Server();
      const t = runtimeTarget(B2, 2);
      server.files.set(t.url, B2.bytes);
      const h = agentOn(storage, server, running, planOf(t), { freeBytes: () => free });
      const before = loadBootState(storage, platformKeys).state;
      await h.agent.check();
      assert.equal(h.agent.jobs[0]?.state, 'failed', name);
      assert.equal(h.agent.jobs[0]?.code, code, name);
      assert.equal(server.sent, 0, name);
      assert.deepEqual(loadBootState(storage, platformKeys).state, before, name);
      assert.equal(h.failures[0]?.f.code, code, name);
    }
  });

  test('refused at install: a package not signed by the platform key (the download was genuine per metadata)', async () => {
    const storage = device();
    const server = new Server();
    const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const forged = buildPackage({
      manifest: { ...verifyPackage(B2.bytes, platformKeys).manifest },
      files: [{ path: 'runtime.mjs', content: Buffer.from('evil') }],
      signers: [{ privateKey: other.privateKey }],
    });
    const t = runtimeTarget({ bytes: forged, imageId: B2.imageId }, 2);
    server.files.set(t.url, forged);
    const h = agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t));
    await h.agent.check();
    assert.equal(h.agent.jobs[0]?.state, 'failed');
    assert.equal(h.agent.jobs[0]?.code, 'IMAGE_SIGNATURE_UNTRUSTED');
    assert.equal(h.rebooted(), false);
    assert.deepEqual(await bootNow(storage), { imageId: A1.imageId, trial: false, floor: 1 });
  });

  test('a network cut keeps the job downloading; the next check resumes it', async () => {
    const storage = device();
    const server = new Server();
    const t = runtimeTarget(B2, 2);
    server.files.set(t.url, B2.bytes);
    server.failAfter = 2;
    const h = agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t));
    await h.agent.check();
    assert.equal(h.agent.jobs[0]?.state, 'downloading');
    assert.equal(h.agent.jobs[0]?.code, 'DEVICE_SERVICE_UNREACHABLE');
    assert.equal(h.reports.at(-1)?.[0]?.state, 'downloading');
    server.failAfter = Number.POSITIVE_INFINITY;
    await h.agent.check();
    assert.equal(h.agent.jobs[0]?.state, 'activating');
    assert.equal(server.sent, B2.bytes.length, 'no byte fetched twice');
  });

  test('a job the director no longer names is cancelled and its chunks dropped', async () => {
    const storage = device();
    const server = new Server();
    const t = runtimeTarget(B2, 2);
    server.files.set(t.url, B2.bytes);
    server.failAfter = 2;
    const h = agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t));
    await h.agent.check();
    const h2 = agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(undefined));
    await h2.agent.check();
    assert.equal(h2.agent.jobs[0]?.state, 'cancelled');
    assert.equal([...storage.snapshot().keys()].filter((k) => k.startsWith('update/download/')).length, 0);
  });

  test('the job list survives a reload; a damaged one is started over, not trusted', async () => {
    const storage = device();
    const server = new Server();
    const t = runtimeTarget(B2, 2);
    server.files.set(t.url, B2.bytes);
    server.failAfter = 1;
    await agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t)).agent.check();
    const again = agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t));
    assert.equal(again.agent.jobs[0]?.state, 'downloading');
    storage.write(JOBS_PATH, Buffer.from('{"schema":1,"jobs":'));
    assert.deepEqual(
      agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t)).agent.jobs,
      [],
    );
  });

  test('power cut at EVERY write of a runtime update: the device always boots a verified runtime, old or new, and the update completes', async () => {
    // Count the writes of an uninterrupted update.
    const probe = device();
    const server0 = new Server();
    const t = runtimeTarget(B2, 2);
    server0.files.set(t.url, B2.bytes);
    const w0 = probe.writes;
    await agentOn(probe, server0, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t)).agent.check();
    const total = probe.writes - w0;
    assert.ok(total >= 8, `only ${total} writes`);
    for (const mode of ['clean', 'torn'] as const) {
      for (let k = 1; k <= total; k++) {
        const storage = device();
        const server = new Server();
        server.files.set(t.url, B2.bytes);
        storage.crashAfter(k, mode);
        await assert.rejects(
          agentOn(storage, server, { imageId: A1.imageId, trial: false, floor: 1 }, planOf(t)).agent.check(),
          PowerCut,
          `cut ${k}`,
        );
        // Power back: the bootloader boots a verified runtime, the old or the new one.
        let s = storage.reboot();
        let running = await bootNow(s);
        assert.ok([A1.imageId, B2.imageId].includes(running.imageId), `cut ${k}: booted neither`);
        const sentBefore = server.sent;
        // The device carries on as it would: the agent resumes and checks; a reboot it asks for
        // boots again; a trial is committed by the runtime once attested (commitTrial here).
        for (let round = 0; round < 6; round++) {
          const h = agentOn(s, server, running, planOf(t));
          await h.agent.resume();
          await h.agent.check();
          const job = h.agent.jobs.find((j) => j.imageId === B2.imageId);
          if (job?.state === 'installed') break;
          if (h.rebooted()) {
            s = s.reboot();
            running = await bootNow(s);
          } else if (running.trial) {
            commitTrial({ storage: s, platformKeys });
            running = { ...running, trial: false };
          }
        }
        const final = agentOn(s, server, running, planOf(t));
        await final.agent.resume();
        assert.equal(
          final.agent.jobs.find((j) => j.imageId === B2.imageId)?.state,
          'installed',
          `${mode} cut ${k}`,
        );
        assert.equal(running.imageId, B2.imageId, `${mode} cut ${k}: the new runtime runs`);
        assert.ok(
          sentBefore + (server.sent - sentBefore) <= B2.bytes.length + CHUNK,
          `${mode} cut ${k}: refetched more than a chunk`,
        );
      }
    }
  });
});

/** An in-memory app host: enough to drive the agent's app path (the real one: apps/store.ts). */
class FakeApps implements AppHost {
  installed = new Map<string, InstalledApp & { trial?: string }>();
  healthy = true;
  log: string[] = [];
  list() {
    return [...this.installed.values()];
  }
  install(pkg: Buffer) {
    const m = JSON.parse(pkg.toString('utf8')) as { componentId: string; imageId: string };
    const cur = this.installed.get(m.componentId);
    this.installed.set(m.componentId, {
      componentId: m.componentId,
      imageId: cur?.imageId ?? '',
      devSigned: false,
      trial: m.imageId,
    });
    this.log.push(`install ${m.imageId}`);
    return { componentId: m.componentId, digest: sha(pkg) };
  }
  async activate(c: string) {
    this.log.push(`activate ${c}`);
    return this.healthy;
  }
  commit(c: string) {
    const a = this.installed.get(c);
    if (a?.trial) this.installed.set(c, { componentId: c, imageId: a.trial, devSigned: false });
    this.log.push(`commit ${c}`);
  }
  async rollback(c: string) {
    const a = this.installed.get(c);
    if (a) this.installed.set(c, { componentId: a.componentId, imageId: a.imageId, devSigned: a.devSigned });
    this.log.push(`rollback ${c}`);
  }
  async remove(c: string) {
    this.installed.delete(c);
    this.log.push(`remove ${c}`);
  }
}

function appTarget(componentId: string): { t: PlannedTarget; bytes: Buffer } {
  const imageId = randomUUID();
  const bytes = Buffer.from(JSON.stringify({ componentId, imageId, pad: 'x'.repeat(9000) }));
  return {
    bytes,
    t: target(bytes, {
      componentId,
      imageId,
      name: 'blink',
      version: '1.0.0',
      securityVersion: 1,
      type: 'application',
    }),
  };
}

describe('update agent: apps', () => {
  const running = { imageId: A1.imageId, trial: false, floor: 1 };

  test('runtime first, then apps; a healthy app is committed, an unhealthy one rolled back and reported', async () => {
    const storage = device();
    const server = new Server();
    const apps = new FakeApps();
    const good = appTarget(randomUUID());
    const bad = appTarget(randomUUID());
    server.files.set(good.t.url, good.bytes);
    server.files.set(bad.t.url, bad.bytes);
    const plan = planOf(undefined, [good.t, bad.t]);
    let n = 0;
    apps.activate = async (c: string) => {
      apps.log.push(`activate ${c}`);
      return n++ === 0;
    };
    const h = agentOn(storage, server, running, plan, { apps });
    await h.agent.check();
    assert.deepEqual(
      h.agent.jobs.map((j) => [j.imageId, j.state]),
      [
        [good.t.custom.imageId, 'installed'],
        [bad.t.custom.imageId, 'rolled-back'],
      ],
    );
    assert.equal(apps.installed.get(good.t.custom.componentId)?.imageId, good.t.custom.imageId);
    assert.ok(apps.log.includes(`rollback ${bad.t.custom.componentId}`));
    assert.deepEqual(
      h.failures.map((f) => [f.kind, f.f.componentId]),
      [['rollback', bad.t.custom.componentId]],
    );
    // With a runtime in the plan, the runtime goes first and the apps wait for the reboot.
    const storage2 = device();
    const rt = runtimeTarget(B2, 2);
    server.files.set(rt.url, B2.bytes);
    const apps2 = new FakeApps();
    const h2 = agentOn(storage2, server, running, planOf(rt, [good.t]), { apps: apps2 });
    const r = await h2.agent.check();
    assert.equal(r.rebooting, true);
    assert.deepEqual(apps2.log, []);
    assert.deepEqual(
      h2.agent.jobs.map((j) => j.kind),
      ['runtime', 'app'],
    );
  });

  test('appDevelopment devices get no app updates and keep their apps; other devices drop apps no longer deployed', async () => {
    const server = new Server();
    const a = appTarget(randomUUID());
    server.files.set(a.t.url, a.bytes);
    const dev = new FakeApps();
    dev.installed.set('c-dev', { componentId: 'c-dev', imageId: 'x', devSigned: true });
    const hd = agentOn(device(), server, running, planOf(undefined, [a.t]), {
      apps: dev,
      appDevelopment: () => true,
    });
    await hd.agent.check();
    assert.deepEqual(hd.agent.jobs, []);
    assert.deepEqual(dev.log, []);
    assert.equal(server.sent, 0);

    const prod = new FakeApps();
    prod.installed.set('old', { componentId: 'old', imageId: 'y', devSigned: false });
    prod.installed.set('sideloaded', { componentId: 'sideloaded', imageId: 'z', devSigned: true });
    const hp = agentOn(device(), server, running, planOf(undefined, [a.t]), { apps: prod });
    await hp.agent.check();
    assert.ok(prod.log.includes('remove old'));
    assert.ok(!prod.log.includes('remove sideloaded'));
    assert.equal(prod.installed.get(a.t.custom.componentId)?.imageId, a.t.custom.imageId);
  });

  test('an app package that is another component than its target is refused', async () => {
    const server = new Server();
    const a = appTarget(randomUUID());
    const liar = appTarget(randomUUID());
    server.files.set(a.t.url, liar.bytes);
    const fake = { ...a.t, length: liar.bytes.length, sha256: sha(liar.bytes) };
    const apps = new FakeApps();
    const h = agentOn(device(), server, running, planOf(undefined, [fake]), { apps });
    await h.agent.check();
    assert.equal(h.agent.jobs[0]?.state, 'failed');
    assert.equal(h.agent.jobs[0]?.code, 'UPDATE_METADATA_MISMATCH');
  });

  test('a failed download is retried at later checks, at most three times', async () => {
    const server = new Server();
    const a = appTarget(randomUUID());
    server.files.set(a.t.url, Buffer.from('not it'));
    const apps = new FakeApps();
    const storage = device();
    for (let i = 0; i < 5; i++)
      await agentOn(storage, server, running, planOf(undefined, [a.t]), { apps }).agent.check();
    const h = agentOn(storage, server, running, planOf(undefined, [a.t]), { apps });
    assert.equal(h.agent.jobs[0]?.state, 'failed');
    assert.equal(h.agent.jobs[0]?.attempts, 3);
  });

  test('a refused plan (metadata) installs nothing and records an update failure', async () => {
    const apps = new FakeApps();
    const h = agentOn(
      device(),
      new Server(),
      running,
      async () => {
        throw new HeptadError('UPDATE_METADATA_MISMATCH');
      },
      { apps },
    );
    const r = await h.agent.check();
    assert.equal(r.ok, false);
    assert.equal(r.code, 'UPDATE_METADATA_MISMATCH');
    assert.deepEqual(h.failures, [
      { kind: 'update-failure', f: { phase: 'metadata', code: 'UPDATE_METADATA_MISMATCH' } },
    ]);
    assert.deepEqual(apps.log, []);
  });
});

describe('update agent: app updates over the real app store, power cut at every write', () => {
  const tenant = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const COMPONENT = randomUUID();
  const appPkg = (version: string, sv: number): { bytes: Buffer; imageId: string } => {
    const imageId = randomUUID();
    const bytes = buildPackage({
      manifest: {
        componentId: COMPONENT,
        imageId,
        name: 'blink',
        version,
        securityVersion: sv,
        type: 'application',
        entryPoint: 'main.js',
        appManifest: {
          SchemaVersion: 1,
          Name: 'blink',
          ComponentId: COMPONENT,
          EntryPoint: 'main.js',
          Capabilities: { Gpio: ['LED1'] },
        },
        createdAt: '2026-01-01T00:00:00.000Z',
      },
      files: [
        {
          path: 'main.js',
          content: Buffer.from(Array.from({ length: 12_000 }, (_, i) => (i * 31 + sv) % 251)),
        },
      ],
      signers: [{ privateKey: tenant.privateKey }],
    });
    return { bytes, imageId };
  };
  const V1 = appPkg('1.0.0', 1);
  const V2 = appPkg('2.0.0', 2);
  const t2 = target(V2.bytes, {
    componentId: COMPONENT,
    imageId: V2.imageId,
    name: 'blink',
    version: '2.0.0',
    securityVersion: 2,
    type: 'application',
  });
  /** A supervisor that starts every app healthy (the store and the agent are what is under test). */
  const healthy = {
    restartApp: async () => undefined,
    stopApp: async () => undefined,
    health: () => ({ state: 'running', runningMs: 60_000, restarts: 0 }),
  } as unknown as AppSupervisor;

  function appDevice(): FaultyStorage {
    const s = device();
    setImageKeys(s, String(tenant.publicKey.export({ type: 'spki', format: 'pem' })));
    installApp(s, V1.bytes);
    commitApp(s, COMPONENT);
    return new FaultyStorage(s.snapshot());
  }
  const running = { imageId: A1.imageId, trial: false, floor: 1 };
  const agentFor = (s: Storage, server: Server) =>
    agentOn(s, server, running, planOf(undefined, [t2]), {
      apps: supervisorAppHost(s, () => healthy, { healthMs: 1, startMs: 50 }),
    });

  /** What the store runs, checked independently: the slot verifies, and it is V1 or V2. */
  function runningApp(s: Storage): { imageId: string; trial: boolean } {
    const [a, ...rest] = listApps(s);
    assert.equal(rest.length, 0);
    assert.ok(a, 'the app is gone');
    assert.equal(a.problem, undefined, `slot ${a.slot} does not verify: ${a.problem}`);
    assert.ok([V1.imageId, V2.imageId].includes(a.imageId), 'neither version');
    return { imageId: a.imageId, trial: a.trial };
  }

  test('uninterrupted: V2 installed into the other slot, activated, committed', async () => {
    const s = appDevice();
    const server = new Server();
    server.files.set(t2.url, V2.bytes);
    const h = agentFor(s, server);
    await h.agent.check();
    assert.equal(h.agent.jobs[0]?.state, 'installed');
    assert.deepEqual(runningApp(s), { imageId: V2.imageId, trial: false });
  });

  test('cut at every write (clean and torn): the store always runs a verified V1 or V2, and the update completes', async () => {
    const probe = appDevice();
    const server0 = new Server();
    server0.files.set(t2.url, V2.bytes);
    const w0 = probe.writes;
    await agentFor(probe, server0).agent.check();
    const total = probe.writes - w0;
    assert.ok(total >= 6, `only ${total} writes`);
    for (const mode of ['clean', 'torn'] as const) {
      for (let k = 1; k <= total; k++) {
        const s0 = appDevice();
        const server = new Server();
        server.files.set(t2.url, V2.bytes);
        s0.crashAfter(k, mode);
        await assert.rejects(agentFor(s0, server).agent.check(), PowerCut, `cut ${k}`);
        let s = s0.reboot();
        runningApp(s);
        for (let round = 0; round < 3; round++) {
          const h = agentFor(s, server);
          await h.agent.resume();
          await h.agent.check();
          if (h.agent.jobs.find((j) => j.imageId === V2.imageId)?.state === 'installed') break;
          s = s.reboot();
        }
        assert.deepEqual(runningApp(s), { imageId: V2.imageId, trial: false }, `${mode} cut ${k}`);
        assert.ok(
          server.sent <= V2.bytes.length + CHUNK,
          `${mode} cut ${k}: more than a chunk fetched again`,
        );
      }
    }
  });
});
