// The supervisor in-process (issue 6), with real app processes: the permission model holding
// alone (every layer-2 part turned off, as on a device without root), a hostile app sending
// garbage and floods while a neighbour keeps running, deferral honoured and capped, verification
// at every start, trials that restart from the store and roll back when out of starts, and the
// hooks the update agent uses. The end-to-end test on a real device is
// packages/cli/test/device-apps.test.ts.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { appSlotPath, commitApp, installApp, loadAppStore, setImageKeys } from '../src/apps/index.ts';
import type { ReportEvent } from '../src/reports/report.ts';
import { FsStorage } from '../src/state/storage.ts';
import { AppSupervisor, type SupervisorOptions } from '../src/supervisor/index.ts';
import { EXAMPLE_IDS, example, packApp, packInline, tenantPem } from './support/app-kit.ts';

const ALL_OFF = { disable: { ownUser: true, networkNamespace: true, memoryLimit: true } };

class Device {
  readonly dir = mkdtempSync(join(tmpdir(), 'heptad-sup-'));
  readonly storage = new FsStorage(this.dir);
  readonly reports: ReportEvent[] = [];
  readonly lines: string[] = [];
  now = Date.parse('2026-06-01T00:00:00Z');
  sup: AppSupervisor | undefined;

  constructor() {
    setImageKeys(this.storage, tenantPem);
  }

  install(pkg: Buffer, commit = true): string {
    const r = installApp(this.storage, pkg);
    if (commit) commitApp(this.storage, r.componentId);
    return r.componentId;
  }

  async start(opts: Partial<SupervisorOptions> = {}): Promise<AppSupervisor> {
    this.sup = new AppSupervisor({
      stateDir: this.dir,
      storage: this.storage,
      deviceId: 'test-device',
      log: (l) => this.lines.push(l),
      report: (r) => this.reports.push(r),
      clock: () => new Date(this.now),
      pollMs: 100,
      backoff: { initialMs: 50, maxMs: 400 },
      ...opts,
    });
    await this.sup.start();
    return this.sup;
  }

  async waitLine(re: RegExp, timeoutMs = 10_000, count = 1): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.filter((l) => re.test(l)).length < count) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${this.lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = fn();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${this.lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  violations(componentId: string): string[] {
    return this.reports
      .filter((r) => r.componentId === componentId && r.kind === 'capability-violation')
      .map((r) => `${r.details.capability} ${r.details.target}`);
  }

  async close(): Promise<void> {
    await this.sup?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe('supervisor', () => {
  let listener: Server;
  let port: number;
  let directHits = 0;
  before(async () => {
    listener = createServer((s) => {
      directHits++;
      s.end();
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    port = (listener.address() as { port: number }).port;
  });
  after(() => listener.close());

  test('the permission model holds alone: with no own uid, namespace or memory limit the intruder is still refused and recorded', async () => {
    const d = new Device();
    try {
      writeFileSync(join(d.dir, 'secret.txt'), 'device secret');
      d.install(packApp(example('blink')));
      d.install(
        packApp(example('intruder'), {
          override: {
            'config.json': JSON.stringify({
              disallowedHost: 'evil.example.com',
              disallowedPort: 443,
              victimComponentId: EXAMPLE_IDS.blink,
              directConnect: `127.0.0.1:${port}`,
              deviceKeyPath: join(d.dir, 'secret.txt'),
            }),
          },
        }),
      );
      const sup = await d.start({ isolation: ALL_OFF });
      assert.deepEqual(
        { ...sup.layers, notes: undefined },
        {
          permissionModel: true,
          ownUser: false,
          networkNamespace: false,
          memoryLimit: false,
          brokered: true,
          notes: undefined,
        },
      );
      await d.waitLine(/\[app intruder\] intruder: every attempt made/, 20_000);
      // Everything but the direct connection (no network namespace here: the documented gap).
      const notRefused = d.lines.filter((l) => /NOT REFUSED/.test(l));
      assert.deepEqual(notRefused, [
        '[app intruder] intruder: connect directly, without the supervisor: NOT REFUSED',
      ]);
      const v = d.violations(EXAMPLE_IDS.intruder);
      for (const c of [
        'AllowedConnections evil.example.com:443',
        'Gpio LED1',
        `AllowedApplicationConnections ${EXAMPLE_IDS.blink}`,
      ])
        assert.ok(v.includes(c), `${c} missing from ${v.join(' | ')}`);
      assert.ok(v.some((x) => /^MutableStorage \.\.\//.test(x)));
      assert.ok(v.some((x) => /^permission-model .*allow-child-process/.test(x)));
      assert.ok(v.some((x) => /^permission-model .*allow-fs-read/.test(x)));
      const crashes = d.reports.filter(
        (r) => r.componentId === EXAMPLE_IDS.intruder && r.kind === 'app-crash',
      );
      assert.equal(crashes.length, 2);
      // Without the network namespace the app CAN connect by itself: the documented gap of layer 1.
      assert.ok(directHits > 0);
      // Blink was never disturbed.
      assert.equal(sup.health(EXAMPLE_IDS.blink)?.restarts, 0);
    } finally {
      await d.close();
    }
  });

  test('as root, every layer: its own uid, no network of its own, and a memory limit that stops a hog alone', {
    skip: process.getuid?.() !== 0 ? 'needs root' : false,
  }, async () => {
    const d = new Device();
    const WHO = randomUUID();
    const HOG = randomUUID();
    try {
      d.install(packApp(example('blink')));
      d.install(
        packInline(
          { Name: 'who', ComponentId: WHO },
          {
            'main.ts': `
              import { connect } from 'node:net';
              console.log('uid ' + process.getuid!() + ' gid ' + process.getgid!());
              const s = connect({ host: '127.0.0.1', port: ${port} });
              s.on('connect', () => console.log('direct connect: NOT REFUSED'));
              s.on('error', (e: any) => console.log('direct connect: ' + e.code));
              setInterval(() => {}, 1000);
            `,
          },
        ),
      );
      d.install(
        packInline(
          { Name: 'hog', ComponentId: HOG },
          {
            'main.ts': `const a: Buffer[] = []; setInterval(() => { for (let i = 0; i < 8; i++) a.push(Buffer.alloc(8 << 20, 1)); }, 10);`,
          },
        ),
      );
      const hits = directHits;
      const sup = await d.start({ isolation: { memoryLimitBytes: 96 * 1024 * 1024 } });
      assert.equal(sup.layers?.ownUser, true);
      assert.equal(sup.layers?.networkNamespace, true);
      assert.equal(sup.layers?.memoryLimit, true);
      await d.waitLine(/\[app who\] uid \d+ gid \d+/);
      const uid = Number(/uid (\d+)/.exec(d.lines.find((l) => /\[app who\] uid/.test(l)) ?? '')?.[1]);
      assert.ok(uid >= 200_000, String(uid));
      await d.waitLine(/\[app who\] direct connect: ENETUNREACH/);
      assert.equal(directHits, hits);
      await d.waitLine(/supervisor: hog killed by SIGKILL/, 20_000);
      assert.ok(
        d.reports.some(
          (r) => r.componentId === HOG && r.kind === 'app-crash' && r.details.signal === 'SIGKILL',
        ),
      );
      assert.equal(sup.health(EXAMPLE_IDS.blink)?.restarts, 0);
      assert.equal(sup.health(WHO)?.restarts, 0);
    } finally {
      await d.close();
    }
  });

  test('a hostile app sending garbage and floods is answered, recorded and restarted; its neighbour keeps running', async () => {
    const d = new Device();
    const HOSTILE = randomUUID();
    try {
      d.install(packApp(example('blink')));
      d.install(
        packInline(
          {
            Name: 'hostile',
            ComponentId: HOSTILE,
            Capabilities: { MutableStorage: { SizeKB: 1 }, AllowedConnections: ['127.0.0.1:1'] },
          },
          {
            'main.ts': `
              import { deviceAuth, storage, net } from '@heptad/sdk';
              const answers: string[] = [];
              process.on('message', (m: any) => { if (m && m.t === 'res' && !m.ok) answers.push(m.id + ':' + m.code); });
              const send = (m: unknown) => process.send!(m as object);
              const round = Number((await storage.readTextIfExists('r')) ?? '0');
              await storage.write('r', String(round + 1));
              if (round === 0) {
                send('a string'); send(42); send(null); send([1, 2]);
                send({ t: 'req', id: 1001, op: 'rm -rf', args: {} });
                send({ t: 'req', id: 1002, op: 'net.connect', args: [] });
                send({ t: 'req', id: 1003, op: 'net.connect', args: { host: 'x'.repeat(5000), port: 443 } });
                send({ t: 'req', id: 1004, op: 'net.connect', args: { host: '127.0.0.1', port: 70000 } });
                send({ t: 'req', id: 1005, op: 'storage.write', args: { name: 'a', data: '!!!not base64' } });
                send({ t: 'req', id: 1006, op: 'storage.write', args: { name: 'a', data: 'A'.repeat(200000) } });
                send({ t: 'req', id: 1007, op: 'gpio.write', args: { name: { toString: 1 }, value: 1 } });
                send({ t: 'req', id: -1, op: 'hello', args: {} });
                try { await storage.write('big', new Uint8Array(2048)); } catch (e: any) { answers.push('quota:' + e.code); }
                try { await net.connect('127.0.0.1', 1); } catch (e: any) { answers.push('connect:' + e.code); }
                try { await deviceAuth.sign('x'); } catch (e: any) { answers.push('sign:' + e.code); }
                await new Promise((r) => setTimeout(r, 300));
                console.log('answers ' + answers.sort().join(','));
                for (let i = 0; i < 20000; i++) send({ t: 'req', id: 100 + i, op: 'hello', args: {} });
                setInterval(() => {}, 1000);
              } else {
                console.log('hostile: round ' + round);
                setInterval(() => {}, 1000);
              }
            `,
          },
        ),
      );
      const sup = await d.start({ isolation: ALL_OFF });
      await d.waitLine(/\[app hostile\] answers /);
      const line = d.lines.find((l) => /\[app hostile\] answers /.test(l)) ?? '';
      for (const want of [
        '1001:APP_REQUEST_INVALID',
        '1002:APP_REQUEST_INVALID',
        '1003:APP_REQUEST_INVALID',
        '1004:APP_REQUEST_INVALID',
        '1005:APP_REQUEST_INVALID',
        '1006:APP_REQUEST_INVALID',
        '1007:APP_REQUEST_INVALID',
        'quota:APP_STORAGE_QUOTA',
        'connect:APP_CONNECT_FAILED',
        'sign:APP_CAPABILITY_DENIED',
      ])
        assert.ok(line.includes(want), `${want} not in ${line}`);
      await d.waitLine(/hostile floods the supervisor; restarting it/);
      await d.waitLine(/\[app hostile\] hostile: round 1/);

      const v = d.violations(HOSTILE);
      assert.ok(v.includes('ipc malformed-request'), v.join());
      assert.ok(
        v.some((x) => x === 'ipc flood-messages'),
        v.join(),
      );
      assert.equal(sup.health(EXAMPLE_IDS.blink)?.restarts, 0);
      assert.equal(sup.health(EXAMPLE_IDS.blink)?.state, 'running');
      const sim = JSON.parse(readFileSync(join(d.dir, 'peripherals', 'sim.json'), 'utf8')) as {
        gpio: Record<string, { writes: number }>;
      };
      assert.ok((sim.gpio['LED1']?.writes ?? 0) > 0);
    } finally {
      await d.close();
    }
  });

  test('a deferral is honoured and capped at 168 h for an app and 24 h for the runtime, counted from the first notice', async () => {
    const d = new Device();
    const DEFERRER = randomUUID();
    const PLAIN = randomUUID();
    try {
      d.install(
        packInline(
          {
            Name: 'deferrer',
            ComponentId: DEFERRER,
            Capabilities: { SystemEventNotifications: true, SoftwareUpdateDeferral: true },
          },
          {
            'main.ts': `
              import { events } from '@heptad/sdk';
              events.onUpdatePending(async (e) => {
                const r = await events.defer(e.updateId, new Date(Date.parse(e.maxDeferUntil) + 100 * 3600_000));
                console.log('deferred ' + e.target + ' until ' + r.until);
              });
              console.log('deferrer ready');
            `,
          },
        ),
      );
      d.install(
        packInline(
          { Name: 'plain', ComponentId: PLAIN, Capabilities: { SystemEventNotifications: true } },
          {
            'main.ts': `
              import { events } from '@heptad/sdk';
              events.onUpdatePending(async (e) => {
                try { await events.defer(e.updateId, new Date(Date.now() + 3600_000)); console.log('plain deferred?!'); }
                catch (err: any) { console.log('plain refused ' + err.code); }
              });
              console.log('plain ready');
            `,
          },
        ),
      );
      const sup = await d.start({ isolation: ALL_OFF });
      await d.waitLine(/deferrer ready/);
      await d.waitLine(/plain ready/);
      const t0 = d.now;
      const app = await sup.requestDeferral('app', { componentId: DEFERRER, waitMs: 1500 });
      assert.equal(app.decision, 'defer');
      assert.equal(app.decision === 'defer' && app.until, new Date(t0 + 168 * 3_600_000).toISOString());
      const rt = await sup.requestDeferral('runtime', { waitMs: 1500 });
      assert.equal(rt.decision === 'defer' && rt.until, new Date(t0 + 24 * 3_600_000).toISOString());
      await d.waitLine(/plain refused APP_CAPABILITY_DENIED/);
      assert.ok(d.violations(PLAIN).includes('SoftwareUpdateDeferral defer'));
      // Asked again within the deferral: the same answer, no new notice.
      d.now = t0 + 3_600_000;
      const again = await sup.requestDeferral('runtime', { waitMs: 100 });
      assert.equal(again.decision === 'defer' && again.until, new Date(t0 + 24 * 3_600_000).toISOString());
      // At the cap the update proceeds, however often the app defers.
      d.now = t0 + 24 * 3_600_000;
      assert.deepEqual(await sup.requestDeferral('runtime', { waitMs: 100 }), {
        decision: 'proceed',
        reason: 'deferral cap reached',
      });
      d.now = t0 + 168 * 3_600_000;
      assert.equal(
        (await sup.requestDeferral('app', { componentId: DEFERRER, waitMs: 100 })).decision,
        'proceed',
      );
      // An app that does not defer: proceed after the wait.
      assert.equal(
        (await sup.requestDeferral('app', { componentId: PLAIN, waitMs: 300 })).decision,
        'proceed',
      );
    } finally {
      await d.close();
    }
  });

  test('packages are verified at every start: a slot changed on disk is never run', async () => {
    const d = new Device();
    try {
      const id = d.install(packApp(example('blink')));
      const path = join(d.dir, appSlotPath(id, 'A'));
      const bytes = readFileSync(path);
      const at = bytes.indexOf(Buffer.from('toggling LED1'));
      bytes[at] = 0x54; // 't' → 'T'
      writeFileSync(path, bytes);
      const sup = await d.start({ isolation: ALL_OFF });
      const h = sup.health(id);
      assert.equal(h?.state, 'failed');
      assert.equal(h?.problem, 'IMAGE_SIGNATURE_INVALID');
      assert.ok(!d.lines.some((l) => /started blink/.test(l)));
    } finally {
      await d.close();
    }
  });

  test('an installed trial replaces the running app by itself, a rollback returns it, and a trial out of starts rolls back alone', async () => {
    const d = new Device();
    const ID = randomUUID();
    const app = (v: string, body: string) =>
      packInline({ Name: 'versioned', ComponentId: ID }, { 'main.ts': body }, { version: v });
    try {
      d.install(app('1.0.0', `console.log('v1 up'); setInterval(() => {}, 1000);`));
      const sup = await d.start({ isolation: ALL_OFF });
      await d.waitLine(/\[app versioned\] v1 up/);
      // The update agent's path: install (trial) → the app restarts from the trial.
      d.install(app('2.0.0', `console.log('v2 up'); setInterval(() => {}, 1000);`), false);
      await d.waitLine(/\[app versioned\] v2 up/);
      assert.equal(sup.health(ID)?.version, '2.0.0');
      const { rollbackApp } = await import('../src/apps/index.ts');
      rollbackApp(d.storage, ID);
      await d.waitLine(/\[app versioned\] v1 up/, 10_000, 2);
      // A trial that crashes at once uses up its starts and is rolled back without the agent.
      d.install(app('3.0.0', `throw new Error('broken build');`), false);
      await d.waitLine(/\[app versioned\] v1 up/, 15_000, 3);
      assert.equal(loadAppStore(d.storage).apps[ID]?.trial, null);
      assert.equal(d.reports.filter((r) => r.componentId === ID && r.kind === 'app-crash').length, 3);
      // The hooks: stop, start, restart, health.
      await sup.stopApp(ID);
      assert.equal(sup.health(ID)?.state, 'stopped');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(sup.health(ID)?.state, 'stopped', 'a stopped app stays stopped');
      await sup.startApp(ID);
      await d.waitLine(/\[app versioned\] v1 up/, 10_000, 4);
      const pid = sup.health(ID)?.pid;
      await sup.restartApp(ID);
      await d.waitLine(/\[app versioned\] v1 up/, 10_000, 5);
      assert.notEqual(sup.health(ID)?.pid, pid);
      assert.ok((sup.health(ID)?.runningMs ?? -1) >= 0);
    } finally {
      await d.close();
    }
  });

  test('brokered peripherals, a server port and the device certificate work as granted, and only as granted', async () => {
    const d = new Device();
    const ID = randomUUID();
    const { generateKeyPairSync, verify } = await import('node:crypto');
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const keyPem = String(key.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const freePort = await new Promise<number>((r) => {
      const s = createServer().listen(0, () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => r(p));
      });
    });
    try {
      mkdirSync(join(d.dir, 'peripherals'), { recursive: true });
      writeFileSync(
        join(d.dir, 'peripherals', 'sim-inputs.json'),
        JSON.stringify({ adc: { ADC0: 777 }, gpio: { BUTTON_A: 1 } }),
      );
      d.install(
        packInline(
          {
            Name: 'gadget',
            ComponentId: ID,
            Capabilities: {
              Gpio: ['BUTTON_A'],
              Uart: ['UART1'],
              I2cMaster: ['I2C1'],
              SpiMaster: ['SPI0'],
              Pwm: ['PWM0'],
              Adc: ['ADC0'],
              AllowedTcpServerPorts: [freePort],
              DeviceAuthentication: '00000000-0000-4000-8000-000000000000',
            },
          },
          {
            'main.ts': `
              import { adc, deviceAuth, gpio, i2c, net, pwm, spi, uart } from '@heptad/sdk';
              const out: Record<string, unknown> = {};
              out.button = await gpio.read('BUTTON_A');
              await uart.write('UART1', 'hello');
              out.uart = Buffer.from(await uart.read('UART1')).toString();
              await i2c.transfer('I2C1', 0x48, Uint8Array.of(0x10, 1, 2, 3));
              out.i2c = [...await i2c.transfer('I2C1', 0x48, Uint8Array.of(0x10), 3)];
              out.spi = [...await spi.transfer('SPI0', Uint8Array.of(9, 8, 7))];
              await pwm.set('PWM0', { periodNs: 1000000, dutyNs: 250000, enabled: true });
              out.adc = await adc.read('ADC0');
              out.cert = (await deviceAuth.certificate()).deviceId;
              out.sig = Buffer.from(await deviceAuth.sign('data to sign')).toString('base64');
              try { await net.listen(${freePort} + 1 === 65536 ? 1 : ${freePort} + 1); } catch (e: any) { out.otherPort = e.code; }
              try { await gpio.read('LED1'); } catch (e: any) { out.led = e.code; }
              const server = await net.listen(${freePort}, (s) => s.end('from the app'));
              out.listening = server.listening;
              console.log('gadget ' + JSON.stringify(out));
            `,
          },
        ),
      );
      await d.start({
        isolation: ALL_OFF,
        certificate: () => ({
          keyPem,
          chainPem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
          notAfter: '2026-06-02T00:00:00.000Z',
        }),
      });
      await d.waitLine(/\[app gadget\] gadget /);
      const out = JSON.parse(
        (d.lines.find((l) => /\[app gadget\] gadget /.test(l)) ?? '').replace(/^.*gadget /, ''),
      ) as Record<string, unknown>;
      assert.equal(out['button'], 1);
      assert.equal(out['uart'], 'hello');
      assert.deepEqual(out['i2c'], [1, 2, 3]);
      assert.deepEqual(out['spi'], [9, 8, 7]);
      assert.equal(out['adc'], 777);
      assert.equal(out['cert'], 'test-device');
      assert.ok(
        verify(
          'sha256',
          Buffer.from('data to sign'),
          key.publicKey,
          Buffer.from(String(out['sig']), 'base64'),
        ),
      );
      assert.equal(out['otherPort'], 'APP_CAPABILITY_DENIED');
      assert.equal(out['led'], 'APP_CAPABILITY_DENIED');
      assert.equal(out['listening'], true);
      // The server the app listens on is reachable from outside, and answers from the app.
      const reply = await new Promise<string>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port: freePort });
        let got = '';
        s.on('data', (b) => (got += b));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
      assert.equal(reply, 'from the app');
      const sim = await d.until('sim.json with PWM0', () => {
        try {
          const j = JSON.parse(readFileSync(join(d.dir, 'peripherals', 'sim.json'), 'utf8')) as {
            pwm: Record<string, { dutyNs: number; owner: string }>;
          };
          return j.pwm['PWM0'];
        } catch {
          return undefined;
        }
      });
      assert.deepEqual({ dutyNs: sim.dutyNs, owner: sim.owner }, { dutyNs: 250000, owner: 'gadget' });
      assert.ok(d.violations(ID).includes('Gpio LED1'));
    } finally {
      await d.close();
    }
  });

  test('apps that list each other exchange messages; storage persists across restarts', async () => {
    const d = new Device();
    const A = randomUUID();
    const B = randomUUID();
    try {
      d.install(
        packInline(
          {
            Name: 'ping',
            ComponentId: A,
            Capabilities: { AllowedApplicationConnections: [B], MutableStorage: { SizeKB: 4 } },
          },
          {
            'main.ts': `
              import { apps, storage } from '@heptad/sdk';
              const n = Number((await storage.readTextIfExists('n')) ?? '0') + 1;
              await storage.write('n', String(n));
              apps.onMessage((from, data) => console.log('ping got ' + Buffer.from(data).toString() + ' from ' + from));
              const t = setInterval(() => apps.send('${B}', 'ping ' + n).then(() => clearInterval(t), () => {}), 100);
              console.log('ping start ' + n);
            `,
          },
        ),
      );
      d.install(
        packInline(
          { Name: 'pong', ComponentId: B, Capabilities: { AllowedApplicationConnections: [A] } },
          {
            'main.ts': `
              import { apps } from '@heptad/sdk';
              apps.onMessage((from, data) => { console.log('pong got ' + Buffer.from(data).toString()); void apps.send(from, 'pong'); });
            `,
          },
        ),
      );
      const sup = await d.start({ isolation: ALL_OFF });
      await d.waitLine(/\[app pong\] pong got ping 1/);
      await d.waitLine(new RegExp(`\\[app ping\\] ping got pong from ${B}`));
      await sup.restartApp(A);
      await d.waitLine(/\[app ping\] ping start 2/);
    } finally {
      await d.close();
    }
  });
});
