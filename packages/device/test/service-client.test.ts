// The device's JSON client over plain HTTP (loopback development) and its failure codes: an
// answer, a coded refusal, a body that is not JSON, an oversized body, and no service at all.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { HeptadError } from '@heptad/protocol';
import { DeviceServiceClient, ServiceRefusal } from '../src/agent/service-client.ts';

describe('DeviceServiceClient over plain HTTP', () => {
  let server: http.Server;
  let url: string;
  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.url === '/ok') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ echo: JSON.parse(body) }));
        } else if (req.url === '/refuse') {
          res.writeHead(403, { 'content-type': 'application/problem+json' });
          res.end(JSON.stringify({ code: 'ATTEST_DEVICE_QUARANTINED', title: 'quarantined' }));
        } else if (req.url === '/html') {
          res.writeHead(502);
          res.end('<html>bad gateway</html>');
        } else {
          res.writeHead(200);
          res.end(Buffer.alloc(2 * 1024 * 1024, 0x20));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('posts JSON and reads the answer', async () => {
    const c = new DeviceServiceClient(url, undefined);
    try {
      assert.deepEqual(await c.post('/ok', { a: 1 }), { echo: { a: 1 } });
    } finally {
      c.close();
    }
  });

  test('a refusal keeps the service code; junk and oversized answers and no service are DEVICE_SERVICE_UNREACHABLE', async () => {
    const c = new DeviceServiceClient(url, undefined);
    try {
      await assert.rejects(
        c.post('/refuse', {}),
        (e: unknown) =>
          e instanceof ServiceRefusal && e.code === 'ATTEST_DEVICE_QUARANTINED' && e.status === 403,
      );
      for (const path of ['/html', '/huge'])
        await assert.rejects(
          c.post(path, {}),
          (e: unknown) => e instanceof HeptadError && e.code === 'DEVICE_SERVICE_UNREACHABLE',
          path,
        );
    } finally {
      c.close();
    }
    const none = new DeviceServiceClient('http://127.0.0.1:9', undefined);
    await assert.rejects(
      none.post('/ok', {}),
      (e: unknown) => e instanceof HeptadError && e.code === 'DEVICE_SERVICE_UNREACHABLE',
    );
    none.close();
  });
});
