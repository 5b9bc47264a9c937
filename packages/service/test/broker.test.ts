import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  createCertificateAuthority,
  createDeviceCertificateIssuer,
  createTenantIssuingCa,
  createTenantRootCa,
  toPem,
  toPrivateKey,
} from '@heptad/protocol';
import * as x509 from '@peculiar/x509';
import { checkPublish, checkSubscribe, isClientIdAllowed } from '../src/broker/topic-policy.ts';
import {
  type AttestedDevice,
  allowTestRuntime,
  attestDevice,
  type Connected,
  connect,
  connectFrame,
  eventually,
  granted,
  rawSession,
  reattest,
  remainingLength,
} from './support/mqtt.ts';
import {
  backends,
  createTestService,
  type SeededTenant,
  seedTenant,
  type TestService,
} from './support/service.ts';

const DEV = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const GROUP = '11111111-2222-4333-8444-555555555555';
const T = '99999999-2222-4333-8444-555555555555';
const device = { kind: 'device', tenantId: T, deviceId: DEV, serial: '40' } as const;
const reader = { kind: 'cloud', tenantId: T, userId: 'u', role: 'Reader' } as const;
const contributor = { kind: 'cloud', tenantId: T, userId: 'u', role: 'Contributor' } as const;

describe('broker topic policy (pure)', () => {
  test('a device reaches only its own topics, and its group when the store agrees', () => {
    const ok = [`devices/${DEV}/telemetry`, `devices/${DEV}/#`, `devices/${DEV}/+/x`];
    for (const f of ok) assert.deepEqual(checkSubscribe(device, f), { ok: true, need: null }, f);
    assert.deepEqual(checkSubscribe(device, `groups/${GROUP}/chat`), {
      ok: true,
      need: { kind: 'peer-group', groupId: GROUP },
    });
    assert.deepEqual(checkPublish(device, `devices/${DEV}/telemetry`), { ok: true, need: null });
  });

  const refusedFilters: Array<[string, string]> = [
    ['refused/# at the root', '#'],
    ['refused/+ at the root', '+/x/y'],
    ['refused/$SYS', '$SYS/#'],
    ['refused/shared subscription', `$share/g/devices/${DEV}/x`],
    ['refused/another device', `devices/${OTHER}/telemetry`],
    ['refused/any device', 'devices/+/telemetry'],
    ['refused/the whole devices space', 'devices/#'],
    ['refused/# inside a level', `devices/${DEV}/a#`],
    ['refused/+ inside a level', `devices/${DEV}/a+`],
    ['refused/# not last', `devices/${DEV}/#/x`],
    ['refused/no tail', `devices/${DEV}`],
    ['refused/empty tail', `devices/${DEV}/`],
    ['refused/outside the tree', 'telemetry/x/y'],
    ['refused/too long', `devices/${DEV}/${'x'.repeat(600)}`],
    ['refused/too deep', `devices/${DEV}/${'x/'.repeat(20)}x`],
    ['refused/group that is not an id', 'groups/+/chat'],
    ['refused/NUL', `devices/${DEV}/a\u0000b`],
  ];
  for (const [name, filter] of refusedFilters) {
    test(`device subscribe ${name}`, () => assert.deepEqual(checkSubscribe(device, filter), { ok: false }));
  }

  test('publishing takes no wildcards, and a device cannot publish as another', () => {
    for (const t of [`devices/${DEV}/#`, `devices/${DEV}/+`, `devices/${OTHER}/x`, '#', `devices/${DEV}`]) {
      assert.deepEqual(checkPublish(device, t), { ok: false }, t);
    }
  });

  test('a cloud client may use + for the id (delivery is filtered by tenant); a Reader does not publish', () => {
    assert.deepEqual(checkSubscribe(reader, 'devices/+/telemetry'), { ok: true, need: null });
    assert.deepEqual(checkSubscribe(reader, `devices/${DEV}/#`), {
      ok: true,
      need: { kind: 'device-in-tenant', deviceId: DEV },
    });
    assert.deepEqual(checkSubscribe(reader, '#'), { ok: false });
    assert.deepEqual(checkSubscribe(reader, 'devices/#'), { ok: false });
    assert.deepEqual(checkPublish(reader, `devices/${DEV}/cmd`), { ok: false });
    assert.deepEqual(checkPublish(contributor, `devices/${DEV}/cmd`), {
      ok: true,
      need: { kind: 'device-in-tenant', deviceId: DEV },
    });
    assert.deepEqual(checkPublish(contributor, 'devices/+/cmd'), { ok: false });
  });

  test('clientId: a device uses its id; a cloud client <tenant>/<label>', () => {
    assert.ok(isClientIdAllowed(device, DEV));
    assert.ok(!isClientIdAllowed(device, OTHER));
    assert.ok(!isClientIdAllowed(device, ''));
    assert.ok(isClientIdAllowed(reader, `${T}/dashboard-1`));
    assert.ok(!isClientIdAllowed(reader, DEV));
    assert.ok(!isClientIdAllowed(reader, `${T}/`));
    assert.ok(!isClientIdAllowed(reader, `${T}/a b`));
    assert.ok(!isClientIdAllowed(reader, `other/${T}/x`));
  });
});

for (const backend of backends()) {
  describe(`embedded MQTT broker on ${backend}`, () => {
    let svc: TestService;
    let a: SeededTenant;
    let b: SeededTenant;
    let port: number;
    let ca: string;
    const open: Connected[] = [];
    const devices: AttestedDevice[] = [];
    const attested = async (tenant: SeededTenant, group?: string) => {
      const d = await attestDevice(svc, tenant.tokens.Contributor, group);
      devices.push(d);
      return d;
    };
    const session = async (o: Parameters<typeof connect>[2]) => {
      const c = await connect(port, ca, o);
      open.push(c);
      return c;
    };
    const cloud = (tenant: SeededTenant, role: 'Reader' | 'Contributor' = 'Contributor', label = 'ops') =>
      session({ password: tenant.tokens[role], clientId: `${tenant.id}/${label}-${open.length}` });
    const noConnack = (p: Promise<Connected>) =>
      assert.rejects(p, (e: { code?: string }) => e.code === 'NO_CONNACK');
    const events = (deviceId: string) =>
      svc.db
        .selectFrom('security_events')
        .selectAll()
        .where('device_id', '=', deviceId)
        .where('kind', '=', 'broker.refused')
        .execute();

    const soon = (p: Promise<void>) =>
      Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error('still open')), 5_000))]);
    /** waits until the device has `rows` refusal rows (the broker writes them after closing), then a little more */
    const settled = async (deviceId: string, rows: number) => {
      const until = Date.now() + 5_000;
      while ((await events(deviceId)).length < rows && Date.now() < until)
        await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
    };
    /** every table but security_events: what a refused connect must leave as it was */
    const state = async () =>
      JSON.stringify(
        (JSON.parse(await svc.snapshot()) as Array<[string, unknown]>).filter(
          ([t]) => t !== 'security_events',
        ),
      );
    /**
     * A leaf signed by `issuerTenant`'s real issuing CA (its sealed key opened as the service
     * does) that names `sanTenant` and `deviceId` in its SAN and carries `serial`: what anyone
     * holding one tenant CA key could make.
     */
    const forge = async (o: {
      issuerTenant: string;
      sanTenant: string;
      deviceId: string;
      serial: string;
      keyPem: string;
    }) => {
      const row = await svc.db
        .selectFrom('tenant_cas')
        .selectAll()
        .where('tenant_id', '=', o.issuerTenant)
        .where('kind', '=', 'issuing')
        .executeTakeFirstOrThrow();
      const keyPkcs8 = svc.keys.open(
        Buffer.from(row.key_sealed, 'base64'),
        `tenant-ca:${o.issuerTenant}:${row.id}`,
      );
      // Not the protocol's issuer: it refuses a SAN tenant other than the CA's own (the forgery).
      const ec = { name: 'ECDSA', namedCurve: 'P-256' };
      const caCert = new x509.X509Certificate(row.cert_pem);
      const spki = createPublicKey(o.keyPem).export({ format: 'der', type: 'spki' });
      const leafCert = await x509.X509CertificateGenerator.create({
        serialNumber: o.serial,
        subject: `CN=${o.deviceId}`,
        issuer: caCert.subject,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3_600_000),
        signingAlgorithm: { ...ec, hash: 'SHA-256' },
        publicKey: await crypto.subtle.importKey('spki', spki, ec, true, ['verify']),
        signingKey: await crypto.subtle.importKey('pkcs8', keyPkcs8, ec, false, ['sign']),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([
            { type: 'url', value: `urn:heptad:device:${o.deviceId}` },
            { type: 'url', value: `urn:heptad:tenant:${o.sanTenant}` },
          ]),
          await x509.AuthorityKeyIdentifierExtension.create(caCert),
        ],
      });
      const leaf = leafCert.toString('pem');
      return `${leaf.trim()}\n${row.cert_pem.trim()}\n`;
    };
    const otherKeyPem = () =>
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
        .privateKey.export({ format: 'pem', type: 'pkcs8' })
        .toString();

    before(async () => {
      svc = await createTestService(backend, 'broker', { mqtt: true, maxPacketSize: 4096 });
      svc.now = new Date(); // TLS checks certificate validity against the real clock
      port = svc.mqtt?.port ?? 0;
      ca = svc.mqtt?.caPem ?? '';
      a = await seedTenant(svc, 'Broker A');
      b = await seedTenant(svc, 'Broker B');
      await allowTestRuntime(svc);
    });
    after(async () => {
      for (const c of open) c.client.end(true);
      for (const d of devices) d.device.cleanup();
      await svc.close();
    });

    test('an attested device connects and exchanges messages with its tenant’s cloud client', async () => {
      const d = await attested(a);
      const ops = await cloud(a, 'Contributor');
      await ops.client.subscribeAsync('devices/+/telemetry', { qos: 1 });
      const dev = await session({ device: d });
      await dev.client.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
      await dev.client.publishAsync(`devices/${d.id}/telemetry`, 'temp=21', { qos: 1 });
      await ops.client.publishAsync(`devices/${d.id}/commands`, 'reboot', { qos: 1 });
      await eventually(() => ops.received.length === 1 && dev.received.length === 1, 5_000, 'messages');
      assert.deepEqual(ops.received, [{ topic: `devices/${d.id}/telemetry`, payload: 'temp=21' }]);
      assert.deepEqual(dev.received, [{ topic: `devices/${d.id}/commands`, payload: 'reboot' }]);
      const m = await svc.call('GET', '/metrics', { token: svc.operatorToken });
      const live = Number(/^heptad_mqtt_sessions (\d+)$/m.exec(m.body)?.[1]);
      assert.ok(live >= 2, `heptad_mqtt_sessions ${live}`);
    });

    test('a device’s will (last message) under its own topic reaches its tenant when it drops off', async () => {
      const d = await attested(a);
      const ops = await cloud(a, 'Reader');
      await ops.client.subscribeAsync(`devices/${d.id}/status`, { qos: 0 });
      const dev = await session({ device: d, will: { topic: `devices/${d.id}/status`, payload: 'offline' } });
      dev.client.stream.destroy(); // an abrupt drop, not a DISCONNECT
      await eventually(() => ops.received.length === 1, 5_000, 'will');
      assert.deepEqual(ops.received, [{ topic: `devices/${d.id}/status`, payload: 'offline' }]);
    });

    test('refuses a certificate from another CA with the same identity (no CONNACK)', async () => {
      const d = await attested(a);
      // A rogue CA chain that copies the tenant's names: same subject and SAN on the leaf.
      const root = await createTenantRootCa({ tenantId: a.id, now: new Date(), validityDays: 2 });
      const issuing = await createTenantIssuingCa({
        root,
        tenantId: a.id,
        now: new Date(),
        validityDays: 2,
        generation: 1,
      });
      const issuer = createDeviceCertificateIssuer({
        issuerCertDer: Buffer.from(new X509Certificate(issuing.certPem).raw),
        issuerKey: toPrivateKey(issuing.keyPkcs8),
        tenantId: a.id,
      });
      const spki = createPublicKey(d.keyPem).export({ format: 'der', type: 'spki' });
      const leaf = toPem(
        issuer.issue({
          deviceId: d.id,
          publicKeySpkiDer: spki,
          serial: Buffer.from(d.serial, 'hex'), // even the serial of the real certificate
          notBefore: new Date(Date.now() - 60_000),
          notAfter: new Date(Date.now() + 3_600_000),
        }),
        'CERTIFICATE',
      );
      await noConnack(
        connect(port, ca, {
          cert: `${leaf.trim()}\n${issuing.certPem.trim()}\n`,
          key: d.keyPem,
          clientId: d.id,
        }),
      );
      // and a plain self-signed CA's client certificate
      const other = await createCertificateAuthority({ commonName: d.id, now: new Date(), validityDays: 1 });
      await noConnack(
        connect(port, ca, { cert: other.certPem, key: toPem(other.keyPkcs8, 'PRIVATE KEY'), clientId: d.id }),
      );
    });

    test('refuses a certificate another tenant’s real issuing CA signed with this tenant’s SAN and serial (no CONNACK)', async () => {
      const d = await attested(a);
      await attested(b); // tenant B has its CA
      const before = await state();
      const eventsBefore = (await events(d.id)).length;
      // With the device's real key (as if it leaked) and with the forger's own key.
      for (const keyPem of [d.keyPem, otherKeyPem()]) {
        const cert = await forge({
          issuerTenant: b.id,
          sanTenant: a.id,
          deviceId: d.id,
          serial: d.serial,
          keyPem,
        });
        await noConnack(connect(port, ca, { cert, key: keyPem, clientId: d.id }));
      }
      assert.equal(await state(), before);
      assert.equal((await events(d.id)).length, eventsBefore);
      assert.equal(svc.app.broker?.endDeviceSessions(d.id, 'test'), 0, 'no session of it');
    });

    test('refuses a certificate of the right tenant CA whose key is not the one on record for its serial', async () => {
      const d = await attested(a);
      const before = await state();
      const keyPem = otherKeyPem();
      const cert = await forge({
        issuerTenant: a.id,
        sanTenant: a.id,
        deviceId: d.id,
        serial: d.serial,
        keyPem,
      });
      await noConnack(connect(port, ca, { cert, key: keyPem, clientId: d.id }));
      assert.equal(await state(), before);
      assert.deepEqual(
        (await events(d.id)).map((e) => e.reason),
        ['BROKER_CERTIFICATE_UNKNOWN'],
      );
    });

    test('the TLS CertificateRequest names no CA (tenant ids are not disclosed)', async () => {
      const r = await new Promise<string>((resolve) => {
        const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2'], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let out = '';
        p.stdout.on('data', (c: Buffer) => {
          out += c.toString();
        });
        p.on('close', () => resolve(out));
        setTimeout(() => p.stdin.end(), 500);
      });
      assert.match(r, /No client certificate CA names sent/);
      assert.doesNotMatch(r, new RegExp(a.id));
    });

    test('refuses an expired certificate', async () => {
      const real = svc.now;
      svc.now = new Date(real.getTime() - 2 * 86_400_000);
      let d: AttestedDevice;
      try {
        d = await attested(a);
      } finally {
        svc.now = real;
      }
      await noConnack(connect(port, ca, { device: d }));
    });

    test('refuses a revoked certificate and a quarantined device, and records each refusal', async () => {
      const d = await attested(a);
      const q = await svc.call('POST', `/v1/devices/${d.id}/quarantine`, {
        token: a.tokens.Contributor,
        body: {},
      });
      assert.equal(q.status, 200, q.body);
      await noConnack(connect(port, ca, { device: d }));
      assert.ok((await events(d.id)).some((e) => e.reason === 'BROKER_CERTIFICATE_REVOKED'));
      // Released: no longer quarantined, but the certificate it holds stays revoked.
      const r = await svc.call('DELETE', `/v1/devices/${d.id}/quarantine`, { token: a.tokens.Contributor });
      assert.equal(r.status, 200, r.body);
      await noConnack(connect(port, ca, { device: d }));
      // Quarantined while its certificate is still unrevoked in the store (another instance's race):
      const d2 = await attested(a);
      await svc.db
        .updateTable('devices')
        .set({ quarantined_at: svc.now.toISOString() })
        .where('id', '=', d2.id)
        .execute();
      await noConnack(connect(port, ca, { device: d2 }));
      assert.ok((await events(d2.id)).some((e) => e.reason === 'BROKER_DEVICE_QUARANTINED'));
    });

    test('a quarantined device, released and attested again, connects again', async () => {
      const d = await attested(a);
      const dev = await session({ device: d });
      const q = await svc.call('POST', `/v1/devices/${d.id}/quarantine`, {
        token: a.tokens.Contributor,
        body: {},
      });
      assert.equal(q.status, 200, q.body);
      await dev.closed;
      const r = await svc.call('DELETE', `/v1/devices/${d.id}/quarantine`, { token: a.tokens.Contributor });
      assert.equal(r.status, 200, r.body);
      const again = await reattest(svc, d.device);
      assert.notEqual(again.serial, d.serial);
      const back = await session({ device: again });
      await back.client.publishAsync(`devices/${d.id}/telemetry`, 'back', { qos: 1 });
      await back.end();
    });

    test('a quarantined device’s will is not published when it is cut off', async () => {
      const d = await attested(a);
      const ops = await cloud(a, 'Reader');
      await ops.client.subscribeAsync(`devices/${d.id}/status`, { qos: 0 });
      const dev = await session({ device: d, will: { topic: `devices/${d.id}/status`, payload: 'offline' } });
      const q = await svc.call('POST', `/v1/devices/${d.id}/quarantine`, {
        token: a.tokens.Contributor,
        body: {},
      });
      assert.equal(q.status, 200, q.body);
      await dev.closed;
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(ops.received, []);
    });

    test('another user of the tenant cannot take over a live cloud clientId; the same user can', async () => {
      const clientId = `${a.id}/takeover-${open.length}`;
      const first = await session({ password: a.tokens.Reader, clientId });
      await noConnack(connect(port, ca, { password: a.tokens.Administrator, clientId }));
      assert.equal(await granted(first.client, 'devices/+/still-here'), 0, 'the first session lives on');
      const again = await session({ password: a.tokens.Reader, clientId });
      await first.closed; // taken over by its own user
      await again.end();
      await new Promise((r) => setTimeout(r, 100)); // the broker has seen the close
      // free again: anyone of the tenant may use it
      const other = await session({ password: a.tokens.Administrator, clientId });
      await other.end();
    });

    test('refuses a device that uses another clientId, and cloud clients without a valid tenant token', async () => {
      const d = await attested(a);
      const other = await attested(a);
      await noConnack(connect(port, ca, { device: d, clientId: other.id }));
      await noConnack(session({ password: 'hpt_not-a-token', clientId: `${a.id}/x` }));
      await noConnack(session({ password: svc.operatorToken, clientId: `${a.id}/x` }));
      await noConnack(session({ password: a.tokens.Reader, clientId: `${b.id}/x` }));
      await noConnack(session({ clientId: `${a.id}/x` }));
    });

    test('quarantine during a live session disconnects it at once', async () => {
      const d = await attested(a);
      const dev = await session({ device: d });
      const q = await svc.call('POST', `/v1/devices/${d.id}/quarantine`, {
        token: a.tokens.Contributor,
        body: {},
      });
      assert.equal(q.status, 200, q.body);
      await Promise.race([
        dev.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('session still open')), 2_000)),
      ]);
      assert.equal(svc.app.broker?.endDeviceSessions(d.id, 'test'), 0, 'no session of it is left');
    });

    test('unclaiming a device ends its live session, and it cannot connect again', async () => {
      const d = await attested(a);
      const dev = await session({ device: d });
      const u = await svc.call('POST', `/v1/devices/${d.id}/unclaim`, { token: svc.operatorToken });
      assert.equal(u.status, 200, u.body);
      await dev.closed;
      await noConnack(connect(port, ca, { device: d }));
      // unclaim revoked its certificate
      assert.ok((await events(d.id)).some((e) => e.reason === 'BROKER_CERTIFICATE_REVOKED'));
    });

    test('unclaiming a device revokes its live certificates: the old tenant’s CRL lists them (for Mosquitto)', async () => {
      const d = await attested(a);
      const u = await svc.call('POST', `/v1/devices/${d.id}/unclaim`, { token: svc.operatorToken });
      assert.equal(u.status, 200, u.body);
      const crl = await svc.call('GET', '/v1/tenants/current/crl', { token: a.tokens.Reader });
      assert.equal(crl.status, 200, crl.body);
      const listed = crl.body
        .split(/(?=-----BEGIN X509 CRL-----)/)
        .flatMap((pem) => new x509.X509Crl(pem).entries.map((e) => e.serialNumber.toLowerCase()));
      assert.ok(
        listed.includes(d.serial.replace(/^0+/, '')) || listed.includes(d.serial),
        `${d.serial} in ${listed}`,
      );
      const row = await svc.db
        .selectFrom('device_certificates')
        .select('revoked_at')
        .where('serial', '=', d.serial)
        .executeTakeFirstOrThrow();
      assert.equal(row.revoked_at, svc.now.toISOString());
    });

    test('refuses a persistent session (clean session 0) from a device and from a cloud client', async () => {
      const d = await attested(a);
      const before = await state();
      await noConnack(connect(port, ca, { device: d, clean: false }));
      const label = `${a.id}/persistent-${open.length}`;
      await noConnack(connect(port, ca, { password: a.tokens.Reader, clientId: label, clean: false }));
      assert.equal(await state(), before);
      // the same clients with a clean session are welcome
      const dev = await session({ device: d });
      const ops = await session({ password: a.tokens.Reader, clientId: label });
      assert.equal(await granted(ops.client, 'devices/+/#', 1), 1);
      await dev.end();
    });

    test('refuses a keepalive of 0 (none) or above 1800 s', async () => {
      const d = await attested(a);
      await noConnack(connect(port, ca, { device: d, keepalive: 0 }));
      await noConnack(connect(port, ca, { device: d, keepalive: 3_600 }));
      const dev = await session({ device: d, keepalive: 1_800 });
      await dev.end();
    });

    test('an MQTT 5 client gets no session (aedes 1.2 speaks MQTT 3.1.1)', async () => {
      const d = await attested(a);
      await noConnack(connect(port, ca, { device: d, protocolVersion: 5 }));
    });

    test('the sweep ends a session whose certificate was revoked elsewhere', async () => {
      const d = await attested(a);
      const dev = await session({ device: d });
      await svc.db
        .updateTable('device_certificates')
        .set({ revoked_at: svc.now.toISOString() })
        .where('serial', '=', d.serial)
        .execute();
      assert.equal(await svc.app.broker?.sweep(), 1);
      await dev.closed;
    });

    test('a session the sweep ends does not publish its will (its credential is no longer good)', async () => {
      const d = await attested(a);
      const ops = await cloud(a, 'Reader');
      await ops.client.subscribeAsync(`devices/${d.id}/status`, { qos: 0 });
      const dev = await session({ device: d, will: { topic: `devices/${d.id}/status`, payload: 'offline' } });
      await svc.db
        .updateTable('device_certificates')
        .set({ revoked_at: svc.now.toISOString() })
        .where('serial', '=', d.serial)
        .execute();
      assert.equal(await svc.app.broker?.sweep(), 1);
      await dev.closed;
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(ops.received, []);
    });

    test('the sweep ends a session that outlived its 24 h certificate', async () => {
      const d = await attested(a);
      const dev = await session({ device: d });
      const real = svc.now;
      svc.now = new Date(real.getTime() + 25 * 3_600_000);
      try {
        assert.ok(((await svc.app.broker?.sweep()) ?? 0) >= 1);
        await dev.closed;
      } finally {
        svc.now = real;
      }
    });

    test('a device publishing to another device’s topic is disconnected and nothing is delivered', async () => {
      const victim = await attested(a);
      const attacker = await attested(a);
      const v = await session({ device: victim });
      await v.client.subscribeAsync(`devices/${victim.id}/#`, { qos: 1 });
      const x = await session({ device: attacker });
      x.client.publish(`devices/${victim.id}/commands`, 'open-door', { qos: 0 });
      await x.closed;
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(v.received, []);
      assert.ok((await events(attacker.id)).some((e) => e.reason === 'BROKER_TOPIC_DENIED'));
    });

    test('wildcard abuse and other devices’ topics are refused in SUBACK', async () => {
      const d = await attested(a);
      const other = await attested(a);
      const dev = await session({ device: d });
      for (const f of ['#', '+/#', '$SYS/#', 'devices/+/telemetry', `devices/${other.id}/#`, 'devices/#']) {
        assert.equal(await granted(dev.client, f), 128, f);
      }
    });

    test('a SUBSCRIBE with many refused filters costs one event write per reason and ends the session', async () => {
      const d = await attested(a);
      const other = await attested(a);
      const dev = await session({ device: d });
      // 40 filters (within the test broker's 4096-byte packet limit), all another device's
      const filters = Array.from({ length: 40 }, (_, i) => `devices/${other.id}/x${i}`);
      dev.client.subscribe(filters, { qos: 0 }, () => undefined);
      await soon(dev.closed);
      await settled(d.id, 1);
      assert.deepEqual(
        (await events(d.id)).map((e) => [e.reason, Number(e.count)]),
        [['BROKER_TOPIC_DENIED', 1]],
      );
    });

    test('a SUBSCRIBE carrying more than 100 filters closes the connection', async () => {
      const ops = await cloud(a, 'Reader');
      ops.client.subscribe(
        Array.from({ length: 101 }, (_, i) => `devices/+/y${i}`),
        { qos: 0 },
        () => undefined,
      );
      await soon(ops.closed);
    });

    test('a session holds at most 100 subscriptions; unsubscribing frees a place', async () => {
      const ops = await cloud(a, 'Reader');
      for (let part = 0; part < 2; part++) {
        const filters = Array.from({ length: 50 }, (_, i) => `devices/+/t${part * 50 + i}`);
        const g = await ops.client.subscribeAsync(filters, { qos: 0 });
        assert.deepEqual(
          g.map((x) => x.qos),
          filters.map(() => 0),
        );
      }
      assert.equal(await granted(ops.client, 'devices/+/one-too-many'), 128);
      assert.equal(await granted(ops.client, 'devices/+/t7'), 0, 'one it holds already');
      await ops.client.unsubscribeAsync('devices/+/t0');
      assert.equal(await granted(ops.client, 'devices/+/one-too-many'), 0);
    });

    test('nothing crosses tenants: subscriptions to another tenant’s devices are refused or receive nothing', async () => {
      const da = await attested(a);
      const db = await attested(b);
      const opsB = await cloud(b, 'Reader');
      await opsB.client.subscribeAsync('devices/+/#', { qos: 0 });
      assert.equal(await granted(opsB.client, `devices/${da.id}/#`), 128);
      const devB = await session({ device: db });
      assert.equal(await granted(devB.client, `devices/${da.id}/#`), 128);
      const opsA = await cloud(a, 'Reader');
      await opsA.client.subscribeAsync('devices/+/#', { qos: 0 });
      const devA = await session({ device: da });
      await devA.client.publishAsync(`devices/${da.id}/telemetry`, 'secret-of-a', { qos: 1 });
      await devB.client.publishAsync(`devices/${db.id}/telemetry`, 'b', { qos: 1 });
      await eventually(() => opsA.received.length >= 1 && opsB.received.length >= 1, 5_000, 'messages');
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(
        opsA.received.map((m) => m.payload),
        ['secret-of-a'],
      );
      assert.deepEqual(
        opsB.received.map((m) => m.payload),
        ['b'],
      );
      // A cloud publisher of B cannot reach A's device either (disconnected).
      const pubB = await cloud(b, 'Contributor');
      pubB.client.publish(`devices/${da.id}/commands`, 'x');
      await pubB.closed;
    });

    test('device-to-device messages flow through groups/<id>/… only when the group allows them', async () => {
      const p = await svc.call('POST', '/v1/products', {
        token: a.tokens.Contributor,
        body: { name: 'Peers' },
      });
      assert.equal(p.status, 201, p.body);
      const g = await svc.call('GET', '/v1/device-groups/Peers%2FField%20Test', { token: a.tokens.Reader });
      const groupId = String(g.json['id']);
      assert.equal(g.json['allowPeerMessages'], false);
      const d1 = await attested(a, 'Peers/Field Test');
      const d2 = await attested(a, 'Peers/Field Test');
      const s1 = await session({ device: d1 });
      assert.equal(await granted(s1.client, `groups/${groupId}/chat`), 128);
      const u = await svc.call('PATCH', `/v1/device-groups/${groupId}`, {
        token: a.tokens.Contributor,
        body: { allowPeerMessages: true },
      });
      assert.equal(u.status, 200, u.body);
      assert.equal(u.json['allowPeerMessages'], true);
      svc.now = new Date(svc.now.getTime() + 10_000); // past the broker's lookup cache
      assert.equal(await granted(s1.client, `groups/${groupId}/chat`), 0);
      const s2 = await session({ device: d2 });
      await s2.client.publishAsync(`groups/${groupId}/chat`, 'hello peer', { qos: 1 });
      await eventually(() => s1.received.length === 1, 5_000, 'peer message');
      assert.deepEqual(s1.received, [{ topic: `groups/${groupId}/chat`, payload: 'hello peer' }]);
      // A device of another group (tenant A's other product) cannot join the group.
      const outsider = await attested(a);
      const so = await session({ device: outsider });
      assert.equal(await granted(so.client, `groups/${groupId}/chat`), 128);
    });

    test('refuses oversized packets: announced too large, or sent too large', async () => {
      const d = await attested(a);
      // CONNECT, then a PUBLISH header announcing 10 MB: closed before the body is read.
      const header = Buffer.concat([Buffer.from([0x30]), remainingLength(10 * 1024 * 1024)]);
      const r = await rawSession(port, ca, d, [connectFrame(d.id), header]);
      assert.ok(r.closed, 'connection closed');
      assert.deepEqual([...r.received], [0x20, 0x02, 0x00, 0x00], 'only the CONNACK was sent');
      const dev = await session({ device: d });
      dev.client.publish(`devices/${d.id}/blob`, Buffer.alloc(8192));
      await dev.closed;
    });

    test('refuses malformed packets (no CONNACK)', async () => {
      const d = await attested(a);
      const frames: Array<[string, Buffer]> = [
        ['garbage', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
        ['reserved CONNECT flags', Buffer.from([0x1f, 0x00])],
        ['truncated CONNECT protocol name', Buffer.from([0x10, 0x04, 0x00, 0x04, 0x4d, 0x51])],
        ['length over four bytes', Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f])],
        ['PUBLISH before CONNECT', Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x68, 0x69])],
      ];
      for (const [name, frame] of frames) {
        const r = await rawSession(port, ca, d, [frame]);
        assert.ok(r.closed, `${name}: closed`);
        assert.equal(r.received.length, 0, `${name}: no CONNACK`);
      }
    });
  });
}
