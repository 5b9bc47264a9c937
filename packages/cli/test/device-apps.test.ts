// Apps on a real device (issue 6), end to end: `heptad image pack` the examples with a developer
// key, `heptad device sideload` them into a device with app development enabled, `heptad device
// run` it against a live service. Once attested the runtime starts the supervisor, which verifies,
// measures and starts every app in its compartment (as root here: own uid, empty network
// namespace, memory limit — and the device says so). Blink toggles its pin; telemetry reaches a
// loopback HTTPS server its manifest lists, with the device certificate, and never the one it
// does not; the intruder's every attempt is refused and recorded; a crashing app restarts alone
// while the others keep running; the measurement log holds every app.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import type { RunningService } from '@heptad/service';
import { DeviceProcess, enrollDevice, makeRuntimeKit, readJson } from './support/device-process.ts';
import { startLiveService } from './support/live-service.ts';
import { runCaptured } from './support/run-cli.ts';

const EXAMPLES = join(import.meta.dirname, '..', '..', '..', 'examples');
const IDS = {
  blink: '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b',
  crasher: '0c3d5e7f-1a2b-4c3d-9e4f-5a6b7c8d9e0f',
  intruder: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
  telemetry: '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b',
};
const isRoot = process.getuid?.() === 0;

interface QueuedReport {
  kind: string;
  componentId: string;
  count: number;
  details: Record<string, unknown>;
}

describe('apps on a device', () => {
  let svc: RunningService;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let state: string;
  let deviceId: string;
  let dev: DeviceProcess;
  let allowed: Server;
  let denied: Server;
  let deniedHits = 0;
  let offline: { rtFile: string; platformPub: string; blink: string };
  let adminTok: string;
  const posts: Array<{ cn: string; issuerOk: boolean; body: string }> = [];
  const cli = (argv: string[], extra: NodeJS.ProcessEnv = {}) => runCaptured(argv, { ...env, ...extra }, dir);
  const reports = (): QueuedReport[] =>
    (readJson(join(state, 'reports', 'queue.json')) as { reports: QueuedReport[] }).reports;
  const appsStatus = () =>
    readJson(join(state, 'run', 'apps.json')) as {
      layers: Record<string, unknown>;
      apps: Array<{ componentId: string; name: string; state: string; pid: number | null; restarts: number }>;
    };
  const sim = () =>
    readJson(join(state, 'peripherals', 'sim.json')) as {
      gpio: Record<string, { value: number; writes: number; owner: string }>;
    };
  async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let v: T | undefined | false;
      try {
        v = fn();
      } catch {
        v = undefined;
      }
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; device output:\n${dev?.out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function pack(
    name: keyof typeof IDS,
    files: Record<string, string> = {},
    manifest?: (m: Record<string, unknown>) => void,
  ): Promise<string> {
    const src = join(dir, `src-${name}`);
    cpSync(join(EXAMPLES, name), src, { recursive: true });
    for (const [f, text] of Object.entries(files)) writeFileSync(join(src, f), text);
    if (manifest) {
      const m = JSON.parse(readFileSync(join(src, 'app_manifest.json'), 'utf8')) as Record<string, unknown>;
      manifest(m);
      writeFileSync(join(src, 'app_manifest.json'), JSON.stringify(m));
    }
    const out = join(dir, `${name}.hpkg`);
    const r = await cli([
      'image',
      'pack',
      src,
      '--out',
      out,
      '--key',
      join(dir, 'dev.key'),
      '--version',
      '1.0.0',
    ]);
    assert.equal(r.code, 0, r.err);
    return out;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heptad-apps-e2e-'));
    ({ svc, env } = await startLiveService(dir));
    assert.equal((await cli(['tenant', 'create', 'Apps Tenant'])).code, 0);
    const admin = await cli([
      'user',
      'create',
      'apps@example.com',
      '--tenant',
      'Apps Tenant',
      '--role',
      'Administrator',
      '--output',
      'json',
    ]);
    const adminToken = String(admin.json()['token']);
    const kit = await makeRuntimeKit(dir);
    const rt = await kit.pack('rt1', '1.0.0', 1);
    assert.equal(
      (await cli(['runtime-image', 'add', rt.digest, '--version', '1.0.0', '--security-version', '1'])).code,
      0,
    );
    state = join(dir, 'dev');
    // A development device: the service grants it (the device follows at each attestation).
    deviceId = await enrollDevice(cli, {
      state,
      serviceUrl: svc.url,
      caPath: String(svc.caPath),
      runtime: rt.file,
      runtimeSigner: kit.platformPub,
      adminToken,
      capabilities: ['appDevelopment'],
    });
    adminTok = adminToken;
    assert.equal((await cli(['key', 'create', '--out', join(dir, 'dev.key')])).code, 0);

    // Two loopback HTTPS servers: 127.0.0.1 is in telemetry's manifest, 127.0.0.2 is not.
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=loopback',
        '-addext',
        'subjectAltName=IP:127.0.0.1,IP:127.0.0.2',
        '-keyout',
        join(dir, 'srv.key'),
        '-out',
        join(dir, 'srv.pem'),
      ],
      { stdio: 'ignore' },
    );
    const tlsOpts = {
      key: readFileSync(join(dir, 'srv.key')),
      cert: readFileSync(join(dir, 'srv.pem')),
      requestCert: true,
      rejectUnauthorized: false,
    };
    allowed = createServer(tlsOpts, (req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        let issuerOk = false;
        let cn = '';
        if (peer?.raw) {
          const leaf = new X509Certificate(peer.raw);
          cn = leaf.subject;
          const chain = readFileSync(join(state, 'certs', 'device-chain.pem'), 'utf8');
          const issuing = new X509Certificate(chain.slice(chain.indexOf('-----BEGIN', 10)));
          issuerOk = leaf.checkIssued(issuing) && leaf.verify(issuing.publicKey);
        }
        posts.push({ cn, issuerOk, body });
        res.end('stored');
      });
    });
    denied = createServer(tlsOpts, (_req, res) => {
      deniedHits++;
      res.end('should never happen');
    });
    denied.on('connection', () => deniedHits++);
    await new Promise<void>((r) => allowed.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => denied.listen(0, '127.0.0.2', r));
    const pa = (allowed.address() as { port: number }).port;
    const pd = (denied.address() as { port: number }).port;

    const packs = [
      await pack('blink'),
      await pack('crasher'),
      await pack('intruder', {
        'config.json': JSON.stringify({
          disallowedHost: '127.0.0.2',
          disallowedPort: pd,
          victimComponentId: IDS.blink,
          directConnect: `127.0.0.1:${pa}`,
          deviceKeyPath: join(state, 'secrets', 'tls-key.pem'),
        }),
      }),
      await pack(
        'telemetry',
        {
          'config.json': JSON.stringify({
            endpoints: [`https://127.0.0.1:${pa}/v1/readings`, `https://127.0.0.2:${pd}/v1/readings`],
            intervalMs: 1000,
            deviceAuth: true,
            ca: readFileSync(join(dir, 'srv.pem'), 'utf8'),
          }),
        },
        (m) => {
          (m['Capabilities'] as Record<string, unknown>)['AllowedConnections'] = ['127.0.0.1'];
        },
      ),
    ];
    // Refused first: the device does not trust the developer key until app development is enabled.
    const refused = await cli([
      'device',
      'sideload',
      packs[0] as string,
      '--state',
      state,
      '--output',
      'json',
    ]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /APP_SIGNATURE_UNTRUSTED/);
    offline = { rtFile: rt.file, platformPub: kit.platformPub, blink: packs[0] as string };
    for (const [i, p] of packs.entries()) {
      const r = await cli([
        'device',
        'sideload',
        p,
        '--state',
        state,
        ...(i === 0 ? ['--developer-key', join(dir, 'dev.key.pub')] : []),
        '--output',
        'json',
      ]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.json()['devSigned'], true);
    }
    dev = new DeviceProcess(state);
    await dev.waitFor(/attested: certificate/);
    for (const n of Object.keys(IDS)) await dev.waitFor(new RegExp(`supervisor: started ${n} 1\\.0\\.0`));
  });

  after(async () => {
    await DeviceProcess.powerCutAll();
    allowed?.close();
    denied?.close();
    await svc?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the device reports its isolation layers and its apps', async () => {
    await until('four apps in run/apps.json', () => appsStatus().apps.length === 4);
    const st = await cli(['device', 'status', '--state', state, '--output', 'json']);
    const s = st.json() as { isolation: Record<string, unknown>; apps: Array<{ name: string }> };
    assert.equal(s.isolation['permissionModel'], true);
    assert.equal(s.isolation['brokered'], true);
    if (isRoot) {
      assert.equal(s.isolation['ownUser'], true);
      assert.equal(s.isolation['networkNamespace'], true);
    }
    assert.deepEqual(s.apps.map((a) => a.name).sort(), ['blink', 'crasher', 'intruder', 'telemetry']);
    const text = (await cli(['device', 'status', '--state', state])).out;
    assert.match(text, /^Isolation: +permission model, /m);
    const listed = (await cli(['device', 'apps', '--state', state, '--output', 'json'])).json() as {
      items: Array<{ name: string; devSigned: boolean }>;
    };
    assert.equal(listed.items.length, 4);
    assert.ok(listed.items.every((a) => a.devSigned));
  });

  test('every app is measured into the log the device attests with', () => {
    const log = readJson(join(state, 'measurements.json')) as Array<{ kind: string; componentId?: string }>;
    for (const id of Object.values(IDS))
      assert.ok(
        log.some((e) => e.kind === 'app' && e.componentId === id),
        id,
      );
  });

  test('blink toggles its pin', async () => {
    const first = await until('LED1 driven', () => sim().gpio['LED1']);
    assert.equal(first.owner, 'blink');
    const later = await until('LED1 toggled more', () => {
      const g = sim().gpio['LED1'];
      return g !== undefined && g.writes >= first.writes + 4 ? g : undefined;
    });
    assert.ok(later.writes > first.writes);
    const shown = (await cli(['device', 'peripherals', '--state', state])).out;
    assert.match(shown, /^LED1 +gpio +sim +blink +value [01], \d+ writes/m);
  });

  test('telemetry reaches the HTTPS server its manifest lists, with the device certificate, and never the other', async () => {
    const post = await until('a telemetry POST', () => posts[0]);
    assert.match(post.cn, new RegExp(deviceId));
    assert.equal(post.issuerOk, true);
    assert.match(post.body, /"adc0":2048/);
    await dev.waitFor(
      /\[app telemetry\] telemetry: POST https:\/\/127\.0\.0\.1:\d+\/v1\/readings → 200 stored/,
    );
    await dev.waitFor(
      /\[app telemetry\] telemetry: POST https:\/\/127\.0\.0\.2:\d+\/v1\/readings → APP_CAPABILITY_DENIED/,
    );
    assert.equal(deniedHits, 0);
    const r = await until('the telemetry violation report', () =>
      reports().find((x) => x.componentId === IDS.telemetry && x.kind === 'capability-violation'),
    );
    assert.equal(r.details['capability'], 'AllowedConnections');
  });

  test("the intruder's every attempt is refused and recorded", async () => {
    await dev.waitFor(/\[app intruder\] intruder: every attempt made/, 20_000);
    assert.doesNotMatch(dev.out, /NOT REFUSED/);
    for (const what of [
      'connect to a host not in the manifest',
      "read another app's storage",
      'drive an undeclared GPIO',
      'message an app that does not list it',
    ])
      assert.match(dev.out, new RegExp(`intruder: ${what}: refused APP_CAPABILITY_DENIED`));
    // A direct connection: as root the compartment has no network at all.
    if (isRoot)
      assert.match(dev.out, /intruder: connect directly, without the supervisor: refused ENETUNREACH/);
    assert.equal(deniedHits, 0);
    const mine = reports().filter((r) => r.componentId === IDS.intruder && r.kind === 'capability-violation');
    const caps = mine.map((r) => `${r.details['capability']}`);
    for (const c of [
      'AllowedConnections',
      'MutableStorage',
      'Gpio',
      'AllowedApplicationConnections',
      'permission-model',
    ])
      assert.ok(caps.includes(c), `${c} not recorded: ${caps.join()}`);
    const pm = mine
      .filter((r) => r.details['capability'] === 'permission-model')
      .map((r) => String(r.details['target']));
    assert.ok(
      pm.some((t) => /allow-child-process/.test(t)),
      pm.join(),
    );
    assert.ok(
      pm.some((t) => /allow-fs-read/.test(t)),
      pm.join(),
    );
    // The device key was never read: it is still the device's, and nobody else's file changed.
    assert.ok(readFileSync(join(state, 'secrets', 'tls-key.pem'), 'utf8').includes('PRIVATE KEY'));
  });

  test('a crashing app restarts alone while the others keep running', async () => {
    const before = appsStatus().apps;
    const blinkPid = before.find((a) => a.name === 'blink')?.pid;
    const telemetryPid = before.find((a) => a.name === 'telemetry')?.pid;
    const crasherRestarts = before.find((a) => a.name === 'crasher')?.restarts ?? 0;
    const writes = sim().gpio['LED1']?.writes ?? 0;
    writeFileSync(join(state, 'peripherals', 'sim-inputs.json'), JSON.stringify({ gpio: { BUTTON_A: 1 } }));
    await dev.waitFor(/supervisor: crasher exited with code 1; restarting in \d+ ms/);
    writeFileSync(join(state, 'peripherals', 'sim-inputs.json'), JSON.stringify({ gpio: { BUTTON_A: 0 } }));
    await until('crasher running again', () => {
      const c = appsStatus().apps.find((a) => a.name === 'crasher');
      return c !== undefined && c.state === 'running' && c.restarts > crasherRestarts;
    });
    const afterApps = appsStatus().apps;
    assert.equal(afterApps.find((a) => a.name === 'blink')?.pid, blinkPid);
    assert.equal(afterApps.find((a) => a.name === 'telemetry')?.pid, telemetryPid);
    await until('blink still toggling', () => (sim().gpio['LED1']?.writes ?? 0) > writes + 2);
    const crash = await until('the crash report', () =>
      reports().find((r) => r.componentId === IDS.crasher && r.kind === 'app-crash'),
    );
    assert.equal(crash.details['exitCode'], 1);
    assert.match(String(crash.details['stack']), /crash requested with BUTTON_A/);
    assert.match(String(crash.details['stack']), /crashNow/);
    // Its peak memory, read from /proc while the process was still there (Node itself is > 20 MB).
    assert.ok(
      Number(crash.details['memoryHighWaterBytes']) > 20 * 1024 * 1024,
      JSON.stringify(crash.details),
    );
    assert.ok(Number.isInteger(crash.details['uptimeSeconds']));
    // An exit (not a crash) is an app-exit report with its code.
    writeFileSync(join(state, 'peripherals', 'sim-inputs.json'), JSON.stringify({ gpio: { BUTTON_B: 1 } }));
    await dev.waitFor(/supervisor: crasher exited with code 3; restarting/);
    writeFileSync(join(state, 'peripherals', 'sim-inputs.json'), JSON.stringify({ gpio: {} }));
    const exit = await until('the exit report', () =>
      reports().find((r) => r.componentId === IDS.crasher && r.kind === 'app-exit'),
    );
    assert.equal(exit.details['exitCode'], 3);
  });

  test('an app writing garbage and endless lines straight to its IPC descriptor does not take the runtime down', async () => {
    const src = join(dir, 'src-garbage');
    mkdirSync(src);
    const HOSTILE = 'abcdef01-2345-4678-89ab-cdef01234567';
    writeFileSync(
      join(src, 'app_manifest.json'),
      JSON.stringify({
        SchemaVersion: 1,
        Name: 'garbage',
        ComponentId: HOSTILE,
        EntryPoint: 'main.mjs',
        Capabilities: {},
      }),
    );
    writeFileSync(
      join(src, 'main.mjs'),
      `import { writeSync } from 'node:fs';
       import { hello } from '@heptad/sdk';
       await hello();
       for (let i = 0; i < 3; i++) writeSync(3, 'this is not JSON\\n');
       console.log('garbage: lines written');
       const chunk = Buffer.alloc(1 << 20, 0x61);
       let written = 0;
       while (written < 600 * chunk.length) {
         try { written += writeSync(3, chunk); } catch (e) { if (e.code !== 'EAGAIN') throw e; await new Promise((r) => setImmediate(r)); }
       }
       console.log('garbage: 600 MiB written');
       setInterval(() => {}, 1000);`,
    );
    const out = join(dir, 'garbage.hpkg');
    assert.equal(
      (await cli(['image', 'pack', src, '--out', out, '--key', join(dir, 'dev.key'), '--version', '1.0.0']))
        .code,
      0,
    );
    const runtimePid = (readJson(join(state, 'run', 'status.json')) as { runtimePid: number }).runtimePid;
    const blinkPid = appsStatus().apps.find((a) => a.name === 'blink')?.pid;
    const writes = sim().gpio['LED1']?.writes ?? 0;
    assert.equal((await cli(['device', 'sideload', out, '--state', state])).code, 0);
    await dev.waitFor(/\[app garbage\] garbage: lines written/);
    await dev.waitFor(/supervisor: an app wrote a malformed line to its IPC channel; dropped/);
    await dev.waitFor(/supervisor: garbage writes more than the supervisor reads; restarting it/, 20_000);
    assert.doesNotMatch(dev.out, /garbage: 600 MiB written/);
    assert.doesNotMatch(dev.out, /runtime error/);
    assert.equal(
      (readJson(join(state, 'run', 'status.json')) as { runtimePid: number }).runtimePid,
      runtimePid,
    );
    assert.equal(appsStatus().apps.find((a) => a.name === 'blink')?.pid, blinkPid);
    await until('blink still toggling', () => (sim().gpio['LED1']?.writes ?? 0) > writes + 2);
    await until('the byte flood recorded', () =>
      reports().find(
        (r) =>
          r.componentId === HOSTILE &&
          r.kind === 'capability-violation' &&
          r.details['target'] === 'flood-bytes',
      ),
    );
    assert.equal((await cli(['device', 'app-remove', HOSTILE, '--state', state])).code, 0);
    await dev.waitFor(/supervisor: garbage removed/);
  });

  test('a developer app on a claimed device without the appDevelopment capability is not run: the service turns app development off', async () => {
    const st3 = join(dir, 'dev-production');
    await enrollDevice(cli, {
      state: st3,
      serviceUrl: svc.url,
      caPath: String(svc.caPath),
      runtime: offline.rtFile,
      runtimeSigner: offline.platformPub,
      adminToken: adminTok,
    });
    // Locally a developer may enable it; the service's answer at attestation wins.
    const r = await cli([
      'device',
      'sideload',
      offline.blink,
      '--state',
      st3,
      '--developer-key',
      join(dir, 'dev.key.pub'),
    ]);
    assert.equal(r.code, 0, r.err);
    const dev3 = new DeviceProcess(st3);
    try {
      await dev3.waitFor(/app development disabled by the service/);
      await dev3.waitFor(/supervisor: \S+ not started: APP_SIGNATURE_UNTRUSTED/);
      assert.doesNotMatch(dev3.out, /supervisor: started blink/);
    } finally {
      await dev3.stop();
    }
  });

  test('offline, the device runs its apps after its first attestation attempt fails', async () => {
    const st2 = join(dir, 'dev-offline');
    const made = await cli([
      'device',
      'manufacture',
      '--state',
      st2,
      '--rot',
      'soft',
      '--service',
      'https://127.0.0.1:1',
      '--runtime',
      offline.rtFile,
      '--runtime-signer',
      offline.platformPub,
    ]);
    assert.equal(made.code, 0, made.err);
    const r = await cli([
      'device',
      'sideload',
      offline.blink,
      '--state',
      st2,
      '--developer-key',
      join(dir, 'dev.key.pub'),
    ]);
    assert.equal(r.code, 0, r.err);
    const dev2 = new DeviceProcess(st2);
    try {
      await dev2.waitFor(/attestation failed/);
      await dev2.waitFor(/supervisor: started blink 1\.0\.0/);
      await dev2.waitFor(/\[app blink\] blink: toggling LED1/);
      const log = readJson(join(st2, 'measurements.json')) as Array<{ kind: string; componentId?: string }>;
      assert.ok(log.some((e) => e.kind === 'app' && e.componentId === IDS.blink));
    } finally {
      await dev2.stop();
    }
  });

  test('removing an app stops it; stopping the device stops every app', async () => {
    assert.equal((await cli(['device', 'app-remove', IDS.crasher, '--state', state])).code, 0);
    await dev.waitFor(/supervisor: crasher removed/);
    const pids = appsStatus()
      .apps.map((a) => a.pid)
      .filter((p): p is number => p !== null);
    assert.ok(pids.length >= 3);
    await dev.stop();
    for (const pid of pids)
      assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `app ${pid} still runs`);
    assert.ok(appsStatus().apps.every((a) => a.state === 'stopped'));
  });
});
