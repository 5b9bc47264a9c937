// The device's error-report queue and uploader: coalescing, bounds, sealing, idempotent upload,
// refusals, and a power cut at every write of the queue (FaultyStorage), clean and torn.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ErrorReportBatchResult, MAX_REPORT_JSON, RUNTIME_COMPONENT_ID } from '@heptad/protocol';
import { ServiceRefusal } from '../src/agent/service-client.ts';
import { REPORT_QUEUE_PATH, ReportQueue, readQueueFile } from '../src/reports/queue.ts';
import { newReportId, toWire } from '../src/reports/report.ts';
import { type ReportSender, uploadPending } from '../src/reports/uploader.ts';
import { FaultyStorage, PowerCut, type Storage } from '../src/state/storage.ts';

const DEVICE = 'a'.repeat(64);
const BOOT = 'b3f8e0a2-1c4d-4e5f-8a9b-0c1d2e3f4a5b';
const APP = '6d2c0f7e-52a1-4f44-9a5e-0b4c3f0f6a11';
const IMAGE = '11111111-2222-4333-8444-555555555555';

/** A clock tests move, and ids in order (so runs are repeatable). */
function harness(
  storage: Storage = new FaultyStorage(),
  over: Partial<ConstructorParameters<typeof ReportQueue>[1]> = {},
) {
  const clock = { now: new Date('2026-11-22T10:00:00.000Z') };
  let n = 0;
  const newId = () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
  const make = (s: Storage) =>
    new ReportQueue(s, { deviceId: DEVICE, bootId: BOOT, clock: () => clock.now, newId, ...over });
  return { clock, queue: make(storage), make, storage };
}

const crash = (signal = 'SIGSEGV') => ({
  kind: 'app-crash' as const,
  componentId: APP,
  imageId: IMAGE,
  details: { signal, exitCode: 139 },
});

/** The service as the uploader sees it: stores by (device, id), answers accepted/duplicate. */
class FakeService implements ReportSender {
  readonly held = new Map<string, Record<string, unknown>>();
  /** a fault for the next call: 'before' (lost request), 'after' (stored, answer lost), or a refusal */
  fault: 'before' | 'after' | ServiceRefusal | undefined;
  calls = 0;
  async post<T>(_path: string, body: unknown): Promise<T> {
    this.calls += 1;
    const f = this.fault;
    this.fault = undefined;
    if (f === 'before') throw new Error('ECONNRESET');
    if (f instanceof ServiceRefusal) throw f;
    const reports = (body as { reports: Array<Record<string, unknown>> }).reports;
    let accepted = 0;
    for (const r of reports) {
      const key = String(r['id']);
      if (!this.held.has(key)) {
        this.held.set(key, r);
        accepted++;
      }
    }
    if (f === 'after') throw new Error('socket hang up');
    return { accepted, duplicate: reports.length - accepted } satisfies ErrorReportBatchResult as T;
  }
  /** events the service holds, counting folded ones */
  events(): number {
    let n = 0;
    for (const r of this.held.values()) if (r['kind'] !== 'reports-dropped') n += Number(r['count']);
    return n;
  }
}

describe('error-report queue', () => {
  test('a recorded report is durable: a new queue over the same storage sees it', () => {
    const { queue, make, storage } = harness();
    const r = queue.record(crash());
    assert.equal(r.count, 1);
    assert.equal(r.signature, 'signal=SIGSEGV exit=139');
    assert.deepEqual(
      make(storage)
        .pending()
        .map((x) => x.id),
      [r.id],
    );
  });

  test('identical events within the window fold into one report with a count; later or different ones do not', () => {
    const { queue, clock } = harness();
    queue.record(crash());
    clock.now = new Date(clock.now.getTime() + 30_000);
    const folded = queue.record(crash());
    assert.equal(folded.count, 2);
    assert.equal(folded.lastAt, '2026-11-22T10:00:30.000Z');
    queue.record(crash('SIGABRT'));
    clock.now = new Date(clock.now.getTime() + 61_000);
    queue.record(crash());
    assert.deepEqual(
      queue.pending().map((r) => [r.signature, r.count]),
      [
        ['signal=SIGSEGV exit=139', 2],
        ['signal=SIGABRT exit=139', 1],
        ['signal=SIGSEGV exit=139', 1],
      ],
    );
  });

  test('a sealed report is never changed: a new identical event starts a new report', () => {
    const { queue } = harness();
    const first = queue.record(crash());
    const [sent] = queue.takeBatch(10);
    assert.equal(sent?.sealed, true);
    const next = queue.record(crash());
    assert.notEqual(next.id, first.id);
    assert.equal(queue.pending()[0]?.count, 1);
  });

  test('when full, the oldest are dropped and the next upload reports how many, once', async () => {
    const { queue, clock } = harness(new FaultyStorage(), { capacity: 3 });
    for (let i = 0; i < 5; i++) {
      clock.now = new Date(clock.now.getTime() + 120_000); // outside the window: 5 reports
      queue.record({ kind: 'app-exit', componentId: APP, details: { exitCode: i } });
    }
    assert.deepEqual(
      queue.pending().map((r) => r.details.exitCode),
      [2, 3, 4],
    );
    assert.equal(queue.dropped(), 2);
    const svc = new FakeService();
    const r = await uploadPending(queue, svc);
    assert.equal(r.accepted, 4);
    const dropped = [...svc.held.values()].filter((x) => x['kind'] === 'reports-dropped');
    assert.equal(dropped.length, 1);
    assert.deepEqual(dropped[0]?.['details'], { dropped: 2 });
    assert.equal(dropped[0]?.['componentId'], RUNTIME_COMPONENT_ID);
    assert.equal(queue.dropped(), 0);
    assert.equal(queue.pending().length, 0);
  });

  test('the byte bound drops the oldest too', () => {
    const { queue, clock } = harness(new FaultyStorage(), { maxBytes: 40_000 });
    for (let i = 0; i < 10; i++) {
      clock.now = new Date(clock.now.getTime() + 120_000);
      queue.record({
        kind: 'runtime-error',
        componentId: APP,
        details: { message: `${i} ${'m'.repeat(4000)}` },
      });
    }
    assert.ok(queue.pending().length < 10);
    assert.ok(queue.dropped() > 0);
  });

  test('events are made to pass the service rules: bounded text, safe alphabets, a wire report within 16 KiB', () => {
    const { queue } = harness();
    const r = queue.record({
      kind: 'app-crash',
      componentId: 'not-a-uuid',
      imageId: 'nope',
      details: {
        signal: 'kill all',
        stack: `Error: x\u0000\n${'    at f (/a/b.js:1:1)\n'.repeat(2000)}`,
        message: 'm\u0007'.repeat(5000),
        code: 'bad code; DROP',
        exitCode: 2 ** 40,
      },
    });
    assert.equal(r.componentId, RUNTIME_COMPONENT_ID, 'an unknown component is the runtime');
    assert.equal(r.imageId, undefined);
    assert.equal(r.details.signal, undefined);
    assert.equal(r.details.code, 'bad_code__DROP');
    assert.equal(r.details.exitCode, 2 ** 32 - 1);
    assert.ok(!(r.details.stack ?? '').includes('\u0000'), 'control characters are replaced');
    assert.ok(JSON.stringify(toWire(r)).length <= MAX_REPORT_JSON);
  });

  test('a damaged queue file starts a fresh queue (the runtime keeps reporting); strict reading refuses it', () => {
    const storage = new FaultyStorage(new Map([[REPORT_QUEUE_PATH, Buffer.from('{"schema":1,"repo')]]));
    const { queue } = harness(storage);
    assert.deepEqual(queue.pending(), []);
    assert.throws(() => readQueueFile(storage, true), { code: 'REPORT_QUEUE_INVALID' });
    queue.record(crash());
    assert.equal(readQueueFile(storage, true).reports.length, 1);
  });
});

test('report ids are UUIDv7: lowercase, version 7, RFC 9562 variant, ordered in time', () => {
  const ids = Array.from({ length: 5000 }, (_, i) => newReportId(1_790_000_000_000 + Math.floor(i / 100)));
  for (const id of ids)
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual([...ids].sort(), ids, 'sorted as text = sorted in time');
  assert.equal(new Set(ids).size, ids.length);
});

describe('error-report upload', () => {
  test('batches of at most 100, each removed only once the service answered', async () => {
    const { queue, clock } = harness(new FaultyStorage(), { capacity: 500 });
    for (let i = 0; i < 250; i++) {
      clock.now = new Date(clock.now.getTime() + 120_000);
      queue.record({ kind: 'app-exit', componentId: APP, details: { exitCode: i % 256 } });
    }
    const svc = new FakeService();
    const r = await uploadPending(queue, svc);
    assert.deepEqual(r, { batches: 3, accepted: 250, duplicate: 0, refused: 0 });
    assert.equal(queue.pending().length, 0);
    assert.ok(queue.lastUploadAt());
  });

  for (const where of ['before', 'after'] as const) {
    test(`an upload interrupted ${where === 'before' ? 'before the service got it' : 'after the service stored it (answer lost)'} is retried with the same ids, stored once`, async () => {
      const { queue } = harness();
      queue.record(crash());
      queue.record(crash('SIGABRT'));
      const svc = new FakeService();
      svc.fault = where;
      const first = await uploadPending(queue, svc);
      assert.equal(first.stopped?.code, 'DEVICE_SERVICE_UNREACHABLE');
      assert.equal(queue.pending().length, 2, 'the batch stays queued, sealed');
      queue.record(crash()); // new events go to a new report, not into the sealed one
      const retry = await uploadPending(queue, svc);
      assert.equal(retry.accepted + retry.duplicate, 3);
      assert.equal(retry.duplicate, where === 'after' ? 2 : 0);
      assert.equal(svc.held.size, 3);
      assert.equal(svc.events(), 3);
    });
  }

  test('429 stops the upload with the wait; nothing is dropped', async () => {
    const { queue } = harness();
    queue.record(crash());
    const svc = new FakeService();
    svc.fault = new ServiceRefusal(429, 'REPORT_RATE_LIMITED', 'slow down', { retryAfterMs: 30_000 });
    const r = await uploadPending(queue, svc);
    assert.deepEqual(r.stopped, { code: 'REPORT_RATE_LIMITED', retryAfterMs: 30_000 });
    assert.equal(queue.pending().length, 1);
  });

  test('an authentication refusal stops the upload (the device must attest again); nothing is dropped', async () => {
    const { queue } = harness();
    queue.record(crash());
    const svc = new FakeService();
    svc.fault = new ServiceRefusal(401, 'AUTH_DEVICE_CERT_EXPIRED', 'expired');
    const r = await uploadPending(queue, svc);
    assert.equal(r.stopped?.code, 'AUTH_DEVICE_CERT_EXPIRED');
    assert.equal(queue.pending().length, 1);
  });

  test('reports the service refuses by index are dropped and counted; the rest go through', async () => {
    const { queue, clock } = harness();
    for (let i = 0; i < 3; i++) {
      clock.now = new Date(clock.now.getTime() + 120_000);
      queue.record({ kind: 'app-exit', componentId: APP, details: { exitCode: i } });
    }
    const svc = new FakeService();
    svc.fault = new ServiceRefusal(400, 'REPORT_TIME_SKEWED', 'skewed', {
      fields: [{ field: 'reports/1/at', problem: 'is in the future' }],
    });
    const r = await uploadPending(queue, svc);
    assert.equal(r.refused, 1);
    const held = [...svc.held.values()];
    assert.deepEqual(
      held
        .filter((x) => x['kind'] === 'app-exit')
        .map((x) => (x['details'] as { exitCode: number }).exitCode),
      [0, 2],
    );
    assert.deepEqual(
      held.filter((x) => x['kind'] === 'reports-dropped').map((x) => x['details']),
      [{ dropped: 1 }],
    );
  });
});

/**
 * A fixed run of queue operations with a service that misbehaves on schedule, as the runtime
 * would drive it: records (folding and not), uploads, lost answers, refusals, more records.
 * Returns how many events were recorded (record() returned).
 */
async function scenario(queue: ReportQueue, clock: { now: Date }, svc: FakeService, recorded: { n: number }) {
  const rec = (e: ReturnType<typeof crash>) => {
    queue.record(e);
    recorded.n++;
  };
  rec(crash());
  rec(crash());
  rec(crash('SIGABRT'));
  svc.fault = 'after';
  await uploadPending(queue, svc);
  clock.now = new Date(clock.now.getTime() + 5_000);
  rec(crash());
  await uploadPending(queue, svc);
  for (let i = 0; i < 6; i++) {
    clock.now = new Date(clock.now.getTime() + 120_000);
    rec({ ...crash(), details: { signal: 'SIGSEGV', exitCode: i } });
  }
  svc.fault = new ServiceRefusal(400, 'REPORT_TIME_SKEWED', 'x', {
    fields: [{ field: 'reports/0/at', problem: 'x' }],
  });
  await uploadPending(queue, svc, { maxBatch: 2 });
}

describe('power cut at every write of the queue', () => {
  // The reference run: how many writes, and the durable state after each.
  const ref = harness(new FaultyStorage(), { capacity: 50 });
  const refSvc = new FakeService();
  const states: string[] = [];
  const origWrite = ref.storage.write.bind(ref.storage);
  (ref.storage as FaultyStorage).write = (p, d, m) => {
    origWrite(p, d, m);
    states.push(
      JSON.stringify([...(ref.storage as FaultyStorage).snapshot()].map(([k, v]) => [k, v.toString()])),
    );
  };

  test('the reference run', async () => {
    await scenario(ref.queue, ref.clock, refSvc, { n: 0 });
    assert.ok(states.length >= 15, `${states.length} writes`);
  });

  for (const mode of ['clean', 'torn'] as const) {
    test(`${mode}: after a cut at write k, the queue is the state before or after write k, and nothing acknowledged or recorded is lost or doubled`, async () => {
      const failures: string[] = [];
      for (let k = 1; k <= states.length; k++) {
        const storage = new FaultyStorage().crashAfter(k, mode);
        const h = harness(storage, { capacity: 50 });
        const svc = new FakeService();
        const recorded = { n: 0 };
        try {
          await scenario(h.queue, h.clock, svc, recorded);
          failures.push(`k=${k}: no power cut happened`);
          continue;
        } catch (e) {
          if (!(e instanceof PowerCut)) throw e;
        }
        svc.fault = undefined; // the service's scheduled misbehaviour ends with the scenario
        // Power is back: the durable queue is exactly the state before or after the cut write.
        const rebooted = storage.reboot();
        const file = rebooted.read(REPORT_QUEUE_PATH)?.toString();
        const durable = JSON.stringify(file === undefined ? [] : [[REPORT_QUEUE_PATH, file]]);
        const before = k >= 2 ? states[k - 2] : JSON.stringify([]);
        if (durable !== before) failures.push(`k=${k}: durable state is not the state before the cut write`);
        assert.doesNotThrow(() => readQueueFile(rebooted, true), `k=${k}: the queue reads after the cut`);
        // The device boots again, records one more event and uploads everything (no faults now).
        const again = h.make(rebooted);
        again.record({
          kind: 'runtime-error',
          componentId: RUNTIME_COMPONENT_ID,
          details: { code: 'AFTER_REBOOT' },
        });
        const up = await uploadPending(again, svc);
        if (up.stopped) failures.push(`k=${k}: upload after reboot stopped: ${up.stopped.code}`);
        if (again.pending().length !== 0) failures.push(`k=${k}: reports left after upload`);
        // No report stored twice: the fake keys by id, so compare ids to reports.
        const ids = [...svc.held.keys()];
        if (new Set(ids).size !== ids.length) failures.push(`k=${k}: duplicate ids`);
        // Every event whose record() returned is held by the service or was counted as dropped
        // (the scenario's refusal drops exactly one report's events).
        const dropped = [...svc.held.values()]
          .filter((x) => x['kind'] === 'reports-dropped')
          .reduce((a, x) => a + Number((x['details'] as { dropped: number }).dropped), 0);
        const held = svc.events() - 1; // minus AFTER_REBOOT
        if (held + dropped < recorded.n) {
          failures.push(`k=${k}: recorded ${recorded.n}, service holds ${held} + ${dropped} dropped`);
        }
      }
      assert.deepEqual(failures, []);
    });
  }
});
