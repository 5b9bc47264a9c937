// AllowedConnections entries and the matching rule the supervisor applies
// (docs/formats/app-manifest.md §4): every entry form parses to its one spelling, every bad form
// is refused with a reason, and connectionAllowed matches names, wildcards, IP literals and ports
// exactly as documented — never a confusable, a numeric alias or an unlisted port.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type AppManifest,
  connectionAllowed,
  formatHostRule,
  type HostRule,
  hostNameProblem,
  normalizeHost,
  parseAppManifest,
  parseHostRule,
} from '../src/index.ts';

const CID = '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b';
const withConnections = (entries: string[]): AppManifest =>
  parseAppManifest({
    SchemaVersion: 1,
    Name: 'net',
    ComponentId: CID,
    EntryPoint: 'main.js',
    Capabilities: { AllowedConnections: entries },
  });

describe('parseHostRule: accepted forms', () => {
  const ok: [string, HostRule, string][] = [
    ['example.com', { kind: 'name', host: 'example.com', port: null }, 'example.com'],
    ['Example.COM.', { kind: 'name', host: 'example.com', port: null }, 'example.com'],
    ['api.example.com:443', { kind: 'name', host: 'api.example.com', port: 443 }, 'api.example.com:443'],
    ['localhost', { kind: 'name', host: 'localhost', port: null }, 'localhost'],
    [
      'xn--bcher-kva.example',
      { kind: 'name', host: 'xn--bcher-kva.example', port: null },
      'xn--bcher-kva.example',
    ],
    ['a-b.c0m', { kind: 'name', host: 'a-b.c0m', port: null }, 'a-b.c0m'],
    ['*.example.com', { kind: 'wildcard', suffix: 'example.com', port: null }, '*.example.com'],
    ['*.Example.com.:8883', { kind: 'wildcard', suffix: 'example.com', port: 8883 }, '*.example.com:8883'],
    ['*.example.co.uk', { kind: 'wildcard', suffix: 'example.co.uk', port: null }, '*.example.co.uk'],
    ['*.abc.io', { kind: 'wildcard', suffix: 'abc.io', port: null }, '*.abc.io'],
    ['192.0.2.1', { kind: 'ipv4', host: '192.0.2.1', port: null }, '192.0.2.1'],
    ['192.0.2.1:65535', { kind: 'ipv4', host: '192.0.2.1', port: 65535 }, '192.0.2.1:65535'],
    ['127.0.0.1:1', { kind: 'ipv4', host: '127.0.0.1', port: 1 }, '127.0.0.1:1'],
    ['2001:DB8:0:0:0:0:0:1', { kind: 'ipv6', host: '2001:db8::1', port: null }, '2001:db8::1'],
    ['::1', { kind: 'ipv6', host: '::1', port: null }, '::1'],
    ['[::1]', { kind: 'ipv6', host: '::1', port: null }, '::1'],
    ['[2001:db8::1]:443', { kind: 'ipv6', host: '2001:db8::1', port: 443 }, '[2001:db8::1]:443'],
    ['::ffff:192.0.2.1', { kind: 'ipv4', host: '192.0.2.1', port: null }, '192.0.2.1'],
    ['[::ffff:c000:201]:80', { kind: 'ipv4', host: '192.0.2.1', port: 80 }, '192.0.2.1:80'],
  ];
  for (const [entry, rule, spelled] of ok) {
    test(`accepts ${entry}`, () => {
      const parsed = parseHostRule(entry);
      assert.deepEqual(parsed, rule);
      assert.equal(formatHostRule(parsed as HostRule), spelled);
      assert.deepEqual(parseHostRule(spelled), rule, 'its one spelling parses to the same rule');
    });
  }
});

describe('parseHostRule: refused forms', () => {
  const bad: [string, string][] = [
    ['', 'empty'],
    ['*', 'a wildcard alone'],
    ['*:443', 'a wildcard alone with a port'],
    ['*.com', 'a wildcard over a top-level domain'],
    ['*.com.', 'a wildcard over a top-level domain with a trailing dot'],
    ['*.co.uk', 'a wildcard over a public suffix'],
    ['*.com.au', 'a wildcard over a public suffix'],
    ['*.ac.jp', 'a wildcard over a public suffix'],
    ['*.*.example.com', 'two wildcards'],
    ['a.*.example.com', 'a wildcard in the middle'],
    ['*example.com', 'a wildcard glued to a label'],
    ['ex*ample.com', 'a wildcard inside a label'],
    ['*.', 'a wildcard over the root'],
    ['*.1.2.3.4', 'a wildcard over an IP address'],
    ['*.example.123', 'a wildcard over a name ending in a number'],
    ['exаmple.com', 'a Cyrillic а (a confusable)'],
    ['bücher.example', 'a non-ASCII name (use xn--)'],
    ['example.com/path', 'a path'],
    ['https://example.com', 'a URL'],
    ['user@example.com', 'user info'],
    ['exa mple.com', 'a space'],
    ['example..com', 'an empty label'],
    ['.example.com', 'a leading dot'],
    ['example.com..', 'two trailing dots'],
    ['-example.com', 'a label starting with -'],
    ['example-.com', 'a label ending with -'],
    ['under_score.example.com', 'an underscore'],
    [`${'a'.repeat(64)}.com`, 'a 64-character label'],
    [`${'a.'.repeat(126)}com`, 'a 255-character name'],
    ['example.com:0', 'port 0'],
    ['example.com:65536', 'port 65536'],
    ['example.com:080', 'a port with a leading zero'],
    ['example.com:+80', 'a signed port'],
    ['example.com:', 'an empty port'],
    [':443', 'no host'],
    ['127.1', 'a short IPv4 form (inet_aton reads 127.0.0.1)'],
    ['2130706433', 'an IPv4 address as one number'],
    ['0x7f.0.0.1', 'a hex IPv4 form'],
    ['0x7f000001', 'a hex IPv4 number'],
    ['010.0.0.1', 'an IPv4 octet with a leading zero (octal to inet_aton)'],
    ['256.0.0.1', 'an IPv4 octet over 255'],
    ['1.2.3.4.5', 'five octets'],
    ['0.0.0.0', 'the unspecified IPv4 address'],
    ['::', 'the unspecified IPv6 address'],
    ['[::]:80', 'the unspecified IPv6 address with a port'],
    ['::ffff:0.0.0.0', 'the unspecified address, IPv4-mapped'],
    ['fe80::1%eth0', 'an IPv6 zone id'],
    ['[fe80::1%25eth0]:80', 'an IPv6 zone id in brackets'],
    ['[2001:db8::1', 'an unclosed bracket'],
    ['[2001:db8::1]443', 'a port without a colon after ]'],
    ['[192.0.2.1]', 'an IPv4 address in brackets'],
    ['[example.com]', 'a name in brackets'],
    ['[::1]:', 'an empty port after ]'],
    ['1:2:3:4:5:6:7:8:9', 'nine IPv6 groups'],
    ['example.com:443:443', 'two ports'],
  ];
  for (const [entry, why] of bad) {
    test(`refuses ${JSON.stringify(entry)}: ${why}`, () => {
      const parsed = parseHostRule(entry);
      assert.equal(typeof parsed, 'string', `expected a problem for ${entry}, got ${JSON.stringify(parsed)}`);
      assert.ok((parsed as string).length > 0);
    });
  }
});

test('an unbracketed IPv6 address never carries a port: 2001:db8::1:443 is another address', () => {
  assert.deepEqual(parseHostRule('2001:db8::1:443'), { kind: 'ipv6', host: '2001:db8::1:443', port: null });
  const m = withConnections(['2001:db8::1:443']);
  assert.equal(connectionAllowed(m, '2001:db8::1', 443), false);
  assert.equal(connectionAllowed(m, '2001:db8::1:443', 80), true);
});

test('a non-ASCII character that lowercases to ASCII (KELVIN SIGN → k, U+212A) is refused, not folded', () => {
  assert.equal('\u212Aiosk.example.com'.toLowerCase(), 'kiosk.example.com', 'the trap this test guards');
  assert.equal(typeof parseHostRule('\u212Aiosk.example.com'), 'string');
  assert.equal(typeof parseHostRule('*.\u212Aiosk.example.com'), 'string');
  assert.equal(normalizeHost('\u212Aiosk.example.com'), undefined);
  const m = withConnections(['kiosk.example.com', '*.kiosk.example.net']);
  assert.equal(connectionAllowed(m, 'KIOSK.example.com', 443), true);
  assert.equal(connectionAllowed(m, '\u212Aiosk.example.com', 443), false);
  assert.equal(connectionAllowed(m, 'a.\u212Aiosk.example.net', 443), false);
});

describe('hostNameProblem and normalizeHost', () => {
  test('a name of 253 characters is accepted, 254 refused', () => {
    const name253 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    assert.equal(name253.length, 253);
    assert.equal(hostNameProblem(name253), undefined);
    assert.equal(hostNameProblem(`${name253}.`), undefined, 'a trailing dot is not counted');
    assert.notEqual(hostNameProblem(`e${name253}`), undefined);
  });

  test('normalizes case, trailing dot, IPv6 spelling and IPv4-mapped addresses', () => {
    assert.deepEqual(normalizeHost('API.Example.com.'), { kind: 'name', value: 'api.example.com' });
    assert.deepEqual(normalizeHost('[2001:0DB8::0001]'), { kind: 'ipv6', value: '2001:db8::1' });
    assert.deepEqual(normalizeHost('2001:db8:0:0::1'), { kind: 'ipv6', value: '2001:db8::1' });
    assert.deepEqual(normalizeHost('::ffff:10.0.0.1'), { kind: 'ipv4', value: '10.0.0.1' });
    assert.deepEqual(normalizeHost('10.0.0.1'), { kind: 'ipv4', value: '10.0.0.1' });
  });

  test('refuses what is not a host', () => {
    for (const h of [
      '',
      '.',
      '127.1',
      'exаmple.com',
      '[10.0.0.1]',
      '[::1',
      'a b',
      'fe80::1%1',
      'x'.repeat(300),
    ]) {
      assert.equal(normalizeHost(h), undefined, h);
    }
    assert.equal(normalizeHost(42 as unknown as string), undefined);
  });
});

describe('connectionAllowed', () => {
  const m = withConnections([
    'api.example.com',
    'mqtt.example.net:8883',
    '*.devices.example.org',
    '*.cdn.example.com:443',
    '192.0.2.10:8080',
    '2001:db8::5',
    '[2001:db8::6]:443',
    'localhost:5000',
  ]);
  const cases: [string, string, number, boolean][] = [
    ['allowed/exact name, any port', 'api.example.com', 1, true],
    ['allowed/exact name, other port', 'api.example.com', 65535, true],
    ['allowed/name in another case', 'API.EXAMPLE.COM', 443, true],
    ['allowed/name with a trailing dot', 'api.example.com.', 443, true],
    ['refused/subdomain of an exact name', 'x.api.example.com', 443, false],
    ['refused/parent of an exact name', 'example.com', 443, false],
    ['refused/name with a suffix glued on', 'api.example.com.evil.net', 443, false],
    ['refused/name with a prefix glued on', 'evilapi.example.com', 443, false],
    ['allowed/name with its port', 'mqtt.example.net', 8883, true],
    ['refused/name with another port', 'mqtt.example.net', 1883, false],
    ['allowed/wildcard, one label', 'd1.devices.example.org', 443, true],
    ['allowed/wildcard, two labels', 'a.b.devices.example.org', 443, true],
    ['refused/wildcard does not match its own domain', 'devices.example.org', 443, false],
    ['refused/wildcard does not match a look-alike suffix', 'xdevices.example.org', 443, false],
    ['refused/wildcard does not match an empty label', '.devices.example.org', 443, false],
    ['allowed/wildcard with its port', 'img.cdn.example.com', 443, true],
    ['refused/wildcard with another port', 'img.cdn.example.com', 80, false],
    ['allowed/IPv4 with its port', '192.0.2.10', 8080, true],
    ['refused/IPv4 with another port', '192.0.2.10', 8081, false],
    ['allowed/IPv4-mapped IPv6 of an allowed IPv4', '::ffff:192.0.2.10', 8080, true],
    ['allowed/IPv4-mapped IPv6 in brackets, hex', '[::ffff:c000:20a]', 8080, true],
    ['refused/IPv4 in a numeric alias', '3221225994', 8080, false],
    ['refused/IPv4 in a short form', '192.0.522', 8080, false],
    ['refused/IPv4 with a leading zero', '192.0.2.010', 8080, false],
    ['allowed/IPv6 any port', '2001:db8::5', 22, true],
    ['allowed/IPv6 in the long spelling', '2001:0db8:0000:0000:0000:0000:0000:0005', 22, true],
    ['allowed/IPv6 in brackets and upper case', '[2001:DB8::5]', 22, true],
    ['allowed/IPv6 with its port', '2001:db8::6', 443, true],
    ['refused/IPv6 with another port', '[2001:db8::6]', 80, false],
    ['refused/IPv6 with a zone id', 'fe80::5%eth0', 22, false],
    ['refused/a name is not its resolved IP', '192.0.2.11', 8080, false],
    ['refused/an IP is not matched by a wildcard', '10.0.0.1', 443, false],
    ['allowed/localhost with its port', 'localhost', 5000, true],
    ['refused/localhost on another port', 'localhost', 5001, false],
    ['refused/loopback IP for a localhost grant', '127.0.0.1', 5000, false],
    ['refused/Cyrillic confusable', 'аpi.example.com', 443, false],
    ['refused/full-width dot', 'api．example.com', 443, false],
    ['refused/port 0', 'api.example.com', 0, false],
    ['refused/port 65536', 'api.example.com', 65536, false],
    ['refused/port not an integer', 'api.example.com', 443.5, false],
    ['refused/port NaN', 'api.example.com', Number.NaN, false],
    ['refused/empty host', '', 443, false],
    ['refused/host with a port glued on', 'api.example.com:443', 443, false],
    ['refused/host with a NUL', 'api.example.com\u0000.evil.net', 443, false],
  ];
  for (const [name, host, port, expected] of cases) {
    test(name, () => assert.equal(connectionAllowed(m, host, port), expected));
  }

  test('a manifest without AllowedConnections allows nothing', () => {
    const none = withConnections([]);
    for (const [, host, port] of cases) assert.equal(connectionAllowed(none, host, port), false);
  });

  test('never throws, whatever it is given', () => {
    for (const host of [undefined, null, 1, {}, [], Symbol.iterator.toString()]) {
      assert.equal(connectionAllowed(m, host as unknown as string, 443), false);
    }
  });
});
