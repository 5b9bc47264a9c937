import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type AttestationOutcome,
  AttestationScheduler,
  nextAttestationDelay,
  RENEW_BEFORE_MS,
  RETRY_BASE_MS,
  RETRY_MAX_MS,
  retryDelay,
} from '../src/agent/attest.ts';

const outcome = (notAfter: Date): AttestationOutcome => ({
  deviceId: 'a'.repeat(64),
  rotKind: 'soft',
  capabilities: [],
  mqttUrl: null,
  imageKeysPem: '',
  serial: '01',
  notBefore: new Date(notAfter.getTime() - 86_400_000).toISOString(),
  notAfter: notAfter.toISOString(),
  chainPem: '',
});

describe('when the device attests', () => {
  test('at once without a certificate, at 4 h before expiry with one, at once when expired', () => {
    const now = new Date('2026-11-22T00:00:00Z');
    assert.equal(nextAttestationDelay(undefined, now), 0);
    assert.equal(
      nextAttestationDelay(new Date(now.getTime() + 24 * 3_600_000).toISOString(), now),
      20 * 3_600_000,
    );
    assert.equal(nextAttestationDelay(new Date(now.getTime() + RENEW_BEFORE_MS - 1).toISOString(), now), 0);
    assert.equal(
      nextAttestationDelay(new Date(now.getTime() - 3 * 86_400_000).toISOString(), now),
      0,
      'no lock-out after a long absence',
    );
  });

  test('retries back off exponentially to 15 min, with jitter between half and the full step', () => {
    assert.equal(
      retryDelay(1, () => 0),
      RETRY_BASE_MS / 2,
    );
    assert.equal(
      retryDelay(1, () => 1),
      RETRY_BASE_MS,
    );
    assert.equal(
      retryDelay(3, () => 1),
      RETRY_BASE_MS * 4,
    );
    assert.equal(
      retryDelay(30, () => 1),
      RETRY_MAX_MS,
    );
    assert.equal(
      retryDelay(30, () => 0),
      RETRY_MAX_MS / 2,
    );
  });

  test('the scheduler attests at start, renews before expiry and backs off on failure', async () => {
    let now = new Date('2026-11-22T00:00:00Z');
    const timers: Array<{ fn: () => void; ms: number }> = [];
    const results: Array<'ok' | Error> = [new Error('offline'), new Error('offline'), 'ok', 'ok'];
    const calls: Date[] = [];
    const s = new AttestationScheduler({
      clock: () => now,
      random: () => 1,
      setTimer: (fn, ms) => timers.push({ fn, ms }),
      clearTimer: () => {},
      attest: async () => {
        calls.push(now);
        const r = results.shift();
        if (r instanceof Error || r === undefined) throw r ?? new Error('none');
        return outcome(new Date(now.getTime() + 24 * 3_600_000));
      },
    });
    const seen: boolean[] = [];
    s.onOutcome.push((o) => seen.push(o.ok));
    s.start();
    const step = async () => {
      const t = timers.shift();
      assert.ok(t, 'a timer is set');
      now = new Date(now.getTime() + t.ms);
      t.fn();
      await new Promise((r) => setImmediate(r));
      return t.ms;
    };
    assert.equal(await step(), 0, 'attests at start');
    assert.equal(await step(), RETRY_BASE_MS, 'first retry after 5 s');
    assert.equal(await step(), RETRY_BASE_MS * 2, 'second retry after 10 s');
    assert.equal(await step(), 20 * 3_600_000, 'renews 4 h before the 24 h certificate expires');
    assert.deepEqual(seen, [false, false, true, true]);
    s.stop();
    assert.equal(calls.length, 4);
  });
  test('now() from an outcome handler replaces the scheduled renewal with an attestation at once', async () => {
    const now = new Date('2026-11-22T00:00:00Z');
    const timers = new Map<number, { fn: () => void; ms: number }>();
    let nextId = 0;
    let calls = 0;
    const s = new AttestationScheduler({
      clock: () => now,
      setTimer: (fn, ms) => {
        timers.set(++nextId, { fn, ms });
        return nextId;
      },
      clearTimer: (t) => timers.delete(t as number),
      attest: async () => {
        calls += 1;
        return outcome(new Date(now.getTime() + 24 * 3_600_000));
      },
    });
    let asked = false;
    s.onOutcome.push(() => {
      if (!asked) {
        asked = true;
        s.now(); // e.g. the runtime just committed a trial
      }
    });
    s.start();
    const fire = async () => {
      assert.equal(timers.size, 1, 'exactly one timer is pending');
      const [id, t] = [...timers][0] as [number, { fn: () => void; ms: number }];
      timers.delete(id);
      t.fn();
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      return t.ms;
    };
    assert.equal(await fire(), 0, 'attests at start');
    assert.equal(await fire(), 0, 'attests again at once after now()');
    assert.equal(await fire(), 20 * 3_600_000, 'then back to the renewal schedule');
    assert.equal(calls, 3);
    s.stop();
  });
});
