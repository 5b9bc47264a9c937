// The service killed (kill -9) in the middle of error-report ingest: a real `heptad serve`
// process takes batches from a device over mTLS and is killed while batches are in flight, then
// started again on the same data folder. The service answers a batch only after its commit, and
// the device removes a batch only after that answer, retrying with the same report ids: so every
// acknowledged report is still there, and the device's retries store nothing twice.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  createReportSender,
  DeviceState,
  FsStorage,
  ReportQueue,
  type ReportSender,
  uploadPending,
} from '@heptad/device';
import { createDatabase } from '../../../test/support/postgres.ts';
import { HEPTAD_BIN } from './support/device-process.ts';
import { runCaptured } from './support/run-cli.ts';

const backendsToTest = process.env['HEPTAD_TEST_PG_URL'] ? ['sqlite', 'postgres'] : ['sqlite'];
const REPORTS = 1_200;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** `heptad serve` as its own process group, so kill -9 takes all of it at once. */
function serve(args: string[]): { child: ChildProcess; ready: Promise<void>; out: () => string } {
  const child = spawn(process.execPath, [HEPTAD_BIN, 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, HEPTAD_MASTER_KEY: '' },
  });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (b: Buffer) => {
      out += b.toString();
      if (out.includes('listening on')) resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
  });
  return { child, ready, out: () => out };
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    process.kill(-(child.pid as number), 'SIGKILL');
  });
}

for (const backend of backendsToTest) {
  describe(`error-report ingest survives kill -9 of the service (${backend})`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'heptad-kill-'));
    const running = new Set<ChildProcess>();
    after(async () => {
      for (const c of running) await kill9(c);
      rmSync(dir, { recursive: true, force: true });
    });

    test('no acknowledged report is lost and none is stored twice', async () => {
      const port = await freePort();
      const url = `https://127.0.0.1:${port}`;
      const data = join(dir, 'data');
      const db =
        backend === 'postgres'
          ? await createDatabase(String(process.env['HEPTAD_TEST_PG_URL']), `kill_${process.pid}`)
          : undefined;
      const args = [
        '--data',
        data,
        '--listen',
        `127.0.0.1:${port}`,
        '--log-level',
        'silent',
        '--report-rate-burst',
        '1000000',
        ...(db ? ['--db', db] : []),
      ];
      const start = async () => {
        const s = serve(args);
        running.add(s.child);
        s.child.on('exit', () => running.delete(s.child));
        await s.ready;
        return s;
      };
      let svc = await start();

      const ca = join(data, 'platform-ca.pem');
      const env = { HEPTAD_CONFIG_DIR: join(dir, 'config'), HEPTAD_URL: url, HEPTAD_CA: ca };
      const cli = async (argv: string[], token?: string) => {
        const r = await runCaptured(argv, { ...env, ...(token ? { HEPTAD_TOKEN: token } : {}) }, dir);
        assert.equal(r.code, 0, `${argv.join(' ')}: ${r.err}`);
        return r;
      };
      const operator = readFileSync(join(data, 'operator-token'), 'utf8').trim();
      await cli(['tenant', 'create', 'Killers'], operator);
      const admin = String(
        (
          await cli(
            [
              'user',
              'create',
              'k@example.com',
              '--tenant',
              'Killers',
              '--role',
              'Administrator',
              '--output',
              'json',
            ],
            operator,
          )
        ).json()['token'],
      );
      const state = join(dir, 'dev');
      const made = await cli([
        'device',
        'manufacture',
        '--state',
        state,
        '--rot',
        'soft',
        '--service',
        url,
        '--platform-ca',
        ca,
        '--output',
        'json',
      ]);
      const deviceId = String(made.json()['deviceId']);
      await cli(['device', 'register', '--from', join(state, 'registration.json')], operator);
      await cli(['device', 'claim', deviceId], admin);
      await cli(['device', 'attest', '--state', state]);

      // The device's queue: REPORTS distinct events, spread over the last two days.
      const clock = { now: new Date(Date.now() - 2 * 86_400_000) };
      const queue = new ReportQueue(new FsStorage(state), {
        deviceId,
        bootId: randomUUID(),
        clock: () => clock.now,
        capacity: REPORTS + 10,
        maxBytes: 64 * 1024 * 1024,
      });
      for (let i = 0; i < REPORTS; i++) {
        clock.now = new Date(clock.now.getTime() + 61_000);
        queue.record({ kind: 'app-exit', componentId: randomUUID(), details: { exitCode: i % 256 } });
      }
      clock.now = new Date();
      const recorded = new Set(queue.pending().map((r) => r.id));
      assert.equal(recorded.size, REPORTS);

      // A sender that remembers which batches the service acknowledged.
      const acked = new Set<string>();
      let sent = 0;
      // The batch during which the service is killed (0: none): the kill lands 0–5 ms after that
      // batch leaves, so in flight or just answered, and always before the next one is sent.
      let killAt = 0;
      const tracking = (inner: ReportSender & { close(): void }) => ({
        async post<T>(path: string, body: unknown): Promise<T> {
          sent += 1;
          const pending = inner.post<T>(path, body);
          pending.catch(() => {}); // awaited below; a failure while we wait is not unhandled
          if (sent === killAt) {
            await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 5)));
            process.kill(-(svc.child.pid as number), 'SIGKILL');
          }
          const r = await pending;
          for (const x of (body as { reports: Array<{ id: string }> }).reports) acked.add(x.id);
          return r;
        },
        close: () => inner.close(),
      });

      // Kill the service at an arbitrary instant while batches are in flight, three times.
      let duplicates = 0;
      for (let round = 0; round < 3; round++) {
        const sender = tracking(createReportSender(new DeviceState(state)));
        killAt = sent + 2 + round;
        const result = await uploadPending(queue, sender, { maxBatch: 100 });
        killAt = 0;
        await kill9(svc.child); // waits for the exit of the process killed above
        sender.close();
        duplicates += result.duplicate;
        assert.ok(result.stopped, `round ${round}: the kill stopped the upload (${JSON.stringify(result)})`);
        svc = await start();
      }
      // Power is back for good: the device uploads what is left.
      const sender = tracking(createReportSender(new DeviceState(state)));
      const rest = await uploadPending(queue, sender);
      sender.close();
      duplicates += rest.duplicate;
      assert.equal(rest.stopped, undefined, JSON.stringify(rest));
      assert.equal(queue.pending().length, 0);

      // What the service holds: every recorded report exactly once, every acknowledged one kept.
      const exported = await runCaptured(
        ['error-report', 'download', '--format', 'json', '--from', '3d'],
        { ...env, HEPTAD_TOKEN: admin },
        dir,
      );
      assert.equal(exported.code, 0, exported.err);
      const held = (JSON.parse(exported.out) as Array<{ id: string; deviceId: string }>).map((r) => r.id);
      assert.equal(held.length, new Set(held).size, 'no report stored twice');
      const heldSet = new Set(held);
      const lost = [...acked].filter((id) => !heldSet.has(id));
      assert.deepEqual(lost, [], 'no acknowledged report lost');
      assert.equal(heldSet.size, REPORTS, 'every recorded report arrived');
      for (const id of recorded) assert.ok(heldSet.has(id));
      // (A batch committed whose answer the kill swallowed comes back counted as duplicate.)
      assert.ok(duplicates <= REPORTS);
      await kill9(svc.child);
    });
  });
}
