import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { createCertificateAuthority, toPem } from '@heptad/protocol';
import {
  freePort,
  handToMosquittoUser,
  startMosquitto,
  type TestMosquitto,
} from '../../../test/support/mosquitto.ts';
import {
  type BrokerFixture,
  type DeviceSession,
  deviceSession,
  eventually,
  type FixtureDevice,
  type FixtureTenant,
  granted,
  startBrokerFixture,
} from './support/broker-fixture.ts';

const MAX_PACKET = 4096;

/** A raw TLS connection as the device: what the broker sent back, and whether it closed. */
function raw(
  port: number,
  ca: string,
  d: FixtureDevice,
  bytes: Buffer,
): Promise<{ received: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = tls.connect({ host: '127.0.0.1', port, ca, cert: d.chainPem, key: d.keyPem });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ received: Buffer.concat(chunks), closed: false });
    }, 3_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), closed: true });
    });
    s.once('secureConnect', () => s.write(bytes));
  });
}

/**
 * Mosquitto from Debian's package, configured only from `heptad broker config mosquitto` (the test
 * merely hands the folder to the mosquitto user, as a deployment would).
 */
describe('Mosquitto configured by heptad broker config mosquitto', () => {
  let fx: BrokerFixture;
  let a: FixtureTenant;
  let b: FixtureTenant;
  let d1: FixtureDevice;
  let d2: FixtureDevice;
  let revoked: FixtureDevice;
  let expired: FixtureDevice;
  let foreign: FixtureDevice;
  let groupId: string;
  let mosq: TestMosquitto;
  let port: number;
  let ca: string;
  let out: string;
  const sessions: DeviceSession[] = [];
  const connect = async (d: FixtureDevice) => {
    const s = await deviceSession(port, ca, d);
    sessions.push(s);
    return s;
  };
  const noConnack = (d: { id: string; chainPem: string; keyPem: string }) =>
    assert.rejects(deviceSession(port, ca, d), (e: { code?: string }) => e.code === 'NO_CONNACK');
  const writeConfig = async () => {
    const r = await fx.cli(
      [
        'broker',
        'config',
        'mosquitto',
        '--out',
        out,
        '--listen',
        `127.0.0.1:${port}`,
        '--max-packet-size',
        String(MAX_PACKET),
        '--output',
        'json',
      ],
      a.adminEnv,
    );
    assert.equal(r.code, 0, r.err);
    handToMosquittoUser(out);
    return r.json();
  };

  before(async () => {
    fx = await startBrokerFixture('mosquitto');
    a = await fx.tenant('Mosq A');
    b = await fx.tenant('Mosq B');
    const p = await fx.cli(['product', 'create', 'Kettle', '--output', 'json'], a.adminEnv);
    assert.equal(p.code, 0, p.err);
    const g = await fx.cli(
      ['device-group', 'update', 'Kettle/Field Test', '--allow-peer-messages', '--output', 'json'],
      a.adminEnv,
    );
    assert.equal(g.code, 0, g.err);
    groupId = String(g.json()['id']);
    d1 = await fx.device(a, 'm-d1', 'Kettle/Field Test');
    d2 = await fx.device(a, 'm-d2', 'Kettle/Field Test');
    revoked = await fx.device(a, 'm-revoked');
    foreign = await fx.device(b, 'm-foreign');
    fx.clockOffsetMs = -2 * 86_400_000; // issued two days ago: expired now
    try {
      expired = await fx.device(a, 'm-expired');
    } finally {
      fx.clockOffsetMs = 0;
    }
    port = await freePort();
    out = join(fx.dir, 'mosquitto');
    const written = await writeConfig();
    assert.deepEqual(written['peerGroups'], [{ id: groupId, name: 'Kettle/Field Test', devices: 2 }]);
    ca = readFileSync(join(out, 'server-ca.pem'), 'utf8');
    mosq = await startMosquitto(join(out, 'mosquitto.conf'), port);
  });
  after(async () => {
    for (const s of sessions) s.client.end(true);
    await mosq?.stop();
    await fx?.close();
  });

  test('the config and ACL say what the docs promise', () => {
    const conf = readFileSync(join(out, 'mosquitto.conf'), 'utf8');
    for (const line of [
      'require_certificate true',
      'use_identity_as_username true',
      'allow_anonymous false',
      'retain_available false',
      'persistent_client_expiration 1h',
    ]) {
      assert.ok(conf.includes(`\n${line}\n`), line);
    }
    const acl = readFileSync(join(out, 'acl'), 'utf8');
    assert.match(acl, /^pattern readwrite devices\/%u\/#$/m);
    assert.ok(acl.includes(`user ${d1.id}\ntopic readwrite groups/${groupId}/#`));
    assert.ok(!acl.includes(revoked.id), 'a device outside peer groups gets no group topic');
  });

  test('an attested device connects and exchanges messages, with itself and with its peer group', async () => {
    const s1 = await connect(d1);
    const s2 = await connect(d2);
    assert.equal(await granted(s1.client, `devices/${d1.id}/#`), 0);
    assert.equal(await granted(s1.client, `groups/${groupId}/chat`), 0);
    await s1.client.publishAsync(`devices/${d1.id}/telemetry`, 'temp=21', { qos: 1 });
    await s2.client.publishAsync(`groups/${groupId}/chat`, 'hello peer', { qos: 1 });
    await eventually(() => s1.received.length === 2, 5_000, 'messages');
    assert.deepEqual(s1.received.map((m) => m.payload).sort(), ['hello peer', 'temp=21']);
  });

  test('refuses a certificate from another CA: another tenant’s device, and a self-made one (no CONNACK)', async () => {
    await noConnack(foreign);
    const rogue = await createCertificateAuthority({ commonName: d1.id, now: new Date(), validityDays: 1 });
    await noConnack({ id: d1.id, chainPem: rogue.certPem, keyPem: toPem(rogue.keyPkcs8, 'PRIVATE KEY') });
  });

  test('refuses an expired certificate', async () => {
    await noConnack(expired);
  });

  test('refuses a revoked certificate (quarantined device) once the config is written again and reloaded', async () => {
    const before = await connect(revoked);
    await before.client.endAsync();
    const q = await fx.cli(['device', 'quarantine', revoked.id, '--reason', 'test'], a.adminEnv);
    assert.equal(q.code, 0, q.err);
    await writeConfig();
    mosq.reload();
    await new Promise((r) => setTimeout(r, 500));
    await noConnack(revoked);
    await connect(d1); // the others still connect
  });

  test('a device publishing to another device’s topic reaches nobody', async () => {
    const victim = await connect(d1);
    assert.equal(await granted(victim.client, `devices/${d1.id}/commands`), 0);
    const attacker = await connect(d2);
    await attacker.client.publishAsync(`devices/${d1.id}/commands`, 'open-door', { qos: 1 });
    await attacker.client.publishAsync(`devices/${d2.id}/commands`, 'marker', { qos: 1 });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(victim.received, []);
  });

  test('wildcard abuse and cross-tenant subscriptions deliver nothing that is not the device’s own', async () => {
    // Mosquitto 2.0 grants a wildcard SUBSCRIBE and applies the ACL's read rule to every message
    // it would deliver (the embedded broker refuses these in SUBACK instead): assert what arrives.
    const s = await connect(d1);
    const filters = [
      '#',
      '+/#',
      'devices/+/telemetry',
      `devices/${foreign.id}/#`,
      `devices/${d2.id}/#`,
      '$SYS/#',
    ];
    for (const f of filters) await granted(s.client, f);
    const other = await connect(d2);
    await other.client.publishAsync(`devices/${d2.id}/telemetry`, 'not-for-d1', { qos: 1 });
    await s.client.publishAsync(`devices/${d1.id}/telemetry`, 'own', { qos: 1 });
    await eventually(() => s.received.some((m) => m.payload === 'own'), 5_000, 'own message');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      s.received.filter((m) => !m.topic.startsWith(`devices/${d1.id}/`)),
      [],
      'nothing outside devices/<own id>/ arrived',
    );
  });

  test('an oversized packet closes the connection', async () => {
    const s = await connect(d1);
    s.client.publish(`devices/${d1.id}/blob`, Buffer.alloc(MAX_PACKET * 2));
    await s.closed;
  });

  test('malformed packets are refused without CONNACK', async () => {
    for (const bytes of [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      Buffer.from([0x1f, 0x00]),
      Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]),
      Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x68, 0x69]),
    ]) {
      const r = await raw(port, ca, d1, bytes);
      assert.ok(r.closed, `closed after ${bytes.toString('hex')}`);
      assert.equal(r.received.length, 0, `no CONNACK after ${bytes.toString('hex')}`);
    }
  });
});
