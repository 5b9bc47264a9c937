import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { HeptadError } from '@heptad/protocol';
import pino from 'pino';
import { createDatabase } from '../../../test/support/postgres.ts';
import { fromEnv, readConfigFile, resolveConfig } from '../src/config.ts';
import { startService } from '../src/serve.ts';
import { backends } from './support/service.ts';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), text: () => lines.join('') };
}

function get(url: string, ca: string | undefined, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      { ...(ca ? { ca } : {}), headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
  });
}

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'heptad-serve-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('heptad serve: first start, restart, TLS', () => {
  for (const backend of backends()) {
    test(`first start creates the operator token (0600), the platform CA and serves TLS; a restart reuses them (${backend})`, async () => {
      const data = join(tempDir(), 'data');
      const db =
        backend === 'postgres'
          ? await createDatabase(String(process.env['HEPTAD_TEST_PG_URL']), `serve_${process.pid}`)
          : undefined;
      const config = resolveConfig({
        data,
        listen: '127.0.0.1:0',
        mqttListen: '127.0.0.1:0',
        ...(db ? { db } : {}),
      });
      const log1 = capture();
      const svc = await startService(config, { logger: log1.logger, env: {} });
      let token: string;
      let ca: string;
      try {
        assert.equal(svc.firstStart, true);
        assert.match(svc.url, /^https:\/\/127\.0\.0\.1:\d+$/);
        assert.match(svc.mqttUrl ?? '', /^mqtts:\/\/127\.0\.0\.1:\d+$/);
        token = readFileSync(join(data, 'operator-token'), 'utf8').trim();
        assert.match(token, /^hpt_/);
        assert.equal(statSync(join(data, 'operator-token')).mode & 0o777, 0o600);
        assert.equal(statSync(join(data, 'master-key')).mode & 0o777, 0o600);
        assert.equal(statSync(data).mode & 0o777, 0o700);
        ca = readFileSync(join(data, 'platform-ca.pem'), 'utf8');
        // the CA private key is sealed, never a PEM private key on disk
        assert.ok(
          !readFileSync(join(data, 'platform-ca.key.sealed')).toString('latin1').includes('PRIVATE KEY'),
        );
        const r = await get(`${svc.url}/v1/tenants`, ca, token);
        assert.equal(r.status, 200);
        const created = await svc.app.inject({
          method: 'POST',
          url: '/v1/tenants',
          headers: { authorization: `Bearer ${token}` },
          payload: { name: 'Persisted' },
        });
        assert.equal(created.statusCode, 201);
        // without the platform CA the TLS handshake is refused
        await assert.rejects(get(`${svc.url}/healthz`, undefined), (e: NodeJS.ErrnoException) =>
          /SELF_SIGNED|UNABLE_TO_VERIFY|unable to verify/i.test(String(e.code ?? e.message)),
        );
      } finally {
        await svc.close();
      }
      assert.ok(!log1.text().includes(token), 'the operator token never reaches the log');

      const log2 = capture();
      const again = await startService(config, { logger: log2.logger, env: {} });
      try {
        assert.equal(again.firstStart, false);
        assert.equal(readFileSync(join(data, 'operator-token'), 'utf8').trim(), token, 'the token is kept');
        assert.equal(readFileSync(join(data, 'platform-ca.pem'), 'utf8'), ca, 'the CA is kept');
        const r = await get(`${again.url}/v1/tenants`, ca, token);
        assert.match(r.body, /Persisted/);
      } finally {
        await again.close();
      }
      assert.ok(!log2.text().includes(token));
    });
  }

  test('a lost operator-token file is replaced by a new token, and the old one stops working', async () => {
    const data = join(tempDir(), 'data');
    const config = resolveConfig({ data, listen: '127.0.0.1:0', insecureHttp: true, mqttListen: 'off' });
    const first = await startService(config, { logger: capture().logger, env: {} });
    const old = readFileSync(first.operatorTokenPath, 'utf8').trim();
    await first.close();
    rmSync(first.operatorTokenPath);
    const second = await startService(config, { logger: capture().logger, env: {} });
    try {
      const fresh = readFileSync(second.operatorTokenPath, 'utf8').trim();
      assert.notEqual(fresh, old);
      const bad = await second.app.inject({
        method: 'GET',
        url: '/v1/tenants',
        headers: { authorization: `Bearer ${old}` },
      });
      assert.equal(bad.statusCode, 401);
      const good = await second.app.inject({
        method: 'GET',
        url: '/v1/tenants',
        headers: { authorization: `Bearer ${fresh}` },
      });
      assert.equal(good.statusCode, 200);
    } finally {
      await second.close();
    }
  });

  test('HEPTAD_MASTER_KEY seals the CA key; the wrong master key cannot open it', async () => {
    const data = join(tempDir(), 'data');
    const key = Buffer.alloc(32, 7).toString('base64');
    const config = resolveConfig({ data, listen: '127.0.0.1:0', mqttListen: '127.0.0.1:0' });
    const svc = await startService(config, { logger: capture().logger, env: { HEPTAD_MASTER_KEY: key } });
    await svc.close();
    assert.equal(
      existsSync(join(data, 'master-key')),
      false,
      'no master key file when it comes from the environment',
    );
    await assert.rejects(
      startService(config, {
        logger: capture().logger,
        env: { HEPTAD_MASTER_KEY: Buffer.alloc(32, 8).toString('base64') },
      }),
      (e: unknown) => e instanceof HeptadError && e.code === 'CONFIG_INVALID',
    );
    await assert.rejects(
      startService(config, { logger: capture().logger, env: { HEPTAD_MASTER_KEY: 'c2hvcnQ=' } }),
      (e: unknown) => e instanceof HeptadError && e.code === 'CONFIG_INVALID',
    );
  });

  test('a second service on the same data folder is refused with DATA_DIR_UNUSABLE', async () => {
    const data = join(tempDir(), 'data');
    const config = resolveConfig({ data, listen: '127.0.0.1:0', insecureHttp: true, mqttListen: 'off' });
    const first = await startService(config, { logger: capture().logger, env: {} });
    try {
      await assert.rejects(
        startService(config, { logger: capture().logger, env: {} }),
        (e: unknown) => e instanceof HeptadError && e.code === 'DATA_DIR_UNUSABLE',
      );
      const ok = await first.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ok.statusCode, 200, 'the first service is unharmed');
    } finally {
      await first.close();
    }
  });

  test('a data directory that is a file is refused with DATA_DIR_UNUSABLE', async () => {
    const file = join(tempDir(), 'not-a-dir');
    writeFileSync(file, 'x');
    await assert.rejects(
      startService(resolveConfig({ data: file, listen: '127.0.0.1:0', mqttListen: '127.0.0.1:0' }), {
        logger: capture().logger,
        env: {},
      }),
      (e: unknown) => e instanceof HeptadError && e.code === 'DATA_DIR_UNUSABLE',
    );
  });
});

describe('service configuration', () => {
  const refused = (raw: Parameters<typeof resolveConfig>[0]) =>
    assert.throws(
      () => resolveConfig(raw),
      (e: unknown) => e instanceof HeptadError && e.code === 'CONFIG_INVALID',
    );

  test('defaults: ./heptad-data, 127.0.0.1:8443, SQLite in the data folder, TLS on', () => {
    const c = resolveConfig({});
    assert.match(c.dataDir, /heptad-data$/);
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8443 });
    assert.equal(c.db, join(c.dataDir, 'heptad.sqlite'));
    assert.equal(c.insecureHttp, false);
    assert.deepEqual(c.mqttListen, { host: '127.0.0.1', port: 8883 });
    assert.equal(c.mqttMaxPacketSize, 256 * 1024);
    assert.equal(c.reportRetentionDays, 14);
    assert.equal(c.reportRatePerMinute, 100);
    assert.equal(c.reportRateBurst, 1000);
    assert.equal(resolveConfig(fromEnv({ HEPTAD_REPORT_RETENTION_DAYS: '30' })).reportRetentionDays, 30);
    assert.ok(Object.isFrozen(c));
  });

  test('flags override the environment, which overrides the file', () => {
    const c = resolveConfig({ listen: '127.0.0.1:1' }, fromEnv({ HEPTAD_LISTEN: '127.0.0.1:2' }), {
      listen: '127.0.0.1:3',
    });
    assert.equal(c.listen.port, 3);
    const d = resolveConfig({ listen: '127.0.0.1:1' }, fromEnv({ HEPTAD_LISTEN: '127.0.0.1:2' }), {});
    assert.equal(d.listen.port, 2);
  });

  test('refuses plain HTTP off loopback, bad listen addresses, bad limits and foreign database URLs', () => {
    refused({ insecureHttp: true, listen: '0.0.0.0:8443' });
    refused({ listen: '8443' });
    refused({ listen: '127.0.0.1:99999' });
    refused({ listen: 'bad host:1' });
    refused({ bodyLimit: 'lots' });
    refused({ bodyLimit: 10 });
    refused({ bodyLimit: 1e12 });
    refused({ db: 'mysql://x' });
    refused({ logLevel: 'loud' });
    refused({ tlsHosts: ['bad host'] });
    refused({ mqttListen: '8883' });
    refused({ mqttListen: 'on' });
    refused({ mqttListen: '127.0.0.1:8443' }); // the API's own address
    refused({ mqttMaxPacketSize: 10 });
    refused({ mqttMaxPacketSize: 'big' });
    refused({ mqttMaxPacketSize: 1e9 });
    assert.equal(resolveConfig({ mqttListen: 'off' }).mqttListen, null);
    assert.deepEqual(resolveConfig({ listen: '127.0.0.1:0' }).mqttListen, { host: '127.0.0.1', port: 0 });
    assert.deepEqual(resolveConfig({ listen: '127.0.0.1:9443' }).mqttListen, {
      host: '127.0.0.1',
      port: 8883,
    });
    assert.equal(
      resolveConfig({ insecureHttp: true, listen: '127.0.0.1:0', mqttListen: '127.0.0.1:0' }).insecureHttp,
      true,
    );
    refused({ reportRetentionDays: 0 });
    refused({ reportRetentionDays: '14 days' });
    refused({ reportRetentionDays: 3651 });
    refused({ reportRatePerMinute: -1 });
    refused({ reportRateBurst: 1.5 });
    assert.equal(resolveConfig({ insecureHttp: true, listen: '127.0.0.1:0' }).insecureHttp, true);
  });

  test('a config file must be a JSON object of known settings', () => {
    const dir = tempDir();
    const write = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    assert.equal(readConfigFile(write('ok.json', '{"listen":"127.0.0.1:9"}')).listen, '127.0.0.1:9');
    for (const [name, text] of [
      ['bad.json', '{'],
      ['array.json', '[]'],
      ['unknown.json', '{"adminPassword":"x"}'],
    ] as const) {
      assert.throws(
        () => readConfigFile(write(name, text)),
        (e: unknown) => e instanceof HeptadError && e.code === 'CONFIG_INVALID',
      );
    }
    assert.throws(
      () => readConfigFile(join(dir, 'missing.json')),
      (e: unknown) => e instanceof HeptadError && e.code === 'CONFIG_INVALID',
    );
  });
});
