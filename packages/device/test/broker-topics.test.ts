// The SDK mqtt's topic rules (broker/topics.ts), its multiplexing over one session
// (broker/app-mqtt.ts) and the session's reconnect backoff (broker/session.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HeptadError } from '@heptad/protocol';
import fc from 'fast-check';
import {
  AppMqtt,
  MAX_APP_PUBLISHES_IN_FLIGHT,
  MAX_APP_SUBSCRIPTIONS,
  type MqttSessionPort,
} from '../src/broker/app-mqtt.ts';
import { parseBrokerUrl, reconnectDelay } from '../src/broker/session.ts';
import { filterMatches, subtopicProblem, toDeviceTopic } from '../src/broker/topics.ts';

const D = 'd'.repeat(64);

describe('subtopic rules', () => {
  const cases: Array<[string, unknown, 'topic' | 'filter', string | null]> = [
    ['ok/plain topic', 'telemetry', 'topic', null],
    ['ok/nested topic', 'a/b/c', 'topic', null],
    ['ok/dots are a level name', '../../devices/other', 'topic', null],
    ['ok/filter +', 'commands/+', 'filter', null],
    ['ok/filter # last', 'commands/#', 'filter', null],
    ['ok/filter # alone', '#', 'filter', null],
    ['refused/not a string', 42, 'topic', 'not-a-string'],
    ['refused/empty', '', 'topic', 'empty'],
    ['refused/too long', 'a'.repeat(257), 'topic', 'too-long'],
    ['refused/too long in UTF-8', 'é'.repeat(129), 'topic', 'too-long'],
    ['refused/NUL', 'a\u0000b', 'topic', 'nul'],
    ['refused/control', 'a\nb', 'topic', 'control-character'],
    ['refused/lone surrogate', 'a\ud800', 'topic', 'lone-surrogate'],
    ['refused/too deep', Array(13).fill('a').join('/'), 'topic', 'too-deep'],
    ['refused/empty level', 'a//b', 'topic', 'empty-level'],
    ['refused/leading slash', '/a', 'topic', 'empty-level'],
    ['refused/trailing slash', 'a/', 'filter', 'empty-level'],
    ['refused/+ in topic', 'a/+', 'topic', 'wildcard-in-topic'],
    ['refused/# in topic', '#', 'topic', 'wildcard-in-topic'],
    ['refused/+ inside a level', 'a+/b', 'filter', 'wildcard-inside-level'],
    ['refused/# inside a level', 'a/b#', 'filter', 'wildcard-inside-level'],
    ['refused/# not last', '#/a', 'filter', 'wildcard-inside-level'],
  ];
  for (const [name, sub, kind, want] of cases)
    test(name, () => assert.equal(subtopicProblem(sub, kind), want));

  test('whatever an accepted subtopic is, the full topic stays under the device prefix', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        if (subtopicProblem(s, 'filter') !== null) return;
        const full = toDeviceTopic(D, s);
        assert.ok(full.startsWith(`devices/${D}/`));
        assert.ok(full.split('/').length <= 16 && full.length <= 512);
        // a filter accepted for this device never matches another device's topic
        assert.equal(filterMatches(full, `devices/${'e'.repeat(64)}/${s.replace(/[+#]/g, 'x')}`), false);
      }),
    );
  });

  test('filters match as MQTT says', () => {
    assert.ok(filterMatches('a/+', 'a/b'));
    assert.ok(!filterMatches('a/+', 'a/b/c'));
    assert.ok(filterMatches('a/#', 'a'));
    assert.ok(filterMatches('a/#', 'a/b/c'));
    assert.ok(!filterMatches('a/b', 'a/c'));
  });
});

function fakeSession(connected = true) {
  const calls: string[] = [];
  let release: (() => void) | undefined;
  const s: MqttSessionPort & { calls: string[]; hold: boolean; connected: boolean; release(): void } = {
    connected,
    hold: false,
    calls,
    describe: () => (s.connected ? 'connected' : 'refused 5'),
    publish: async (t) => {
      calls.push(`pub ${t}`);
      if (s.hold) await new Promise<void>((r) => (release = r));
    },
    subscribe: async (f) => {
      calls.push(`sub ${f}`);
    },
    unsubscribe: async (f) => {
      calls.push(`unsub ${f}`);
    },
    release: () => release?.(),
  };
  return s;
}

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof HeptadError);
    return e.code;
  }
};

describe('one session for every app', () => {
  test('routes a message only to the apps whose filters match it', async () => {
    const s = fakeSession();
    const got: Array<[string, string, readonly string[]]> = [];
    const m = new AppMqtt({
      deviceId: D,
      session: s,
      deliver: (id, e, done) => {
        got.push([id, e.topic, e.filters]);
        done();
        return true;
      },
    });
    await m.subscribe('app-a', 'cmd/#');
    await m.subscribe('app-b', 'cmd/+');
    await m.subscribe('app-b', 'other');
    m.route(`devices/${D}/cmd/x/y`, Buffer.from('1'));
    m.route(`devices/${D}/cmd/x`, Buffer.from('2'));
    m.route(`devices/${'e'.repeat(64)}/cmd/x`, Buffer.from('3'));
    assert.deepEqual(got, [
      ['app-a', 'cmd/x/y', ['cmd/#']],
      ['app-a', 'cmd/x', ['cmd/#']],
      ['app-b', 'cmd/x', ['cmd/+']],
    ]);
  });

  test('a filter held by two apps is subscribed once and released by the last', async () => {
    const s = fakeSession();
    const m = new AppMqtt({ deviceId: D, session: s, deliver: () => true });
    await m.subscribe('a', 'x');
    await m.subscribe('b', 'x');
    await m.unsubscribe('a', 'x');
    m.forget('b');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(s.calls, [`sub devices/${D}/x`, `unsub devices/${D}/x`]);
  });

  test('refuses a publish or subscribe while the session is down', async () => {
    const s = fakeSession(false);
    const m = new AppMqtt({ deviceId: D, session: s, deliver: () => true });
    assert.equal(await codeOf(m.publish('a', 'x', Buffer.from('1'), 1)), 'APP_MQTT_UNAVAILABLE');
    assert.equal(await codeOf(m.subscribe('a', 'x')), 'APP_MQTT_UNAVAILABLE');
    assert.deepEqual(s.calls, []);
  });

  test('bounds one app: subscriptions and publishes in flight', async () => {
    const s = fakeSession();
    const m = new AppMqtt({ deviceId: D, session: s, deliver: () => true });
    for (let i = 0; i < MAX_APP_SUBSCRIPTIONS; i++) await m.subscribe('a', `f${i}`);
    assert.equal(await codeOf(m.subscribe('a', 'one-more')), 'APP_RATE_LIMITED');
    assert.equal(await codeOf(m.subscribe('b', 'one-more')), 'ok');
    s.hold = true;
    const held = Array.from({ length: MAX_APP_PUBLISHES_IN_FLIGHT }, () =>
      m.publish('a', 't', Buffer.alloc(1), 1),
    );
    assert.equal(await codeOf(m.publish('a', 't', Buffer.alloc(1), 1)), 'APP_RATE_LIMITED');
    s.release();
    s.hold = false;
    void Promise.allSettled(held);
  });

  test('drops messages for an app that does not take them, past the bound', () => {
    const s = fakeSession();
    let delivered = 0;
    const m = new AppMqtt({
      deviceId: D,
      session: s,
      deliver: () => {
        delivered++;
        return true; // never done: the app's channel is stuck
      },
    });
    return m.subscribe('a', '#').then(() => {
      for (let i = 0; i < 1000; i++) m.route(`devices/${D}/t`, Buffer.from('x'));
      assert.equal(delivered, 256);
    });
  });
});

describe('session', () => {
  test('reconnect delay: exponential with jitter, capped', () => {
    assert.equal(
      reconnectDelay(1, { initialMs: 1000, maxMs: 300_000 }, () => 0),
      500,
    );
    assert.equal(
      reconnectDelay(1, { initialMs: 1000, maxMs: 300_000 }, () => 1),
      1000,
    );
    assert.equal(
      reconnectDelay(4, { initialMs: 1000, maxMs: 300_000 }, () => 1),
      8000,
    );
    assert.equal(
      reconnectDelay(40, { initialMs: 1000, maxMs: 300_000 }, () => 1),
      300_000,
    );
    assert.ok(reconnectDelay(40, { initialMs: 1000, maxMs: 300_000 }, () => 0) >= 150_000);
  });

  test('only mqtts://HOST:PORT is dialled', () => {
    assert.deepEqual(parseBrokerUrl('mqtts://127.0.0.1:8883'), { host: '127.0.0.1', port: 8883 });
    assert.deepEqual(parseBrokerUrl('mqtts://[::1]:8883'), { host: '::1', port: 8883 });
    for (const bad of ['mqtt://h:1883', 'mqtts://h', 'ws://h:1', 'nonsense', 42, null])
      assert.equal(parseBrokerUrl(bad), null, String(bad));
  });
});
