// The platform CA and the TLS server certificates it issues: checked with node:crypto's own
// X509Certificate (OpenSSL), not with the library that made them, and through a real TLS
// handshake on loopback. Time is injected: validity is checked against a fixed `now`.

import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import * as x509 from '@peculiar/x509';
import {
  type CertificateAuthority,
  createCertificateAuthority,
  daysUntilExpiry,
  issueServerCertificate,
  toPrivateKey,
} from '../src/index.ts';

const DAY_MS = 86_400_000;
/** Far from today, so a test passing here proves the injected time is used, not the clock. */
const NOW = new Date('2031-06-01T00:00:00.000Z');
/** The code backdates notBefore by one minute, for clocks slightly behind. */
const BACKDATE_MS = 60_000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

const ca = await createCertificateAuthority({ commonName: 'Heptad test CA', now: NOW, validityDays: 3650 });
const caCert = new X509Certificate(ca.certPem);
// Same name as `ca`: only the key tells them apart, as with a CA regenerated on another host.
const otherCa = await createCertificateAuthority({
  commonName: 'Heptad test CA',
  now: NOW,
  validityDays: 3650,
});
const server = await issueServerCertificate({
  ca,
  hosts: ['localhost', '127.0.0.1', '::1'],
  now: NOW,
  validityDays: 90,
});
const serverCert = new X509Certificate(server.certPem);
// For the TLS handshakes: real time, since OpenSSL checks validity against the clock.
const liveCa = await createCertificateAuthority({
  commonName: 'Heptad live CA',
  now: new Date(),
  validityDays: 1,
});
const liveOtherCa = await createCertificateAuthority({
  commonName: 'Heptad live CA',
  now: new Date(),
  validityDays: 1,
});
const live = await issueServerCertificate({
  ca: liveCa,
  hosts: ['localhost', '127.0.0.1'],
  now: new Date(),
  validityDays: 1,
});

describe('createCertificateAuthority', () => {
  test('makes a self-signed ECDSA P-256 certificate that verifies with its own key', () => {
    assert.equal(caCert.subject, 'CN=Heptad test CA');
    assert.equal(caCert.issuer, caCert.subject);
    assert.equal(caCert.checkIssued(caCert), true);
    assert.equal(caCert.verify(caCert.publicKey), true);
    assert.equal(caCert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(caCert.signatureAlgorithm, 'ecdsa-with-SHA256');
  });

  test('is a CA with critical basic constraints, path length 0 and keyCertSign usage', () => {
    assert.equal(caCert.ca, true);
    const parsed = new x509.X509Certificate(ca.certPem);
    const bc = parsed.getExtension(x509.BasicConstraintsExtension);
    assert.ok(bc);
    assert.equal(bc.ca, true);
    assert.equal(bc.critical, true);
    assert.equal(bc.pathLength, 0);
    const ku = parsed.getExtension(x509.KeyUsagesExtension);
    assert.ok(ku);
    assert.equal(ku.critical, true);
    assert.ok(ku.usages & x509.KeyUsageFlags.keyCertSign, 'keyCertSign');
    assert.ok(ku.usages & x509.KeyUsageFlags.cRLSign, 'cRLSign');
    assert.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension), 'subject key identifier');
  });

  test('honours a path length given by the caller', async () => {
    const intermediateCapable = await createCertificateAuthority({
      commonName: 'Root',
      now: NOW,
      validityDays: 1,
      pathLength: 1,
    });
    assert.equal(
      new x509.X509Certificate(intermediateCapable.certPem).getExtension(x509.BasicConstraintsExtension)
        ?.pathLength,
      1,
    );
  });

  test('returns the PKCS#8 private key of the certificate', () => {
    const key = toPrivateKey(ca.keyPkcs8);
    assert.equal(key.type, 'private');
    assert.equal(caCert.checkPrivateKey(key), true);
    assert.equal(new X509Certificate(otherCa.certPem).checkPrivateKey(key), false);
  });

  test('is valid from one minute before the injected now for the requested days', () => {
    assert.equal(caCert.validFromDate.getTime(), NOW.getTime() - BACKDATE_MS);
    assert.equal(caCert.validToDate.getTime(), NOW.getTime() + 3650 * DAY_MS);
  });

  test('encodes validity past 2049 correctly (GeneralizedTime, RFC 5280 §4.1.2.5)', async () => {
    const longLived = await createCertificateAuthority({
      commonName: 'Long',
      now: NOW,
      validityDays: 10_000,
    });
    assert.equal(
      new X509Certificate(longLived.certPem).validToDate.getTime(),
      NOW.getTime() + 10_000 * DAY_MS,
    );
  });

  test('gives each certificate a distinct positive serial of at most 20 octets (RFC 5280 §4.1.2.2)', () => {
    const serials = [caCert, new X509Certificate(otherCa.certPem), serverCert].map((c) => c.serialNumber);
    assert.equal(new Set(serials).size, serials.length);
    for (const s of serials) {
      assert.match(s, /^[0-9A-F]{1,40}$/i);
      const firstOctet = Number.parseInt((s.length % 2 === 0 ? s : `0${s}`).slice(0, 2), 16);
      assert.ok(firstOctet < 0x80, `negative serial ${s}`);
    }
  });
});

describe('issueServerCertificate', () => {
  test('issues a certificate that verifies against the CA', () => {
    assert.equal(serverCert.checkIssued(caCert), true);
    assert.equal(serverCert.verify(caCert.publicKey), true);
    assert.equal(serverCert.issuer, caCert.subject);
    assert.equal(serverCert.ca, false);
  });

  test('does not verify against a different CA with the same name', () => {
    const other = new X509Certificate(otherCa.certPem);
    assert.equal(serverCert.checkIssued(other), false);
    assert.equal(serverCert.verify(other.publicKey), false);
  });

  test('names every host in the subject alternative names: DNS for names, IP for addresses', () => {
    assert.equal(serverCert.subjectAltName?.split(', ').includes('DNS:localhost'), true);
    assert.equal(serverCert.subjectAltName?.split(', ').includes('IP Address:127.0.0.1'), true);
    assert.equal(serverCert.checkHost('localhost'), 'localhost');
    assert.equal(serverCert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(serverCert.checkIP('::1'), '::1');
    assert.equal(serverCert.checkHost('127.0.0.1'), undefined, 'an address is not a DNS name');
    assert.equal(serverCert.checkHost('example.com'), undefined);
    assert.equal(serverCert.checkIP('127.0.0.2'), undefined);
    assert.equal(serverCert.subject, 'CN=localhost');
  });

  test('is for serverAuth only, with digitalSignature usage and no CA power', () => {
    assert.deepEqual(serverCert.keyUsage, [SERVER_AUTH]); // node's keyUsage is the extended key usage
    const parsed = new x509.X509Certificate(server.certPem);
    assert.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.ca, false);
    const ku = parsed.getExtension(x509.KeyUsagesExtension);
    assert.ok(ku);
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
    assert.ok(parsed.getExtension(x509.AuthorityKeyIdentifierExtension), 'authority key identifier');
  });

  test('is valid from one minute before the injected now for the requested days', () => {
    assert.equal(serverCert.validFromDate.getTime(), NOW.getTime() - BACKDATE_MS);
    assert.equal(serverCert.validToDate.getTime(), NOW.getTime() + 90 * DAY_MS);
  });

  test('returns a PKCS#8 PEM private key that matches the certificate', () => {
    assert.match(server.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const key = createPrivateKey(server.keyPem);
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(serverCert.checkPrivateKey(key), true);
  });

  test('gives each certificate its own key', async () => {
    const again = await issueServerCertificate({ ca, hosts: ['localhost'], now: NOW, validityDays: 1 });
    assert.notEqual(again.keyPem, server.keyPem);
    assert.equal(new X509Certificate(again.certPem).checkPrivateKey(createPrivateKey(server.keyPem)), false);
  });
});

describe('TLS with an issued certificate', () => {
  async function handshake(
    trusted: CertificateAuthority,
    servername: string | undefined,
  ): Promise<{ authorized: boolean; reply: string } | { errorCode: string }> {
    const srv = createServer({ cert: live.certPem, key: live.keyPem }, (socket) => socket.end('hello'));
    srv.on('tlsClientError', () => {}); // the client refusing us is an expected outcome here
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as AddressInfo;
    try {
      const socket: TLSSocket = connect({
        host: '127.0.0.1',
        port,
        ca: [trusted.certPem],
        ...(servername === undefined ? {} : { servername }),
      });
      try {
        await once(socket, 'secureConnect');
      } catch (e) {
        return { errorCode: String((e as NodeJS.ErrnoException).code) };
      }
      const authorized = socket.authorized;
      let reply = '';
      socket.setEncoding('utf8').on('data', (d: string) => {
        reply += d;
      });
      await once(socket, 'end');
      socket.destroy();
      return { authorized, reply };
    } finally {
      srv.close();
      await once(srv, 'close');
    }
  }

  test('succeeds on 127.0.0.1 for a client that trusts only the CA (servername localhost)', async () => {
    assert.deepEqual(await handshake(liveCa, 'localhost'), { authorized: true, reply: 'hello' });
  });

  test('succeeds for a client that connects by IP address, matched by the IP SAN', async () => {
    assert.deepEqual(await handshake(liveCa, undefined), { authorized: true, reply: 'hello' });
  });

  test('fails for a client that trusts a different CA', async () => {
    assert.deepEqual(await handshake(liveOtherCa, 'localhost'), {
      errorCode: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
  });

  test('fails for a name the certificate does not carry', async () => {
    assert.deepEqual(await handshake(liveCa, 'other.example'), { errorCode: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });
});

describe('daysUntilExpiry', () => {
  test('counts days from the given now to notAfter', () => {
    assert.equal(daysUntilExpiry(server.certPem, NOW), 90);
    assert.equal(daysUntilExpiry(server.certPem, new Date(NOW.getTime() + 89.5 * DAY_MS)), 0.5);
    assert.equal(daysUntilExpiry(ca.certPem, NOW), 3650);
  });

  test('is zero at expiry and negative after it', () => {
    assert.equal(daysUntilExpiry(server.certPem, new Date(NOW.getTime() + 90 * DAY_MS)), 0);
    assert.equal(daysUntilExpiry(server.certPem, new Date(NOW.getTime() + 91 * DAY_MS)), -1);
  });
});

describe('refusals', () => {
  test('refuses a server certificate with no hosts, a host that is not a name or IP, or no validity', async () => {
    for (const [hosts, days] of [
      [[], 90],
      [['bad host/x'], 90],
      [['-leading.example'], 90],
      [['localhost'], 0],
      [['localhost'], -1],
    ] as const) {
      await assert.rejects(issueServerCertificate({ ca, hosts, now: NOW, validityDays: days }), RangeError);
    }
  });

  test('refuses a CA with no validity', async () => {
    await assert.rejects(
      createCertificateAuthority({ commonName: 'x', now: NOW, validityDays: 0 }),
      RangeError,
    );
  });
});
